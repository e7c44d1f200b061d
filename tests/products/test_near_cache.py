"""The per-process near cache (products/near_cache.py), against the real Redis.

"Another process" is played by a Redis client of its own doing what `cache.invalidate` does in
another process: bump a counter, then wait one more round trip.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import cache as django_cache
from django.test import override_settings

from products import cache, near_cache
from products.near_cache import BACKLOG_LIMIT
from tests.products.conftest import (
    caches_on,
    over_tcp_and_unix,
    redis_binary_and_port,
    start_redis,
)

DETAIL_ID = 4242


pytestmark = pytest.mark.usefixtures("fresh_cache_state")


def other_process() -> redis.Redis:
    kwargs = cache._redis().connection_pool.connection_kwargs
    if "path" in kwargs:  # REDIS_URL=unix://...
        return redis.Redis(unix_socket_path=kwargs["path"], db=kwargs["db"])
    return redis.Redis(host=kwargs["host"], port=kwargs["port"], db=kwargs["db"])


def bump_elsewhere(client: redis.Redis, *suffixes: str) -> None:
    for suffix in suffixes:
        client.incr(cache._key(suffix))
    client.ping()


def cached_detail(product_id: int = DETAIL_ID, body: bytes = b'{"v":1}') -> cache.Lookup:
    """Look the detail up, store it if missing; returns the lookup that finds it."""
    lookup = cache.detail_lookup(product_id)
    if lookup.entry is None:
        cache.store(lookup, cache.Entry(headers={"ETag": '"x"'}, body=body))
        lookup = cache.detail_lookup(product_id)
    assert lookup.entry is not None
    return lookup


@pytest.fixture
def lua_calls(monkeypatch) -> Callable[[], int]:
    """How many scripts this process has sent Redis since the fixture was set up: a lookup the
    near cache does not answer runs one. Not INFO commandstats, which counts every client of
    the shared Redis: another test run's or a server's lookups moved it between two reads."""
    calls = [0]
    for name in ("eval", "evalsha"):
        real = getattr(redis.Redis, name)

        def counted(self: redis.Redis, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            calls[0] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(redis.Redis, name, counted)
    return lambda: calls[0]


def near() -> cache.NearCache:
    found = cache._context().near
    assert found is not None
    return found


@over_tcp_and_unix
def test_a_hot_read_is_answered_from_process_memory_without_asking_redis(
    lua_calls, transport
) -> None:
    cached_detail()
    # The clock stopped: the lease (0.1 s) cannot lapse between two reads. It did when the test
    # stalled that long (a starved CPU, a GC pause), and the read after it rightly asked Redis.
    stopped = time.monotonic()
    near()._clock = lambda: stopped
    deadline = time.monotonic() + 30
    while near().open() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # a lease that had lapsed: until the answer to its PING is read
    cached_detail()  # kept in process memory under that lease
    before = lua_calls()
    for _ in range(50):
        assert cache.detail_lookup(DETAIL_ID).entry is not None
    assert lua_calls() == before


@over_tcp_and_unix
def test_a_write_elsewhere_is_seen_by_the_very_next_read(transport) -> None:
    client = other_process()
    for round_ in range(200):
        cached_detail(body=b'{"round":%d}' % round_)
        bump_elsewhere(client, f"ver:{DETAIL_ID}")
        assert cache.detail_lookup(DETAIL_ID).entry is None, f"stale in round {round_}"


@over_tcp_and_unix
def test_a_catalogue_write_elsewhere_drops_every_cached_page_at_once(transport) -> None:
    client = other_process()
    params = [("page", "1"), ("limit", "20")]
    lookup = cache.page_lookup("list", host="h", scheme="https", params=params)
    cache.store(lookup, cache.Entry(headers={}, body=b"[]"))
    assert cache.page_lookup("list", host="h", scheme="https", params=params).entry is not None
    bump_elsewhere(client, "gen")
    assert cache.page_lookup("list", host="h", scheme="https", params=params).entry is None


def read_while_another_thread_drains(
    monkeypatch, *written: str, flush: bool = False, forget: bool = False
) -> None:
    """A reader fetches the detail's counters from Redis; before it keeps them, `written` counters
    are bumped elsewhere (or, with `flush`, the database is flushed) and this thread drains the
    push. With `forget`, the near cache is dropped first (a Redis failure), so the bump's push
    goes to a connection that is gone, and this thread subscribes anew."""
    cached_detail()
    client = other_process()
    context = cache._context()
    fetched, resume = threading.Barrier(2, timeout=10), threading.Barrier(2, timeout=10)
    real_script = context.script

    def script_then_pause(name, source):
        run = real_script(name, source)

        def paused(**kwargs):
            result = run(**kwargs)
            if threading.current_thread().name == "slow-reader":
                fetched.wait()
                resume.wait()
            return result

        return paused

    # Make the slow reader go to Redis: drop the counter it would otherwise find in memory.
    near()._counters.pop(cache._key(f"ver:{DETAIL_ID}"))
    monkeypatch.setattr(context, "script", script_then_pause)
    slow = threading.Thread(target=cache.detail_lookup, args=(DETAIL_ID,), name="slow-reader")
    slow.start()
    fetched.wait()  # the slow reader holds what it read
    if forget:
        near().forget()
    if flush:
        client.flushdb()
    bump_elsewhere(client, *written)
    assert near().open() is not None  # this thread drains the push
    resume.wait()
    slow.join(timeout=10)
    assert not slow.is_alive()
    monkeypatch.setattr(context, "script", real_script)


def test_a_miss_keeps_its_counters_but_takes_no_room() -> None:
    """Only entries count against PRODUCT_NEAR_CACHE_MAX_BYTES: a miss kept as an entry of
    its own would push hot entries out."""
    lookup = cache.detail_lookup(DETAIL_ID)
    assert lookup.entry is None
    assert near().counter(cache._key(f"ver:{DETAIL_ID}")) is not None
    assert (near()._entries, near()._bytes) == ({}, 0)


def test_a_counter_read_just_before_an_invalidation_is_not_kept_after_it(monkeypatch) -> None:
    """A write lands between the reader's fetch and its fill: what it fetched must not be kept."""
    read_while_another_thread_drains(monkeypatch, f"ver:{DETAIL_ID}")
    assert cache.detail_lookup(DETAIL_ID).entry is None


def test_a_fill_opened_before_the_near_cache_was_dropped_is_not_kept(monkeypatch) -> None:
    """Invalidations sent while it had no connection never reach it: a reader that fetched
    before the drop must not keep what it fetched once a new connection is in place."""
    read_while_another_thread_drains(monkeypatch, f"ver:{DETAIL_ID}", forget=True)
    assert cache.detail_lookup(DETAIL_ID).entry is None


def test_a_write_to_another_product_does_not_stop_a_fill(monkeypatch, lua_calls) -> None:
    """Under writes a push arrives every few ms: only the entry's own counters may stop a fill."""
    read_while_another_thread_drains(monkeypatch, f"ver:{DETAIL_ID + 1}", "gen")
    before = lua_calls()
    assert cache.detail_lookup(DETAIL_ID).entry is not None
    assert lua_calls() == before  # kept in process memory by the slow reader


def test_an_invalidation_processed_before_a_read_began_does_not_stop_its_fill(
    monkeypatch,
) -> None:
    """Only invalidations after the read's `open` count: one of the entry's own counters from
    before it (still on record) must not refuse what the read fetched afterwards."""
    cached_detail()
    bump_elsewhere(other_process(), f"ver:{DETAIL_ID}")
    assert near().open() is not None  # processed, and on record
    read_while_another_thread_drains(monkeypatch, "gen")
    # Kept in process memory by the slow reader (the helper had dropped it).
    assert near().counter(cache._key(f"ver:{DETAIL_ID}")) is not None


def test_a_fill_read_before_a_flush_is_not_kept_after_it(monkeypatch, own_redis) -> None:
    """A flush invalidates every counter at once (one push without keys): a reader that
    fetched counters and an entry before it must not keep them, or the old entry is served
    under counters Redis no longer has. A Redis of the test's own: it is flushed."""
    port, _ = own_redis
    with _on_redis(port):
        read_while_another_thread_drains(monkeypatch, flush=True)
        assert cache.detail_lookup(DETAIL_ID).entry is None


def test_a_push_it_cannot_read_empties_the_near_cache() -> None:
    """A tracked name that is not UTF-8 (not one this app writes) stops the reading of the
    pushes drained with it: the invalidations after it in the same read must not be lost.
    Redis sends one push per tracked prefix, the epoch's before the versions'."""
    cached_detail()
    client = other_process()
    pipe = client.pipeline(transaction=False)
    pipe.incr(cache._key("epoch").encode() + b"\xff")
    pipe.incr(cache._key(f"ver:{DETAIL_ID}"))
    pipe.execute()
    client.ping()
    for _ in range(2):
        assert cache.detail_lookup(DETAIL_ID).entry is None


def test_a_backlog_too_large_to_trust_empties_the_near_cache() -> None:
    cached_detail()
    client = other_process()
    pipe = client.pipeline(transaction=False)
    for n in range(BACKLOG_LIMIT // 20):  # each push carries a key of more than 20 bytes
        pipe.incr(cache._key(f"ver:{10_000_000 + n}"))
    pipe.execute()
    client.ping()

    assert near().open() is None  # not trusted: everything dropped, subscribed anew
    assert not near()._entries
    assert near().open() is not None
    assert cache.detail_lookup(DETAIL_ID).entry is not None  # from Redis again


def test_a_lost_invalidation_connection_empties_the_near_cache() -> None:
    cached_detail()
    sock = near()._sock
    assert sock is not None
    host, port = sock.getsockname()[:2]
    cache._redis().execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")

    deadline = time.monotonic() + 5
    while near().open() is not None and time.monotonic() < deadline:
        pass  # the kill arrives as the socket closing
    assert not near()._entries
    assert near().open() is not None  # subscribed again


def test_an_error_answer_on_the_tracking_connection_empties_the_near_cache(own_redis) -> None:
    """Only a PONG answers a PING: an error in its place (here an ACL that refuses PING) says
    the connection is not what the copy relies on, and must not extend its lease."""
    port, _ = own_redis
    with override_settings(CACHES=_as_user_refused(port, "-ping")):
        cached_detail()
        assert near()._counters
        # Late enough in the lease to PING, and standing still there: the loop below ends
        # only when the copy is dropped, not when the lease runs out.
        now = [near()._valid_until - near()._lease_s * 0.4]
        near()._clock = lambda: now[0]
        deadline = time.monotonic() + 5
        while near().open() is not None and time.monotonic() < deadline:
            pass  # until the error answering the PING is read
        assert (near()._sock, near()._counters, near()._entries) == (None, {}, {})


class _ResetSocket:
    """The tracking connection's socket, its reads failing as a reset by the peer does."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real

    def recv(self, size: int) -> bytes:
        raise ConnectionResetError(104, "Connection reset by peer")

    def send(self, data: bytes) -> int:
        return self.real.send(data)

    def close(self) -> None:
        self.real.close()


@over_tcp_and_unix
def test_a_tracking_connection_that_fails_empties_the_near_cache_and_is_reported(transport) -> None:
    """An error, not just a closed connection: this process may have missed invalidations,
    so its copy goes and the cache treats it as its own failure (a new epoch before the next
    entry is served)."""
    cached_detail()
    sock = near()._sock
    assert sock is not None
    near()._sock = _ResetSocket(sock)  # type: ignore[assignment]
    assert near().open() is None
    assert (near()._entries, near()._counters) == ({}, {})
    assert cache._state.suspect


@over_tcp_and_unix
def test_a_read_that_finds_its_tracking_connection_failed_rests_from_redis(
    monkeypatch, transport
) -> None:
    """The failure may have hidden an invalidation: the read that finds it answers from
    PostgreSQL, as after any failure, not with the entry Redis still holds from before."""
    monkeypatch.setattr(cache, "RETRY_AFTER_FAILURE_S", 60.0)
    cached_detail()
    sock = near()._sock
    assert sock is not None
    near()._sock = _ResetSocket(sock)  # type: ignore[assignment]
    lookup = cache.detail_lookup(DETAIL_ID)
    assert (lookup.entry, lookup.slot) == (None, None)


def test_over_a_unix_socket_a_redis_that_goes_away_is_noticed(unix_redis) -> None:
    """The near cache's own connection (a unix socket of its own, not redis-py's) sees the
    server go: its copy is dropped and the process treats it as its own failure, answering
    from PostgreSQL until Redis is back."""
    path, proc = unix_redis
    with override_settings(CACHES=caches_on(f"unix://{path}?db=0")):
        cached_detail()
        sock = near()._sock
        assert sock is not None
        assert sock.family == socket.AF_UNIX
        proc.terminate()  # Redis closes its clients' connections as it shuts down
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while near().open() is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # the shutdown arrives as the socket closing
        assert (near()._sock, near()._entries) == (None, {})
        assert cache._state.suspect
        assert cache.detail_lookup(DETAIL_ID).entry is None


@pytest.fixture
def own_redis() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own, which it may stop and resume."""
    binary, port = redis_binary_and_port()
    workdir = tempfile.mkdtemp(prefix="near-cache-redis-")
    proc = start_redis(binary, workdir, port=port)
    try:
        yield port, proc
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _on_redis(port: int) -> override_settings:
    """The cache on the Redis at `port` (a test's own) for the `with` block."""
    return override_settings(CACHES=caches_on(f"redis://127.0.0.1:{port}/0"))


def test_a_hung_redis_stops_the_near_cache_before_a_writer_could_give_up(own_redis) -> None:
    port, proc = own_redis
    with _on_redis(port):
        cached_detail()
        now = [time.monotonic()]
        near()._clock = lambda: now[0]
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            # A writer gives up on a hung Redis after the socket timeout; by then the lease
            # (shorter) has run out, so the read goes to Redis, times out and uses PostgreSQL.
            now[0] += settings.REDIS_SOCKET_TIMEOUT_S
            assert near().open() is None
            assert cache.detail_lookup(DETAIL_ID).entry is None
            assert cache._state.suspect
        finally:
            os.kill(proc.pid, signal.SIGCONT)


class _SnapshotRedis:
    """A Redis of the test's own, the cache's for the block (`_snapshot_redis`), that keeps
    the snapshots it is asked for and restarts from the last one."""

    def __init__(self, workdir: str) -> None:
        self.binary, self.port = redis_binary_and_port()
        self.workdir = workdir
        self.proc = start_redis(self.binary, workdir, port=self.port)
        self.client = redis.Redis(port=self.port)

    def restart_from_snapshot(self) -> None:
        self.client.shutdown(nosave=True)
        self.proc.wait(timeout=10)
        self.proc = start_redis(self.binary, self.workdir, port=self.port)


@contextlib.contextmanager
def _snapshot_redis(tmp_path: Any) -> Iterator[_SnapshotRedis]:
    server = _SnapshotRedis(str(tmp_path))
    try:
        with override_settings(CACHES=caches_on(f"redis://127.0.0.1:{server.port}/0")):
            yield server
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=10)


def _as_a_new_process() -> None:
    """This process's cache as a process of its own would find it: a near cache subscribing
    anew, no failure seen (this one's near cache may have seen its connection break), no
    connection open."""
    cache.reset()
    cache._state.suspect = False
    cache._redis().connection_pool.disconnect()


@contextlib.contextmanager
def _restored_from_an_older_snapshot(tmp_path: Any) -> Iterator[None]:
    """A Redis of the test's own holding a detail entry that a write after its snapshot
    invalidated; the block runs after a restart that reloaded that snapshot."""
    with _snapshot_redis(tmp_path) as server:
        cached_detail(body=b'{"before":true}')
        server.client.save()  # the snapshot holds the entry and its counters
        cache.invalidate([DETAIL_ID])  # a write after the snapshot
        assert cache.detail_lookup(DETAIL_ID).entry is None
        server.restart_from_snapshot()
        assert server.client.dbsize() > 0
        yield


def test_a_redis_restored_from_an_older_snapshot_serves_nothing_cached_before_it(tmp_path) -> None:
    with _restored_from_an_older_snapshot(tmp_path):
        # The near cache's connection broke with the restart: this process may have missed
        # invalidations, so the epoch moves on before anything is served from Redis.
        assert cache.detail_lookup(DETAIL_ID).entry is None


def test_a_restored_snapshot_is_noticed_without_a_near_cache(tmp_path, caplog) -> None:
    """redis-py reconnected to the restarted server without a word: only the near cache's
    connection noticed, and with it off (PRODUCT_NEAR_CACHE_MAX_BYTES=0) the entry the write had
    invalidated was served again."""
    with (
        override_settings(PRODUCT_NEAR_CACHE_MAX_BYTES=0),
        _restored_from_an_older_snapshot(tmp_path),
    ):
        caplog.clear()
        assert cache.detail_lookup(DETAIL_ID).entry is None
    (said,) = [r for r in caplog.records if "new to the cache" in r.getMessage()]
    assert said.levelname == "WARNING"  # another server's id was there: a restart


def test_a_near_cache_of_no_bytes_is_off() -> None:
    """The README's switch for a Redis across a lossy network, where a delayed push can leave
    a read behind: 0 keeps no copy at all, not a near cache that still keeps the counters."""
    with override_settings(PRODUCT_NEAR_CACHE_MAX_BYTES=0):
        cached_detail()
        assert cache._context().near is None


def test_a_process_that_first_connects_after_a_restore_serves_nothing_from_before_it(
    tmp_path,
) -> None:
    """A process that never saw the server go (one started after the restart, or whose near
    cache had just subscribed again) saw nothing to distrust."""
    with _restored_from_an_older_snapshot(tmp_path):
        _as_a_new_process()
        assert cache.detail_lookup(DETAIL_ID).entry is None


@pytest.mark.parametrize("refused", ["-info", "-eval"])
def test_a_redis_user_refused_the_server_check_still_has_the_cache(own_redis, refused) -> None:
    """The server's run_id comes from INFO and is compared by EVAL, which an ACL may refuse (as
    a read-only replica or a full Redis refuses the write): every connection failed, the rate
    limits' too. The product cache's own scripts run by EVALSHA."""
    port, _ = own_redis
    with override_settings(CACHES=_as_user_refused(port, refused)):
        django_cache.set("rate-limit-counter", 1)
        assert django_cache.get("rate-limit-counter") == 1
        cached_detail()
        assert cache.detail_lookup(DETAIL_ID).entry is not None


@pytest.mark.parametrize("refused", ["-info", "-eval"])
def test_a_refused_server_check_is_logged_once_a_minute(own_redis, refused, caplog) -> None:
    """Without the check, a restart goes unnoticed by a process without a near cache: the
    README says it is logged. A refused INFO returned without a word."""
    port, _ = own_redis
    with override_settings(CACHES=_as_user_refused(port, refused)):
        cache.detail_lookup(DETAIL_ID)
        cache._redis().connection_pool.disconnect()
        cache._redis().ping()  # a second new connection, in the same minute
    said = [r for r in caplog.records if "server check was refused" in r.getMessage()]
    assert [r.levelname for r in said] == ["WARNING"]


@pytest.fixture
def without_run_id(own_redis) -> Iterator[int]:
    """A proxy to a Redis of the test's own whose INFO names no run_id, as a proxy in front of
    Redis may not: its port."""
    port, _ = own_redis
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(source: socket.socket, sink: socket.socket, rewrite: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data.replace(b"run_id:", b"run_xx:") if rewrite else data)
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while True:
                client, _ = listener.accept()
                server = socket.create_connection(("127.0.0.1", port))
                for source, sink, rewrite in ((client, server, False), (server, client, True)):
                    threading.Thread(target=pump, args=(source, sink, rewrite), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_a_server_that_names_no_run_id_still_has_the_cache(without_run_id) -> None:
    """Nothing to compare, so nothing is checked: sent on, the missing id failed every new
    connection, the rate limits' too."""
    with _on_redis(without_run_id):
        django_cache.set("rate-limit-counter", 1)
        assert django_cache.get("rate-limit-counter") == 1
        cached_detail()
        assert cache.detail_lookup(DETAIL_ID).entry is not None


def _as_user_refused(port: int, refused: str) -> dict[str, Any]:
    """CACHES for a Redis user on `port` whose ACL refuses the `refused` command."""
    redis.Redis(port=port).acl_setuser(
        "app", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", refused]
    )
    return caches_on(f"redis://app:secret@127.0.0.1:{port}/0")


def test_a_restart_moves_the_epoch_past_every_value_used_before_it(tmp_path) -> None:
    """The check bumped the restored epoch by one: a bump made between the snapshot and the
    restart had already used that value, and an entry a slow reader stored under it after the
    restart was current again."""
    with _snapshot_redis(tmp_path) as server:
        cache.detail_lookup(DETAIL_ID)
        server.client.save()
        cache.bump_epoch()  # after the snapshot
        slow = cache.detail_lookup(DETAIL_ID)  # a reader, still in flight at the restart
        cache.invalidate([DETAIL_ID])  # a write it missed
        server.restart_from_snapshot()
        cache.store(slow, cache.Entry(headers={"ETag": '"x"'}, body=b'{"old":true}'))
        _as_a_new_process()  # one that reads after it
        assert cache.detail_lookup(DETAIL_ID).entry is None


def test_a_new_server_moves_an_epoch_that_is_ahead_of_its_clock() -> None:
    """The epoch starts again from the server's clock, or one past the epoch it finds where
    that is ahead (a snapshot restored on a server whose clock is behind): left where it was,
    every entry stored under it would be current again."""
    client = cache._redis()
    seconds, micros = client.time()
    ahead = (seconds + 3600) * 1_000_000 + micros  # an hour ahead of the server's clock
    client.set(cache._key("epoch"), ahead)
    cached_detail(body=b'{"before":true}')  # under that epoch
    client.delete(cache.server_key())  # the entries were not written on this server
    _as_a_new_process()
    assert cache.detail_lookup(DETAIL_ID).entry is None
    assert int(client.get(cache._key("epoch"))) > ahead


def test_a_new_server_check_leaves_its_run_id_and_epoch_with_a_ttl() -> None:
    """Every key has a TTL, the two the server check sets too: kept for good, the run_id and
    an epoch no write bumps again would outlive the cache's own data."""
    keys = [cache.server_key(), cache._key("epoch")]
    client = cache._redis()
    client.delete(cache.server_key())  # the entries were not written on this server
    _as_a_new_process()
    cache.detail_lookup(DETAIL_ID)  # a new connection: the check moves the epoch on
    assert [0 < client.ttl(key) <= cache.COUNTER_TTL_S for key in keys] == [True, True]


def test_a_server_that_stays_keeps_its_run_id_and_epoch_past_the_counters_ttl() -> None:
    """Only a new connection found the key, and a match left its TTL alone: seven days after
    it was written every entry was dropped, as after a restart. The epoch's too, where no
    outage had bumped it."""
    keys = [cache.server_key(), cache._key("epoch")]
    client = cache._redis()
    cache.bump_epoch()
    for key in keys:
        client.expire(key, 100)
    client.connection_pool.disconnect()
    client.ping()  # a new connection, to the same server
    assert [client.ttl(key) > 100 for key in keys] == [True, True]


def test_an_invalidation_in_this_process_is_seen_by_its_next_read() -> None:
    for round_ in range(200):
        cached_detail(body=b'{"round":%d}' % round_)
        cache.invalidate([DETAIL_ID])
        assert cache.detail_lookup(DETAIL_ID).entry is None, f"stale in round {round_}"


def test_an_entry_goes_with_its_counter_so_a_counter_that_restarts_cannot_find_it() -> None:
    """A counter expires (7 days) long after its entries (300 s), then counts up again."""
    client = other_process()
    bump_elsewhere(client, f"ver:{DETAIL_ID}", f"ver:{DETAIL_ID}")  # version 2
    old = cached_detail(body=b'{"old":true}')
    client.delete(old.slot.key)  # the entry's Redis copy expired
    client.delete(cache._key(f"ver:{DETAIL_ID}"))  # ... and, much later, the counter
    client.ping()
    bump_elsewhere(client, f"ver:{DETAIL_ID}")
    bump_elsewhere(client, f"ver:{DETAIL_ID}")  # version 2 again, after two new writes

    for _ in range(2):  # the second read finds the counter in memory
        lookup = cache.detail_lookup(DETAIL_ID)
        assert lookup.slot.key == old.slot.key
        assert lookup.entry is None


def test_near_entries_expire_with_the_cache_ttl(settings) -> None:
    lookup = cached_detail()
    now = [time.monotonic()]
    near()._clock = lambda: now[0]
    assert near().entry(lookup.slot.key) is not None
    now[0] += settings.PRODUCT_CACHE_TTL_S + 1
    assert near().entry(lookup.slot.key) is None


def test_an_entry_this_process_stores_is_kept_in_its_memory() -> None:
    """The reader that loaded an entry keeps it: its next read needs no round trip."""
    lookup = cache.detail_lookup(DETAIL_ID)
    cache.store(lookup, cache.Entry(headers={"ETag": '"x"'}, body=b"{}"))
    assert near().entry(lookup.slot.key) is not None


def test_an_entry_two_readers_fill_is_counted_once() -> None:
    """Both missed and both store: the second copy replaces the first, and its bytes must not
    stay counted, or the bound empties the near cache sooner and sooner."""
    first, second = cache.detail_lookup(DETAIL_ID), cache.detail_lookup(DETAIL_ID)
    entry = cache.Entry(headers={"ETag": '"x"'}, body=b'{"v":1}')
    cache.store(first, entry)
    once = near()._bytes
    cache.store(second, entry)
    assert near()._bytes == once


def test_an_answered_ping_renews_the_lease() -> None:
    cached_detail()
    assert_an_answered_ping_renews_the_lease()


def test_a_ping_the_last_connection_left_unanswered_does_not_hold_up_the_next() -> None:
    cached_detail()
    near()._pings.append(time.monotonic())  # sent on a connection that goes unanswered
    near().forget()
    cached_detail()  # subscribed anew
    assert_an_answered_ping_renews_the_lease()


def assert_an_answered_ping_renews_the_lease() -> None:
    now = [near()._valid_until - near()._lease_s * 0.4]  # late in the subscription's lease
    near()._clock = lambda: now[0]
    assert near().open() is not None  # ... which sends the PING that renews it
    deadline = time.monotonic() + 5
    while near()._pings and time.monotonic() < deadline:
        assert near().open() is not None  # until the PONG is read
    now[0] += near()._lease_s * 0.5  # past the subscription's lease
    assert near().open() is not None


@over_tcp_and_unix
def test_an_idle_process_keeps_its_socket_drained(transport) -> None:
    cached_detail()
    assert any(t.name == "near-cache-drainer" for t in threading.enumerate())
    now = [time.monotonic() + 5]  # no request for five seconds
    near()._clock = lambda: now[0]
    bump_elsewhere(other_process(), f"ver:{DETAIL_ID}")
    key = cache._key(f"ver:{DETAIL_ID}")
    deadline = time.monotonic() + 30
    while near().counter(key) is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # the drainer looks once a second
    assert near().counter(key) is None


def test_an_idle_process_reports_a_tracking_connection_redis_broke() -> None:
    """The drainer finds it first in a process that serves no reads: Redis restarted or was
    out of reach, a write elsewhere may have lost its invalidation, and the process must
    treat it as its own failure (a new epoch before anything is served) as a read would."""
    cached_detail()
    sock = near()._sock
    assert sock is not None
    now = [time.monotonic() + 5]  # no request for five seconds
    near()._clock = lambda: now[0]
    host, port = sock.getsockname()[:2]
    cache._redis().execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
    # The drainer thread may find it first, and report it a moment after it drops the socket:
    # wait for both, not for the socket alone.
    deadline = time.monotonic() + 30
    while not (near()._sock is None and cache._state.suspect) and time.monotonic() < deadline:
        near().tick()  # the kill arrives as the socket closing
        time.sleep(0.01)
    assert near()._sock is None
    assert cache._state.suspect
    cached_detail()  # reported once: the next reads subscribe anew and use the cache again
    assert not cache._state.suspect


@pytest.mark.parametrize("noticed_by", ["a read", "the idle drainer"])
def test_a_tracking_connection_that_stops_answering_pings_is_dropped(own_redis, noticed_by) -> None:
    port, proc = own_redis
    with _on_redis(port):
        cached_detail()
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            now = [time.monotonic()]
            near()._clock = lambda: now[0]
            near()._pings.append(now[0])  # a PING that will not be answered
            now[0] += 2.0  # no request meanwhile, for the drainer
            if noticed_by == "a read":
                assert near().open() is None
            else:
                near().tick()
            assert near()._sock is None  # reset: reconnects when Redis answers again
            assert cache._state.suspect  # a write elsewhere may have given up meanwhile
        finally:
            os.kill(proc.pid, signal.SIGCONT)


def test_a_fill_older_than_the_invalidations_remembered_is_refused(monkeypatch, lua_calls) -> None:
    """Past the history `remember` can look back through, it refuses, as it did before."""
    monkeypatch.setattr(near_cache, "RECENT_INVALIDATIONS", 2)
    read_while_another_thread_drains(
        monkeypatch, f"ver:{DETAIL_ID + 1}", f"ver:{DETAIL_ID + 2}", f"ver:{DETAIL_ID + 3}"
    )
    before = lua_calls()
    assert cache.detail_lookup(DETAIL_ID).entry is not None
    assert lua_calls() == before + 1  # not kept: asked Redis again


def test_the_near_cache_stays_within_its_memory_bound_dropping_the_oldest_first() -> None:
    bound = 2500  # three detail entries of this size, four counters
    with override_settings(PRODUCT_NEAR_CACHE_MAX_BYTES=bound):
        lookups = [cached_detail(DETAIL_ID + n, body=b"x" * 100) for n in range(5)]
        assert near()._bytes <= bound
        assert len(near()._counters) <= bound // near_cache.ENTRY_OVERHEAD
        kept = [near().entry(lookup.slot.key) is not None for lookup in lookups]
        assert kept == [False, False, True, True, True]


def test_an_epoch_bump_empties_the_near_cache_after_the_bound_dropped_entries() -> None:
    """An entry dropped for room leaves its counters' lists of entries, and the entries kept
    stay on them: a list that kept dropped entries grew without bound, and an entry missing
    from one outlived a bump of that counter, taking room until it expired."""
    with override_settings(PRODUCT_NEAR_CACHE_MAX_BYTES=2500):
        for n in range(5):
            cached_detail(DETAIL_ID + n, body=b"x" * 100)  # the first two dropped for room
        bump_elsewhere(other_process(), "epoch")
        assert near().open() is not None
        assert (near()._entries, near()._dependents) == ({}, {})


def test_a_flush_of_redis_empties_the_near_cache_and_keeps_its_connection(own_redis) -> None:
    """Redis announces a flush as one invalidation of no key in particular: every counter
    is gone, and so is every entry built from one."""
    port, _ = own_redis
    with _on_redis(port):
        lookup = cached_detail()
        sock = near()._sock
        client = redis.Redis(port=port)
        client.flushall()
        client.ping()
        assert near().open() is not None
        assert near()._sock is sock
        assert near().entry(lookup.slot.key) is None
        assert near().counter(cache._key(f"ver:{DETAIL_ID}")) is None


def test_a_tracking_connection_reset_by_redis_is_a_failure_not_an_error(own_redis) -> None:
    """Redis killed while hung resets the connection (a PING it never read): the read goes on
    without the near cache, and the process treats it as Redis failing."""
    port, proc = own_redis
    with _on_redis(port):
        cached_detail()
        os.kill(proc.pid, signal.SIGSTOP)
        near()._ping(time.monotonic())  # left unread in the stopped server's socket
        os.kill(proc.pid, signal.SIGKILL)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # gone; the fixture reaps it
        assert near().open() is None
        assert near()._sock is None
        assert cache._state.suspect


def test_a_redis_reached_over_tls_is_used_without_a_near_cache(caplog) -> None:
    """The tracking connection is a plain socket of its own: over TLS it would speak plain
    text to the server."""
    with override_settings(CACHES=caches_on(f"rediss://127.0.0.1:{redis_binary_and_port()[1]}/0")):
        assert cache._context().near is None
    assert "near cache off: SSLConnection is not supported" in caplog.text


def _open_in_forked_child() -> None:
    near().open()


def test_a_forked_process_does_not_read_its_parents_tracking_socket() -> None:
    """A process forked after the near cache subscribed (a preloaded gunicorn's workers)
    subscribes on a connection of its own: a push one process drained from a shared socket
    never reached the other, which went on serving what the write had invalidated."""
    cached_detail()
    bump_elsewhere(other_process(), f"ver:{DETAIL_ID}")  # its push waits in the socket
    child = multiprocessing.get_context("fork").Process(target=_open_in_forked_child)
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert cache.detail_lookup(DETAIL_ID).entry is None


def test_a_lost_tracking_connection_is_reported_once() -> None:
    """The reads after it subscribe anew and serve from the cache again once Redis answers:
    reported again on each of them, the process rested from Redis and moved the epoch on
    after every read, until the idle drainer happened to take the report."""
    cached_detail()
    sock = near()._sock
    assert sock is not None
    near()._sock = _ResetSocket(sock)  # type: ignore[assignment]
    assert near().open() is None
    assert cache._state.suspect
    cached_detail()  # the epoch moved on, the near cache subscribed anew
    assert not cache._state.suspect


class _SendFailsSocket(_ResetSocket):
    """The tracking connection's socket, its reads working and its sends failing."""

    def recv(self, size: int) -> bytes:
        return self.real.recv(size)

    def send(self, data: bytes) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_tracking_connection_that_cannot_send_its_ping_is_dropped_and_reported() -> None:
    """Its lease could not be renewed: kept, the copy went unused from then on, with nothing
    to say why and no new connection made."""
    cached_detail()
    sock = near()._sock
    assert sock is not None
    near()._sock = _SendFailsSocket(sock)  # type: ignore[assignment]
    now = [near()._valid_until - near()._lease_s * 0.4]  # late enough in the lease to PING
    near()._clock = lambda: now[0]
    assert near().open() is None
    assert cache._state.suspect
    assert near().open() is not None  # subscribed anew
    assert isinstance(near()._sock, socket.socket)


def test_a_redis_with_a_password_and_no_user_has_the_near_cache(own_redis) -> None:
    """`requirepass` alone (a URL with no user name): the tracking connection authenticates as
    Redis's `default` user, as redis-py's own connections do."""
    port, _ = own_redis
    redis.Redis(port=port).config_set("requirepass", "secret")
    with override_settings(CACHES=caches_on(f"redis://:secret@127.0.0.1:{port}/0")):
        cached_detail()
        deadline = time.monotonic() + 10  # a lease that lapsed in a stall: until its PING
        while near().open() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert near().open() is not None


def test_a_redis_user_refused_tracking_has_no_near_cache(own_redis) -> None:
    """Without tracking no push ever comes: a copy kept anyway served what writes elsewhere
    had invalidated."""
    port, _ = own_redis
    with override_settings(CACHES=_as_user_refused(port, "-client|tracking")):
        cached_detail()
        bump_elsewhere(other_process(), f"ver:{DETAIL_ID}")
        assert cache.detail_lookup(DETAIL_ID).entry is None


@pytest.fixture
def closes_at_once() -> Iterator[tuple[int, list[str]]]:
    """A port whose server answers nothing and closes each connection it takes (a Redis
    shutting down, a proxy without a backend): its port, and how each connection ended
    ("closed" by the client, or "left" open by it for a second)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    ends: list[str] = []

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while not stop.is_set():
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(1.0)
                    conn.shutdown(socket.SHUT_WR)
                    try:
                        while conn.recv(65536):
                            pass  # until the client closes: no reset in place of the close
                        ends.append("closed")
                    except TimeoutError:
                        ends.append("left")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield listener.getsockname()[1], ends
    finally:
        stop.set()
        socket.create_connection(listener.getsockname()).close()
        server.join(timeout=10)
        listener.close()


def test_a_tracking_connection_closed_before_it_answers_is_a_failure(closes_at_once) -> None:
    """The subscribing read waited for answers on a closed socket, at full speed, forever,
    holding the near cache's lock. Its socket is closed at once: left to the garbage collector,
    it stayed open as long as the logged exception was kept (pytest keeps the records)."""
    port, ends = closes_at_once
    with _on_redis(port):
        looked: list[cache.Lookup] = []
        reader = threading.Thread(
            target=lambda: looked.append(cache.detail_lookup(DETAIL_ID)), daemon=True
        )
        reader.start()
        reader.join(timeout=30)
        assert not reader.is_alive()
        assert (looked[0].entry, looked[0].slot) == (None, None)
        assert cache._state.suspect
        deadline = time.monotonic() + 10
        while not ends and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ends[:1] == ["closed"]


def test_a_dropped_near_cache_starts_again_empty_with_its_whole_bound() -> None:
    """What a reset drops stops counting: bytes still counted emptied the copy sooner after
    each reset, until it kept nothing; lists of the entries built from each counter held
    memory outside the bound until the counter's next push; the socket is closed, not left
    for the garbage collector while Redis buffers pushes for it."""
    with override_settings(PRODUCT_NEAR_CACHE_MAX_BYTES=2500):  # three entries of this size
        for n in range(3):
            cached_detail(DETAIL_ID + n, body=b"x" * 100)
        sock = near()._sock
        assert sock is not None
        near().forget()
        assert sock.fileno() == -1
        assert (near()._entries, near()._dependents) == ({}, {})
        lookups = [cached_detail(DETAIL_ID + n, body=b"x" * 100) for n in range(3)]
        assert [near().entry(lookup.slot.key) is not None for lookup in lookups] == [True] * 3


def test_the_drainer_outlives_a_dropped_tracking_connection() -> None:
    """Between a reset and the next read there is no socket to drain: the drainer's thread
    died on it, and the process's next connection went undrained while it was idle."""
    cached_detail()
    near().forget()
    near()._clock = lambda: time.monotonic() + 5  # no request for five seconds
    near().tick()


def test_reads_late_in_the_lease_send_one_ping_while_it_is_unanswered(own_redis) -> None:
    """One PING in flight renews the lease: a PING per read was one for every read in the
    second half of each lease, the more of them the slower Redis answered."""
    port, proc = own_redis
    with _on_redis(port):
        cached_detail()
        deadline = time.monotonic() + 5
        while near()._pings and time.monotonic() < deadline:
            near().open()  # until the answer to a PING the reads sent is read
        now = [near()._valid_until - near()._lease_s * 0.4]  # late in the lease, standing still
        near()._clock = lambda: now[0]
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                assert near().open() is not None
            assert len(near()._pings) == 1
        finally:
            os.kill(proc.pid, signal.SIGCONT)
