"""The product cache: the only module that knows cache keys.

Layout in Redis (every key carries the django-redis KEY_PREFIX and has a TTL):

    products:epoch                       bumped to drop everything at once (after a Redis outage)
    products:gen                         catalogue generation; any product write bumps it
    products:ver:<id>                    one product's version; a write to that product bumps it
    products:d<rep>:<epoch>:<id>:<ver>   detail response bytes
    products:l<rep>:<epoch>:<gen>:<digest>  list/search page response bytes, per normalized query
    products:lock:<entry key>            who is filling a missing entry (stampede guard)
    products:server                      the run_id of the server the entries were written on

Readers look up the counters and the entry in one round trip (a Lua script) and, on a miss,
store what they read from PostgreSQL under the key built from the counters they saw *before*
reading the database. A miss costs three round trips: the lookup, the claim (one script: the
entry if a leader stored it meanwhile, else the stampede lock) and the store (one script, which
releases the lock). Each process also keeps the counters and entries it has seen
(products/near_cache.py, kept coherent by Redis's invalidation pushes), so a hit on a hot key
costs no round trip at all.

Entry keys carry REPRESENTATION, the number of the JSON's shape (and so does every ETag): after
a deploy that changes the shape, no process serves a body cached in the old one, and no client
keeps one through a 304. A deploy that does not change it keeps the cache warm.

A write bumps the counters after its commit (`transaction.on_commit`), so a reader that read the
old row and stores it late stores it under a key nobody looks up any more: the race between a
slow reader and an invalidation cannot put a stale entry in front of readers.

Redis trouble never fails a request: every call here degrades to "no cache". A process that saw
Redis fail (and so may have lost an invalidation) bumps the epoch on its next successful contact,
before it serves anything from the cache again, so entries written before an outage are dropped.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import orjson
from django.conf import settings
from django.core.cache import cache as django_cache
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.dispatch import receiver
from django_redis import get_redis_connection
from redis.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from inventory_project import logs
from products.near_cache import NearCache

logger = logging.getLogger(__name__)

# The shape of the JSON a product (alone or in a page) is sent as, by number. Bump it with any
# change to that JSON: a field added, removed or renamed, a value formatted otherwise
# (products/api/serializers.py: ProductOutputSerializer and _represent, the pages' envelope).
REPRESENTATION = 1

# Counters outlive every entry built from them by far. A counter that is gone all the same
# (flushed, evicted, lost with a restart) starts again from Redis's clock in microseconds, not
# from 1: a value it had before cannot come back and make an old entry's key current again.
COUNTER_TTL_S = 7 * 24 * 3600
LOCK_TTL_MS = 5000
FILL_WAIT_S = 2.0
# The near cache's lease, at most: shorter than the Redis socket timeout (see near_cache.py).
NEAR_LEASE_S = 0.1
# After a failure, leave Redis alone this long: a black-holed Redis costs one socket timeout
# per interval per process, not one per request.
RETRY_AFTER_FAILURE_S = 1.0
SERVER_CHECK_REFUSED = logs.Every()

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

# Delete a stampede lock (KEYS[1]) only if it is still ours (ARGV[1], the lease): a leader slower
# than LOCK_TTL_MS must not release the lock of the leader that came after it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
"""

# A reader that missed, in one round trip: the entry, if a leader stored it since the lookup;
# else 1 if this reader took the stampede lock (it leads), or 0 if another reader holds it.
_CLAIM = """
local raw = redis.call('GET', KEYS[1])
if raw then
  return raw
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""

# The leader stores what it loaded (KEYS[2], ARGV[2], TTL ARGV[3]) and releases its lock
# (_RELEASE) in one round trip. The lock goes even if the SET fails (an invalid TTL, a full
# Redis): the waiters load themselves at once rather than at the lock's expiry, and the error
# still reaches the caller.
_STORE_RELEASE = (
    """
local stored = redis.pcall('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
"""
    + _RELEASE
    + """
return stored
"""
)

# The server's clock in microseconds, as a counter's text: where a counter starts again.
_CLOCK_US = """
local now = redis.call('TIME')
local clock_us = now[1] .. string.format('%06d', tonumber(now[2]))
"""

# Bump each counter given (products' versions and the catalogue generation; the epoch for
# bump_epoch, invalidate_all, and a send that covers skipped ones) and set its TTL to
# COUNTER_TTL_S again. A missing counter starts at the server's clock in microseconds (see
# COUNTER_TTL_S).
_INVALIDATE = (
    _CLOCK_US
    + """
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCR', KEYS[i])
  else
    redis.call('SET', KEYS[i], clock_us)
  end
  redis.call('EXPIRE', KEYS[i], ttl)
end
return #KEYS
"""
)


# Whether the server is the one the entries were written on (its run_id, kept beside the
# counters); if not, move the epoch on, and remember this server.
_CHECK_SERVER = (
    """
local known = redis.call('GET', KEYS[1])
if known == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  return 0
end
-- The server's clock in microseconds, not the restored epoch plus one: a bump made between the
-- snapshot and the restart had already used that value, and an entry stored late under it (by
-- a request in flight across the restart) would become current again.
"""
    + _CLOCK_US
    + """
local epoch = tonumber(clock_us)
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current and current >= epoch then
  epoch = current + 1
end
redis.call('SET', KEYS[2], string.format('%d', epoch), 'EX', ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if known then
  return 2
end
return 1
"""
)


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
    # For the near cache: its token when the reader looked, and the counters Redis returned.
    near_token: int | None = None
    counters: tuple[tuple[str, bytes], ...] = ()


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
    """Per-process: the Redis client and what hangs off it, and whether Redis failed on us."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.suspect = False
        self.failures = 0  # counts failures, so a recovery cannot clear a newer one
        self.retry_at = 0.0
        # Invalidations failed in a row (one per send started after the last counted
        # failure: threads caught by one stall count once), and until when they are not sent
        # once two have (_send_invalidation); skips counted, and how many an epoch bump has
        # covered.
        self.send_failures = 0
        self.send_failure_mark = 0
        self.skip_sends_until = 0.0
        self.skips = 0
        self.skips_covered = 0
        self.context: _Context | None = None


class _Context:
    """Built once per process from the settings (again when they change, in tests).

    django-redis hands each thread a client of its own; one shared client (redis-py clients are
    thread-safe, and share the pool anyway) keeps one near cache and one set of scripts.
    """

    def __init__(self) -> None:
        self.redis: Any = get_redis_connection("default")
        self.prefix = django_cache.make_key("products:")
        if django_cache.make_key("products:x") != self.prefix + "x":
            raise ImproperlyConfigured("products.cache needs the default cache KEY_FUNCTION")
        self.scripts: dict[str, Callable[..., object]] = {}
        self.near = _build_near(self.redis, self.prefix)

    def script(self, name: str, source: str) -> Callable[..., object]:
        script = self.scripts.get(name)
        if script is None:
            script = self.scripts[name] = self.redis.register_script(source)
        return script

    def close(self) -> None:
        if self.near is not None:
            self.near.close()


_state = _State()


def _context() -> _Context:
    context = _state.context
    if context is None:
        with _state.lock:
            if _state.context is None:
                _state.context = _Context()
            context = _state.context
    return context


def reset() -> None:
    """Drop this process's client, scripts and near cache; the next call builds them anew."""
    with _state.lock:
        context, _state.context = _state.context, None
    if context is not None:
        context.close()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CACHES", "PRODUCT_NEAR_CACHE_MAX_BYTES"):
        reset()


def enabled() -> bool:
    return bool(settings.PRODUCT_CACHE_ENABLED)


def _key(suffix: str) -> str:
    return _context().prefix + suffix


def _redis() -> Any:
    return _context().redis


def _script(name: str, source: str) -> Callable[..., object]:
    return _context().script(name, source)


def _build_near(redis: Any, prefix: str) -> NearCache | None:
    if settings.PRODUCT_NEAR_CACHE_MAX_BYTES <= 0:
        return None
    pool = redis.connection_pool
    kwargs = pool.connection_kwargs
    timeout = kwargs.get("socket_timeout")
    connect_timeout = kwargs.get("socket_connect_timeout") or timeout

    def connect() -> socket.socket:
        if pool.connection_class is UnixDomainSocketConnection:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(connect_timeout)
            sock.connect(kwargs["path"])
        else:
            sock = socket.create_connection((kwargs["host"], kwargs["port"]), connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        return sock

    if pool.connection_class not in (Connection, UnixDomainSocketConnection):
        logger.info("near cache off: %s is not supported", pool.connection_class.__name__)
        return None
    password = kwargs.get("password")
    auth = (kwargs.get("username") or "default", password) if password else None
    lease = min(NEAR_LEASE_S, timeout / 2.5) if timeout else NEAR_LEASE_S
    prefixes = [prefix + "epoch", prefix + "gen", prefix + "ver:"]
    return NearCache(
        connect,
        prefixes,
        on_lost=_near_lost,
        auth=auth,
        lease_s=lease,
        ping_timeout_s=max(1.0, timeout or 0.0),
        max_bytes=settings.PRODUCT_NEAR_CACHE_MAX_BYTES,
        ttl_s=settings.PRODUCT_CACHE_TTL_S,
    )


def server_key() -> str:
    """The key of the server's run_id that the entries were written on (see redis_connected)."""
    return str(django_cache.make_key("products:server"))


def redis_connected(connection: Any) -> None:
    """Every new connection to the cache's Redis (inventory_project/redis_connect.py), before
    its first command: a server the entries were not written on drops them all (a new epoch).

    A restart (one that reloaded an older snapshot brings back counters and entries that later
    writes had invalidated), or a failover to a replica that had not received the last bumps:
    redis-py reconnected to it without a word, and only a process whose near cache's connection
    broke with it noticed. The server's run_id is kept beside the counters; a connection that
    finds another (or none) bumps the epoch and writes its own, so the first process to reach a
    new server moves every process on, fresh ones included.
    """
    connection.send_command("INFO", "server")
    try:
        info = connection.read_response()
    except ResponseError as exc:
        # An ACL without INFO: the near cache's connection still counts, and nothing else says
        # that a restart goes unnoticed by processes without one.
        SERVER_CHECK_REFUSED.warning(logger, "product cache: the server check was refused: %s", exc)
        return
    text = info.decode() if isinstance(info, bytes) else str(info)
    run_id = next(
        (line[7:].strip() for line in text.splitlines() if line.startswith("run_id:")), None
    )
    if not run_id:
        return  # a server that does not say (a proxy): the near cache's connection still counts
    keys = [server_key(), django_cache.make_key("products:epoch")]
    connection.send_command("EVAL", _CHECK_SERVER, 2, *keys, run_id, COUNTER_TTL_S)
    try:
        outcome = connection.read_response()
    except ResponseError as exc:
        # Refused (an ACL without EVAL, a read-only replica, a full Redis that evicts nothing):
        # the connection still serves what it can, the rate limits among them; failing it
        # here failed every connection.
        SERVER_CHECK_REFUSED.warning(logger, "product cache: the server check was refused: %s", exc)
        return
    if outcome:
        # 2: another server's id was there (a restart, a failover); 1: none (a first start, or
        # the key was flushed or evicted).
        logger.log(
            logging.WARNING if outcome == 2 else logging.INFO,
            "product cache: Redis server %s is new to the cache; epoch bumped, older entries "
            "dropped",
            run_id[:12],
        )


def _near_lost(reason: str) -> None:
    """The tracking connection broke or stopped answering: Redis restarted, hung or became
    unreachable, and a write elsewhere may have lost its invalidation meanwhile."""
    redis_failed(f"the near cache's tracking connection: {reason}")


def _fail(exc: Exception) -> None:
    """Remember that this process may have missed an invalidation; log once per outage."""
    with _state.lock:
        first = not _state.suspect
        _state.suspect = True
        _state.failures += 1
        _state.retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S
        context = _state.context
    if context is not None and context.near is not None:
        context.near.forget()
    if first:
        logger.warning("product cache unavailable, serving from PostgreSQL: %s", exc)


def redis_resting() -> bool:
    """Whether this process leaves Redis alone for now, after seeing it fail. Other users of the
    cache's Redis (the rate-limit counters) skip it too, rather than each request waiting out a
    socket timeout."""
    return _state.suspect and time.monotonic() < _state.retry_at


def redis_failed(reason: str) -> None:
    """Another user of the cache's Redis saw it fail: this process rests from it too."""
    _fail(ConnectionError(reason))


def _healthy() -> bool:
    """True when the cache may be used. After an outage, drop every entry first."""
    if not _state.suspect:
        return True
    if time.monotonic() < _state.retry_at:
        return False
    failures, skips = _state.failures, _state.skips
    try:
        bump_epoch()
    except Exception:
        with _state.lock:
            _state.retry_at = time.monotonic() + RETRY_AFTER_FAILURE_S
        return False
    with _state.lock:
        _state.skips_covered = max(_state.skips_covered, skips)
        if _state.failures != failures:
            return False  # Redis failed again while we bumped: bump again next time
        _state.suspect = False
        _state.send_failures = 0  # Redis answers: one failure must not start skipping again
    logger.warning("product cache reachable again; epoch bumped, older entries dropped")
    return True


def probe() -> bool:
    """For the invalidation listener, several times a second: notice a Redis outage even with
    nothing to send (a PING), and as soon as Redis answers again, drop every entry (a new epoch).

    Entries cached before an outage then stop being served right after Redis returns, even by
    processes that never saw it fail. Returns whether the cache is usable.
    """
    if _state.suspect:
        with _state.lock:
            _state.retry_at = 0.0  # this process has nothing else to do with Redis: retry now
        return _healthy()
    try:
        _redis().ping()
    except Exception as exc:
        _fail(exc)
        return False
    return True


def bump_epoch() -> None:
    """Make every existing entry unreachable (raises when Redis is unreachable)."""
    _bump([_key("epoch")])


def _bump(keys: list[str]) -> None:
    """Increment counters, then wait for one more round trip (raises when Redis fails).

    Redis sends the invalidation pushes of a command before it reads the next one, so once the
    PING is answered every process's near cache has the push in its socket: a read that starts
    after this write is acknowledged cannot be answered from an old copy.
    """
    _script("invalidate", _INVALIDATE)(keys=keys, args=[COUNTER_TTL_S])
    _redis().ping()


def _entry_key(name: str, prefix: str, epoch: str, count: str, tail: str) -> str:
    if name == "detail":
        return f"{prefix}{epoch}:{tail}:{count}"
    return f"{prefix}{epoch}:{count}:{tail}"


def _lookup(name: str, source: str, counter: str, prefix: str, tail: str) -> Lookup:
    """Look in the near cache, then run a lookup script (which builds the key as _entry_key)."""
    if not enabled() or not _healthy():
        return _MISS_NO_CACHE
    context = _context()
    near = context.near
    token = near.open() if near is not None else None
    if token is None and not _healthy():
        return _MISS_NO_CACHE  # the near cache found Redis gone just now
    epoch_key = context.prefix + "epoch"
    if token is not None:
        assert near is not None
        epoch, count = near.counter(epoch_key), near.counter(counter)
        if epoch is not None and count is not None:
            key = _entry_key(name, prefix, epoch.decode(), count.decode(), tail)
            entry = near.entry(key)
            if entry is not None:
                return Lookup(entry=entry, slot=Slot(key=key))
    try:
        result: list[bytes | None] = context.script(name, source)(  # type: ignore[assignment]
            keys=[epoch_key, counter], args=[prefix, tail]
        )
    except Exception as exc:
        _fail(exc)
        return _MISS_NO_CACHE
    # A miss's GET is Lua's false, which the table keeps and Redis answers as nil: [epoch,
    # counter, None].
    epoch, count = (bytes(value or b"0") for value in result[:2])
    raw = result[2] if len(result) > 2 else None
    key = _entry_key(name, prefix, epoch.decode(), count.decode(), tail)
    counters = ((epoch_key, epoch), (counter, count))
    entry = Entry.decode(raw) if raw is not None else None
    if token is not None:
        assert near is not None
        near.remember(token, dict(counters), key if raw else None, entry, len(raw or b""))
    return Lookup(entry=entry, slot=Slot(key=key, near_token=token, counters=counters))


def detail_lookup(product_id: int) -> Lookup:
    """The cached detail response of one product, and where to store it on a miss."""
    return _lookup(
        "detail",
        _LOOKUP_DETAIL,
        _key(f"ver:{product_id}"),
        _key(f"d{REPRESENTATION}:"),
        str(product_id),
    )


def page_lookup(path: str, *, host: str, scheme: str, params: Sequence[tuple[str, str]]) -> Lookup:
    """The cached list/search page at `path` for a normalized query.

    The path, host and scheme are part of the key: the page's links repeat them.

    Parameters are ordered by name only (a stable sort keeps repeated names, the page's own
    refused but others kept, in their order) and encoded losslessly, so no two different
    queries share a key: `name=a%26page%3D3` and `name=a&page=3` stay apart.
    """
    ordered = sorted(params, key=lambda pair: pair[0])
    normalized = orjson.dumps([path, host, scheme, ordered])
    digest = hashlib.blake2b(normalized, digest_size=16).hexdigest()
    return _lookup("page", _LOOKUP_PAGE, _key("gen"), _key(f"l{REPRESENTATION}:"), digest)


def claim(lookup: Lookup) -> tuple[Entry | None, bytes | None]:
    """On a miss (`lookup.entry` is None), decide who loads: returns (entry, lease).

    The first reader to miss a key takes a short lock and is the leader: it gets a lease (the
    lock's value, its own), loads from PostgreSQL, then stores with the lease (which releases
    the lock), or calls `release` with it if it has nothing to store.
    The others wait for the leader's entry (up to FILL_WAIT_S) instead of sending the same
    query, and load themselves only if none arrives, so a hot key that expires under a hundred
    concurrent requests costs PostgreSQL one query. With no cache, everyone loads and nobody
    leads.
    """
    if lookup.slot is None:
        return None, None
    try:
        lease = secrets.token_bytes(8)
        # A leader may have stored and released between our lookup and now: its entry, then.
        claimed = _script("claim", _CLAIM)(
            keys=[lookup.slot.key, lookup.lock_key], args=[lease, LOCK_TTL_MS]
        )
        if isinstance(claimed, bytes):
            return Entry.decode(claimed), None
        if claimed:
            return None, lease
        redis = _redis()
        deadline = time.monotonic() + FILL_WAIT_S
        delay = 0.002
        while time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            raw, locked = redis.pipeline().get(lookup.slot.key).exists(lookup.lock_key).execute()
            if raw is not None:
                return Entry.decode(raw), None
            if not locked:
                break  # the leader found nothing to cache (a 404, an error): load ourselves
    except Exception as exc:
        _fail(exc)
    return None, None


def release(lookup: Lookup, lease: bytes) -> None:
    """The leader is done (stored or not): waiting readers stop waiting.

    Only its own lock goes: if it took longer than the lock's TTL, another reader may hold the
    lock by now, and that reader's waiters must go on waiting for it.
    """
    try:
        _script("release", _RELEASE)(keys=[lookup.lock_key], args=[lease])
    except Exception as exc:
        _fail(exc)


def store(lookup: Lookup, entry: Entry, lease: bytes | None = None) -> None:
    """Store under the key that was current when the reader looked, before it read PostgreSQL.

    A leader passes its lease: the lock goes in the same round trip (as `release`), so its
    waiters find the entry as the lock goes, and a miss costs one round trip fewer.
    """
    slot = lookup.slot
    if slot is None:
        return
    raw = entry.encode()
    try:
        if lease is None:
            _redis().set(slot.key, raw, ex=settings.PRODUCT_CACHE_TTL_S)
        else:
            _script("store_release", _STORE_RELEASE)(
                keys=[lookup.lock_key, slot.key], args=[lease, raw, settings.PRODUCT_CACHE_TTL_S]
            )
    except Exception as exc:
        _fail(exc)
        if lease is not None and isinstance(exc, RedisConnectionError):
            # A connection lost (reset, killed) may not have run the script: try the release
            # alone on a new one, as before they were one, rather than leave the waiters
            # polling until the lock expires. Not after a timeout, which would cost another.
            release(lookup, lease)
        return
    near = _context().near
    if slot.near_token is not None and near is not None:
        near.remember(slot.near_token, dict(slot.counters), slot.key, entry, len(raw))


def detail_write_through(product_id: int, entry: Entry, is_current: Callable[[], bool]) -> None:
    """After an acknowledged write of one product: keep its response as the detail entry.

    Saves every process a database read on the next GET of a product just written. Called after
    the write's own invalidation, so the key read here is at least as new as that bump; then
    `is_current` checks in PostgreSQL that no later write has committed. A write that commits
    after the check bumps the counter after it too, past this key, so the entry stored here can
    never stand in front of a newer row.
    """
    lookup = detail_lookup(product_id)
    if lookup.slot is None or lookup.entry is not None or not is_current():
        return
    store(lookup, entry)


def invalidate(product_ids: Iterable[int]) -> None:
    """Make the next read of these products, and of every list/search page, miss.

    Called after commit, also with the cache switched off here: other processes may have it
    on. If Redis cannot be reached, this process remembers it and drops every entry (a new epoch)
    as soon as Redis answers again.
    """
    keys = [_key(f"ver:{pid}") for pid in product_ids]
    keys.append(_key("gen"))
    _send_invalidation(keys)


def invalidate_all() -> None:
    """After bulk writes that do not say which products they touched (seeding, raw SQL)."""
    _send_invalidation([_key("epoch")])


# One transaction's changed products, per connection (a transaction belongs to one: a thread's,
# or an async context's), until its commit sends them.
INVALIDATE_BATCH = 1_000
_queued: WeakKeyDictionary[BaseDatabaseWrapper, set[int]] = WeakKeyDictionary()


def invalidate_on_commit(product_ids: Iterable[int], *, using: str) -> None:
    """Invalidate these products once the current transaction commits (now, in autocommit).

    A transaction that changes many products (the admin's "delete selected", a loop of saves,
    a bulk write) sends them together: each call queues its ids on the connection, and the first
    of the transaction's after-commit callbacks sends every queued id, INVALIDATE_BATCH ids per
    invalidation (one script and one PING); the callbacks after it find nothing left. Deleting
    5,000 products in the admin cost 5,000 invalidations when each row sent its own.

    Ids queued in a savepoint or a transaction that was rolled back stay queued and go with the
    next commit's: an extra invalidation costs one miss, a lost one a stale read. For the same
    reason, ids a send did not get to (it was interrupted) are queued again.
    """
    connection = transaction.get_connection(using)
    _queued.setdefault(connection, set()).update(product_ids)
    transaction.on_commit(lambda: _send_queued(connection), using=using)


def _send_queued(connection: BaseDatabaseWrapper) -> None:
    queued = _queued.pop(connection, None)
    if not queued:
        return  # an earlier callback of the same commit sent them
    ids = sorted(queued)
    for start in range(0, len(ids), INVALIDATE_BATCH):
        try:
            invalidate(ids[start : start + INVALIDATE_BATCH])
        except BaseException:
            _queued.setdefault(connection, set()).update(ids[start:])
            raise


def forget_queued_invalidations() -> None:
    """Drop every queued id (tests: a test's transaction is rolled back, never committed)."""
    _queued.clear()


def _send_invalidation(keys: list[str]) -> None:
    """Bump these counters, also while this process rests from Redis after a failure: the
    write is acknowledged after this, and the other processes, which may well reach Redis (the
    failure was this process's: a timeout on a starved CPU, a connection killed), learn of it
    only here. Skipped while resting, they served the old entry until this process's next cache
    lookup or the listener's NOTIFY bumped something.

    After two sends in a row have failed, the others in the rest the last one started are
    skipped: against a black-holed Redis each send waits out the socket timeout, and a loop of
    writes (a command, the listener's one invalidation per NOTIFY) went at four a second. One
    failure alone (a stall, a killed connection) skips nothing. What is skipped, the next send
    that goes out covers with an epoch bump, as does this process's next cache lookup
    (`_healthy`); the listener invalidates it in the other processes meanwhile, once it reaches
    Redis (a skip counts as a failure: a bump already in progress may have read the counters
    before this write)."""
    with _state.lock:  # one decision: a send that reads `skips` after it sees this skip
        if _state.send_failures >= 2 and time.monotonic() < _state.skip_sends_until:
            _state.suspect = True
            _state.failures += 1
            _state.skips += 1
            return
        skips, covered, mark = _state.skips, _state.skips_covered, _state.send_failure_mark
    if skips > covered:
        keys = [*keys, _key("epoch")]
    try:
        _bump(keys)
    except Exception as exc:
        _fail(exc)
        with _state.lock:
            if _state.send_failure_mark == mark:  # no other send's failure counted meanwhile
                _state.send_failure_mark += 1
                _state.send_failures += 1
                _state.skip_sends_until = _state.retry_at
        return
    with _state.lock:
        _state.send_failures = 0
        _state.skips_covered = max(_state.skips_covered, skips)
