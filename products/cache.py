"""The product cache: the only module that knows cache keys.

Layout in Redis (every key carries the django-redis KEY_PREFIX and has a TTL):

    products:epoch                       bumped to drop everything at once (after a Redis outage)
    products:gen                         catalogue generation; any product write bumps it
    products:ver:<id>                    one product's version; a write to that product bumps it
    products:d:<epoch>:<id>:<ver>        detail response bytes
    products:l:<epoch>:<gen>:<digest>    list/search page response bytes, per normalized query
    products:lock:<entry key>            who is filling a missing entry (stampede guard)

Readers look up the counters and the entry in one round trip (a Lua script) and, on a miss,
store what they read from PostgreSQL under the key built from the counters they saw *before*
reading the database. A write bumps the counters after its commit (`transaction.on_commit`), so a
reader that read the old row and stores it late stores it under a key nobody looks up any more:
the race between a slow reader and an invalidation cannot put a stale entry in front of readers.

Redis trouble never fails a request: every call here degrades to "no cache". A process that saw
Redis fail (and so may have lost an invalidation) bumps the epoch on its next successful contact,
before it serves anything from the cache again, so entries written before an outage are dropped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import cache as django_cache
from django_redis import get_redis_connection

logger = logging.getLogger(__name__)

# Counters outlive every entry built from them by far, so a counter that expires (and restarts
# at 0) can never make an old entry's key current again.
COUNTER_TTL_S = 7 * 24 * 3600
LOCK_TTL_MS = 5000
FILL_WAIT_S = 2.0
# After a failure, leave Redis alone this long: a black-holed Redis costs one socket timeout
# per interval per process, not one per request.
RETRY_AFTER_FAILURE_S = 1.0

_LOOKUP_DETAIL = """
local epoch = redis.call('GET', KEYS[1]) or '0'
local ver = redis.call('GET', KEYS[2]) or '0'
local key = ARGV[1] .. epoch .. ':' .. ARGV[2] .. ':' .. ver
return {epoch, ver, redis.call('GET', key)}
"""

_LOOKUP_PAGE = """
local epoch = redis.call('GET', KEYS[1]) or '0'
local gen = redis.call('GET', KEYS[2]) or '0'
local key = ARGV[1] .. epoch .. ':' .. gen .. ':' .. ARGV[2]
return {epoch, gen, redis.call('GET', key)}
"""

# Bump each product's version and the catalogue generation, keeping every counter's TTL.
_INVALIDATE = """
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ttl)
end
return #KEYS
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached response: the exact bytes to send and the headers that describe them."""

    headers: dict[str, str]
    body: bytes

    @property
    def etag(self) -> str:
        return self.headers.get("ETag", "")

    def encode(self) -> bytes:
        return orjson.dumps(self.headers) + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        headers, _, body = raw.partition(b"\n")
        return cls(headers=orjson.loads(headers), body=body)


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a reader that missed may store what it read: the key current when it looked."""

    key: str


@dataclass(frozen=True, slots=True)
class Lookup:
    entry: Entry | None
    slot: Slot | None  # None when the cache is off or Redis is unreachable

    @property
    def lock_key(self) -> str:
        assert self.slot is not None
        return self.slot.key.replace(":products:", ":products:lock:", 1)


_MISS_NO_CACHE = Lookup(entry=None, slot=None)


class _State:
    """Per-process: scripts registered on the client, and whether Redis failed on us."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.suspect = False
        self.failures = 0  # counts failures, so a recovery cannot clear a newer one
        self.retry_at = 0.0
        self.scripts: dict[str, Callable[..., object]] = {}


_state = _State()


def enabled() -> bool:
    return bool(settings.PRODUCT_CACHE_ENABLED)


def _key(suffix: str) -> str:
    return django_cache.make_key(f"products:{suffix}")


def _redis() -> Any:
    return get_redis_connection("default")


def _script(name: str, source: str) -> Callable[..., object]:
    redis = _redis()
    script = _state.scripts.get(name)
    # A script is bound to the client it was registered on; settings changes make a new client.
    if script is None or script.registered_client is not redis:  # type: ignore[attr-defined]
        script = redis.register_script(source)
        _state.scripts[name] = script
    return script


def _fail(exc: Exception) -> None:
    """Remember that this process may have missed an invalidation; log once per outage."""
    with _state.lock:
        first = not _state.suspect
        _state.suspect = True
        _state.failures += 1
        _state.retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S
    if first:
        logger.warning("product cache unavailable, serving from PostgreSQL: %s", exc)


def _healthy() -> bool:
    """True when the cache may be used. After an outage, drop every entry first."""
    if not _state.suspect:
        return True
    if time.monotonic() < _state.retry_at:
        return False
    failures = _state.failures
    try:
        bump_epoch()
    except Exception:
        with _state.lock:
            _state.retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S
        return False
    with _state.lock:
        if _state.failures != failures:
            return False  # Redis failed again while we bumped: bump again next time
        _state.suspect = False
    logger.warning("product cache reachable again; epoch bumped, older entries dropped")
    return True


def recover() -> bool:
    """For long-running processes: if Redis failed on us, drop every entry once it answers.

    Returns whether the cache is usable. The invalidation listener calls this every second, so
    entries cached before an outage stop being served soon after Redis returns, even by processes
    that never saw it fail.
    """
    return _healthy()


def bump_epoch() -> None:
    """Make every existing entry unreachable (raises when Redis is unreachable)."""
    redis = _redis()
    key = _key("epoch")
    pipe = redis.pipeline()
    pipe.incr(key)
    pipe.expire(key, COUNTER_TTL_S)
    pipe.execute()


def _lookup(name: str, source: str, counter: str, prefix: str, tail: str) -> Lookup:
    """Run a lookup script; the entry key is `<prefix><epoch>:...` as the script builds it."""
    if not enabled() or not _healthy():
        return _MISS_NO_CACHE
    try:
        result: list[bytes | None] = _script(name, source)(  # type: ignore[assignment]
            keys=[_key("epoch"), counter], args=[prefix, tail]
        )
    except Exception as exc:
        _fail(exc)
        return _MISS_NO_CACHE
    # A Lua table ends at its first nil: a miss comes back as [epoch, counter].
    epoch, count = (bytes(value or b"0").decode() for value in result[:2])
    raw = result[2] if len(result) > 2 else None
    middle = (tail, count) if name == "detail" else (count, tail)
    slot = Slot(key=f"{prefix}{epoch}:{middle[0]}:{middle[1]}")
    return Lookup(entry=Entry.decode(raw) if raw is not None else None, slot=slot)


def detail_lookup(product_id: int) -> Lookup:
    """The cached detail response of one product, and where to store it on a miss."""
    return _lookup("detail", _LOOKUP_DETAIL, _key(f"ver:{product_id}"), _key("d:"), str(product_id))


def page_lookup(kind: str, *, host: str, scheme: str, params: Sequence[tuple[str, str]]) -> Lookup:
    """The cached list/search page for a normalized query.

    Parameters are ordered by name only (a stable sort keeps repeated names in their order,
    which decides the value DRF reads) and encoded losslessly, so no two different queries
    share a key: `name=a%26page%3D3` and `name=a&page=3` stay apart.
    """
    ordered = sorted(params, key=lambda pair: pair[0])
    normalized = orjson.dumps([kind, host, scheme, ordered])
    digest = hashlib.blake2b(normalized, digest_size=16).hexdigest()
    return _lookup("page", _LOOKUP_PAGE, _key("gen"), _key("l:"), digest)


def claim(lookup: Lookup) -> tuple[Entry | None, bool]:
    """On a miss, decide who loads: returns (entry, leader).

    The first reader to miss a key takes a short lock and is the leader: it loads from
    PostgreSQL, stores, then calls `release`. The others wait for the leader's entry (up to
    FILL_WAIT_S) instead of sending the same query, and load themselves only if none arrives, so
    a hot key that expires under a hundred concurrent requests costs PostgreSQL one query.
    With no cache, everyone loads and nobody leads.
    """
    if lookup.entry is not None:
        return lookup.entry, False
    if lookup.slot is None:
        return None, False
    try:
        redis = _redis()
        if redis.set(lookup.lock_key, b"1", nx=True, px=LOCK_TTL_MS):
            # A leader may have stored and released between our lookup and our lock.
            raw = redis.get(lookup.slot.key)
            if raw is None:
                return None, True
            redis.delete(lookup.lock_key)
            return Entry.decode(raw), False
        deadline = time.monotonic() + FILL_WAIT_S
        delay = 0.002
        while time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            raw, locked = redis.pipeline().get(lookup.slot.key).exists(lookup.lock_key).execute()
            if raw is not None:
                return Entry.decode(raw), False
            if not locked:
                break  # the leader found nothing to cache (a 404, an error): load ourselves
    except Exception as exc:
        _fail(exc)
    return None, False


def release(lookup: Lookup) -> None:
    """The leader is done (stored or not): waiting readers stop waiting."""
    try:
        _redis().delete(lookup.lock_key)
    except Exception as exc:
        _fail(exc)


def store(lookup: Lookup, entry: Entry) -> None:
    """Store under the key that was current when the reader looked, before it read PostgreSQL."""
    if lookup.slot is None:
        return
    try:
        _redis().set(lookup.slot.key, entry.encode(), ex=settings.PRODUCT_CACHE_TTL_S)
    except Exception as exc:
        _fail(exc)


def invalidate(product_ids: Iterable[int]) -> None:
    """Make the next read of these products, and of every list/search page, miss.

    Called after commit, also with the cache switched off here: other processes may have it
    on. If Redis cannot be reached, this process remembers it and drops every entry (a new epoch)
    as soon as Redis answers again.
    """
    keys = [_key(f"ver:{pid}") for pid in product_ids]
    keys.append(_key("gen"))
    try:
        _script("invalidate", _INVALIDATE)(keys=keys, args=[COUNTER_TTL_S])
    except Exception as exc:
        _fail(exc)


def invalidate_all() -> None:
    """After bulk writes that do not say which products they touched (seeding, raw SQL)."""
    try:
        bump_epoch()
    except Exception as exc:
        _fail(exc)
