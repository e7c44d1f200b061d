"""A per-process copy of hot product cache keys, kept coherent by Redis itself.

A cache hit that still goes to Redis costs a round trip and a Lua script, which on a small
machine is about what a whole bare Django view costs. This module keeps the counters (epoch,
generation, product versions) and the entries built from them in the process, so a hit is two
dictionary lookups. products/cache.py decides what goes in; keys are opaque strings here.

Why a local copy cannot serve a stale read:

- **Invalidation.** One socket per process asks Redis for broadcast client-side tracking of the
  counter prefixes (`CLIENT TRACKING ON BCAST PREFIX ...`, RESP3): every change to a counter,
  by any process, INCR, expiry or eviction alike, is pushed to every process. Entries are not
  tracked (their keys carry the counters) but go with the counters they were built from, so a
  counter that expires or is flushed and counts up again cannot find an entry from before; they
  also expire after the cache TTL, as their Redis copies do.
- **Ordering.** Every read drains that socket before it looks here. A writer waits for one more
  Redis round trip after bumping a counter (the PING in `cache._bump`): Redis flushes the pushes
  of a command before it reads the next one, so by the time a write is acknowledged, its push
  sits in every process's socket, and any read that starts later sees it.
- **Late fills.** A value fetched from Redis is kept only if none of the counters it was read
  with was invalidated since the read began draining (`open()` returns a token, `remember()`
  checks the invalidations processed after it), so a thread that read a counter just before a
  write cannot put it back after another thread dropped it. Invalidations of other counters do
  not stop a fill: under a steady write load one arrives every few milliseconds, and refusing
  every fill that overlapped one left a quarter of hot reads going to Redis.
- **Losing Redis.** Each use needs a lease: a PING sent at most `lease_s` ago and answered
  (products/cache.py gives the lesser of NEAR_LEASE_S, 0.1 s, and the socket timeout / 2.5). The
  lease is shorter than the Redis socket timeout, so when Redis hangs, this copy stops being
  used before any writer could have given up on its invalidation and answered. A closed
  or broken socket, a PING unanswered for long, or a backlog so large that Redis may still be
  holding pushes back, drops everything and reconnects; nothing is kept until the new
  subscription is in place. A connection that Redis broke, that stopped answering, or that
  cannot be made is also reported (`on_lost`): Redis restarted or was out of reach, and a write
  elsewhere may have lost its invalidation meanwhile, so products/cache.py treats it as its own
  failure. A background thread drains the socket of a process that serves no reads, since
  Redis buffers pushes without limit for a client that does not read them.

What this relies on: Redis writes a command's pushes before it reads the next command (true of
Redis 7, which this project runs; check it before enabling I/O threads), and a push that Redis
has written reaches this host's socket before the writer's next reply reaches the writer: true
when Redis and the web processes share a host, as in this project's deployment. Across a lossy
network a retransmitted push can arrive up to one lease late; set PRODUCT_NEAR_CACHE_MAX_BYTES=0
where that matters.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import hiredis

logger = logging.getLogger(__name__)

# A drain that reads this much at once may have found the socket full, in which case Redis can
# be holding pushes back: start over rather than trust the copy.
BACKLOG_LIMIT = 16 * 1024
# Bytes counted per entry on top of its body, for the memory bound (measured: a detail entry's
# objects, keys and bookkeeping take about 600 bytes besides the body).
ENTRY_OVERHEAD = 600
# Invalidations remembered for `remember()` to look back through; a fill that began before the
# oldest of them is refused, as every fill was before.
RECENT_INVALIDATIONS = 4096


def _command(*parts: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


_PING = _command("PING")


class _Entry:
    __slots__ = ("cost", "counters", "expires", "value")

    def __init__(self, value: Any, cost: int, expires: float, counters: tuple[str, ...]) -> None:
        self.value, self.cost, self.expires, self.counters = value, cost, expires, counters


class NearCache:
    """Counters and entries of one process, valid while `open()` says so."""

    def __init__(
        self,
        connect: Callable[[], socket.socket],
        prefixes: Iterable[str],
        *,
        on_lost: Callable[[str], None] | None = None,
        auth: tuple[str, str] | None,
        lease_s: float,
        ping_timeout_s: float,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._prefixes = list(prefixes)
        # Told (outside the lock) when Redis broke the connection, stopped answering on it, or
        # could not be reached: the caller may have missed more than this copy.
        self._on_lost = on_lost
        self._lost: str | None = None
        self._auth = auth
        self._lease_s = lease_s
        self._ping_timeout_s = ping_timeout_s
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._pid = 0
        self._counters: dict[str, bytes] = {}
        self._entries: dict[str, _Entry] = {}
        # Counter key -> keys of the entries built from it: when a counter changes, so much as
        # expires (a missing counter reads as 0 until a bump starts it again from Redis's clock
        # in microseconds), what was built from its old values goes too, or a value the counter
        # has again would find an entry from before.
        self._dependents: dict[str, set[str]] = {}
        self._bytes = 0
        self._token = 0  # bumped by every invalidation processed and every reset
        # (token, counter) of the invalidations processed lately, oldest first; a fill opened
        # before `_refuse_before` is refused whatever it holds (a reset, a flush, or history
        # that has been dropped).
        self._recent: deque[tuple[int, str]] = deque()
        self._refuse_before = 0
        self._pings: deque[float] = deque()  # send times of unanswered PINGs, oldest first
        self._valid_until = 0.0
        self._retry_at = 0.0
        self._last_open = 0.0
        self._drainer_pid = 0

    # --- reads ---------------------------------------------------------------------------

    def open(self) -> int | None:
        """Apply every invalidation Redis has sent; a token for `remember`, or None if unusable."""
        with self._lock:
            token = self._open()
            lost, self._lost = self._lost, None
        if lost is not None and self._on_lost is not None:
            self._on_lost(lost)
        return token

    def _open(self) -> int | None:
        now = self._last_open = self._clock()
        if self._sock is None or self._pid != os.getpid():
            if now < self._retry_at or not self._subscribe(now):
                return None
        elif not self._drain() or not self._pings_answered(now):
            return None
        if not self._pings and now >= self._valid_until - self._lease_s / 2:
            self._ping(now)
        return self._token if now < self._valid_until else None

    def counter(self, key: str) -> bytes | None:
        return self._counters.get(key)

    def entry(self, key: str) -> Any:
        found = self._entries.get(key)
        if found is None or found.expires <= self._clock():
            return None
        return found.value

    def remember(
        self, token: int, counters: dict[str, bytes], entry_key: str | None, entry: Any, size: int
    ) -> None:
        """Keep what a read fetched from Redis, unless one of its counters was invalidated since
        `open` (by a push another thread drained meanwhile).

        `counters` are the counter values the entry's key was built from.
        """
        with self._lock:
            if self._sock is None or not self._untouched_since(token, counters):
                return
            self._counters.update(counters)
            if entry_key is None:
                return
            self._drop_entry(entry_key)  # an expired copy, or one built from equal counters
            cost = size + ENTRY_OVERHEAD
            expires = self._clock() + self._ttl_s
            self._entries[entry_key] = _Entry(entry, cost, expires, tuple(counters))
            for counter in counters:
                self._dependents.setdefault(counter, set()).add(entry_key)
            self._bytes += cost
            self._evict()

    def forget(self) -> None:
        """Drop everything (this process saw Redis fail and may have missed a push)."""
        with self._lock:
            self._reset()

    def close(self) -> None:
        with self._lock:
            self._reset()

    def tick(self) -> None:
        """Called about once a second by a background thread: keep an idle process's socket
        drained (Redis buffers pushes without limit for a client that does not read) and notice
        a connection that stopped answering."""
        with self._lock:
            now = self._clock()
            if self._sock is None or self._pid != os.getpid():
                return
            if now - self._last_open < 1.0:
                return  # requests are draining it
            if self._drain():
                self._pings_answered(now)
            lost, self._lost = self._lost, None
        if lost is not None and self._on_lost is not None:
            self._on_lost(lost)

    # --- internals (called with the lock held) --------------------------------------------

    def _untouched_since(self, token: int, counters: Iterable[str]) -> bool:
        """Whether no invalidation processed after `token` was taken touched these counters."""
        if token == self._token:
            return True
        if token < self._refuse_before:
            return False
        keys = set(counters)
        # Newest first: the ones after `token` are at the right-hand end.
        for processed_at, counter in reversed(self._recent):
            if processed_at <= token:
                return True
            if counter in keys:
                return False
        return True

    def _drop_entry(self, key: str) -> None:
        found = self._entries.pop(key, None)
        if found is None:
            return
        self._bytes -= found.cost
        for counter in found.counters:
            dependents = self._dependents.get(counter)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[counter]

    def _invalidate(self, counter: str) -> None:
        """Drop a counter and what was built from it, and note it for `_untouched_since`."""
        if len(self._recent) >= RECENT_INVALIDATIONS:
            dropped, _ = self._recent.popleft()
            self._refuse_before = max(self._refuse_before, dropped)
        self._recent.append((self._token, counter))
        self._counters.pop(counter, None)
        for key in self._dependents.pop(counter, ()):
            self._drop_entry(key)

    def _clear(self) -> None:
        self._counters.clear()
        self._entries.clear()
        self._dependents.clear()
        self._bytes = 0

    def _refuse_all_before_now(self) -> None:
        """No fill opened before this point may be kept, whatever counters it holds."""
        self._refuse_before = self._token
        self._recent.clear()

    def _evict(self) -> None:
        # Oldest first (dicts keep insertion order).
        while self._bytes > self._max_bytes and self._entries:
            self._drop_entry(next(iter(self._entries)))
        # A counter dropped here is only not known locally: its pushes still drop its entries.
        while len(self._counters) > self._max_bytes // ENTRY_OVERHEAD:
            del self._counters[next(iter(self._counters))]

    def _lose(self, reason: str) -> None:
        self._reset()
        self._lost = reason

    def _reset(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._reader = None
        self._clear()
        self._token += 1
        self._refuse_all_before_now()
        self._pings.clear()
        self._valid_until = 0.0

    def _pings_answered(self, now: float) -> bool:
        if self._pings and now - self._pings[0] > self._ping_timeout_s:
            logger.warning("near cache reset: Redis stopped answering on the tracking connection")
            self._lose("Redis stopped answering")
            return False
        return True

    def _start_drainer(self) -> None:
        if self._drainer_pid == os.getpid():
            return
        self._drainer_pid = os.getpid()
        ref = weakref.ref(self)

        def run() -> None:
            while (near := ref()) is not None and near._drainer_pid == os.getpid():
                near.tick()
                del near
                time.sleep(1.0)

        threading.Thread(target=run, name="near-cache-drainer", daemon=True).start()

    def _subscribe(self, now: float) -> bool:
        self._reset()
        sock: socket.socket | None = None
        try:
            sock = self._connect()
            hello: list[str] = ["HELLO", "3"]
            if self._auth is not None:
                hello += ["AUTH", *self._auth]
            tracking = ["CLIENT", "TRACKING", "ON", "BCAST"]
            for prefix in self._prefixes:
                tracking += ["PREFIX", prefix]
            sock.sendall(_command(*hello) + _command(*tracking))
            reader = hiredis.Reader()
            replies: list[Any] = []
            while len(replies) < 2:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("Redis closed the tracking connection")
                reader.feed(data)
                while (reply := reader.gets()) is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        raise reply
                    replies.append(reply)
            sock.setblocking(False)
        except Exception as exc:
            # Closed here: the exception's frames hold the socket for as long as anything keeps
            # the exception (a log handler that keeps records), and Redis keeps the connection.
            if sock is not None:
                sock.close()
            self._retry_at = now + 1.0
            logger.warning("near cache off: cannot subscribe to invalidations: %s", exc)
            self._lost = f"cannot subscribe: {exc}"
            return False
        self._sock, self._reader, self._pid = sock, reader, os.getpid()
        # Redis answered after tracking was on: from `now`, every change reaches this socket.
        self._valid_until = now + self._lease_s
        self._start_drainer()
        return True

    def _ping(self, now: float) -> None:
        assert self._sock is not None
        try:
            self._sock.send(_PING)
        except OSError as exc:
            self._lose(str(exc))
            return
        self._pings.append(now)

    def _drain(self) -> bool:
        assert self._sock is not None
        received = 0
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:
                logger.warning("near cache reset: %s", exc)
                self._lose(str(exc))
                return False
            if not data:
                self._lose("Redis closed the connection")
                return False
            received += len(data)
            if received >= BACKLOG_LIMIT:
                self._reset()
                return False
            self._reader.feed(data)
        if not received:
            return True
        try:
            while self._sock is not None and (message := self._reader.gets()) is not False:
                self._handle(message)
        except Exception as exc:
            logger.warning("near cache reset: unreadable message from Redis: %s", exc)
            self._reset()
            return False
        return self._sock is not None

    def _handle(self, message: Any) -> None:
        if isinstance(message, hiredis.PushNotification):
            kind, keys = message[0], message[1] if len(message) > 1 else None
            if kind != b"invalidate":
                return
            self._token += 1
            if keys is None:  # FLUSHALL / FLUSHDB: every counter is gone (reads as 0)
                self._clear()
                self._refuse_all_before_now()
                return
            for key in keys:
                self._invalidate(key.decode())
        elif message == b"PONG" and self._pings:
            sent = self._pings.popleft()
            self._valid_until = max(self._valid_until, sent + self._lease_s)
        elif isinstance(message, hiredis.ReplyError):
            self._reset()
