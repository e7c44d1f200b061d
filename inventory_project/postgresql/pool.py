"""What the connection pool does when an attempt to (re)connect gives up."""

from __future__ import annotations

from psycopg_pool import ConnectionPool


def reconnect_while_requests_wait(pool: ConnectionPool) -> None:
    """Start the next attempt at once if requests are waiting for a connection.

    psycopg_pool starts an attempt only for a request that finds no connection. In an outage
    every thread is already waiting (up to `DB_POOL_TIMEOUT_S`), so after an attempt gave up
    (`DB_POOL_RECONNECT_TIMEOUT_S`) nothing tried again until one of them timed out: 5-6 s
    without a try, measured. Uses psycopg_pool's private `_lock`, `_waiting` and
    `_maybe_grow_pool` (3.3; a test fails if they change).
    """
    with pool._lock:
        if pool._waiting:
            pool._maybe_grow_pool()
