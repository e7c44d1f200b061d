"""psycopg's connection, with a bound on how long a web request waits for PostgreSQL's answer.

The web's limits (`WEB_DB_*`) are PostgreSQL's own: a server that stopped working without
closing its sockets (its process frozen or paging, its disk stalled, a host that is not
scheduled) enforces none of them, and its kernel still acknowledges what is sent and answers
the keepalive probes, so TCP never gives up either. A request then waited for its answer with
no end, holding a gunicorn thread, and once every thread of a worker waited, its health probe
queued behind them. In a web server's process (`answer_within`, from `serve_web_requests`)
each wait for an answer ends after `WEB_DB_ANSWER_TIMEOUT_S`: the connection is closed, and the
request gets a 503 (`NoAnswer` is an `OperationalError`, as every database outage is).

The pool's connections are of this class everywhere; elsewhere (Celery's workers, commands,
migrations) no limit is set, and a wait is psycopg's own.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from psycopg.abc import RV, PQGen
from psycopg.connection import _WAIT_INTERVAL
from psycopg.errors import _WaitTimeout

# None: psycopg's own wait, with no end. Set once per process, before it serves.
_answer_timeout_s: float | None = None


def answer_within(seconds: float | None) -> None:
    """Make this process's pooled connections give up on an answer after `seconds` (None or
    0: never)."""
    global _answer_timeout_s
    _answer_timeout_s = seconds or None


def answer_timeout_s() -> float | None:
    return _answer_timeout_s


class NoAnswer(psycopg.OperationalError):
    """PostgreSQL did not answer within the web's limit; the connection was closed."""


class Connection(psycopg.Connection[Any]):
    def wait(
        self, gen: PQGen[RV], interval: float = _WAIT_INTERVAL, timeout: float | None = None
    ) -> RV:
        limit = _answer_timeout_s
        if limit is None or timeout is not None:
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, limit)
        except _WaitTimeout:
            # Closed as psycopg closes a connection whose statement its cancel did not end: a
            # cancel would wait on the same server. The server ends the session (and rolls back
            # its transaction) once it reads again; the pool replaces the connection.
            self.pgconn.finish()
            _stopped_answering(self)
            raise NoAnswer(
                f"PostgreSQL did not answer within {limit:g} s (WEB_DB_ANSWER_TIMEOUT_S); "
                "the connection was closed"
            ) from None


def _stopped_answering(connection: Connection) -> None:
    """The server this pooled connection reached stopped answering: its other connections in
    the pool go too, and checkouts wait the pool's outage wait until one gets a connection.

    Each idle connection would have cost the request that took it the whole answer limit, and
    each request finding none the pool's whole timeout: with PostgreSQL frozen, twelve PUTs on
    eight threads took up to 25 s for their 503s, a browsable-API page 30 s. The backend's
    checkout sets the pool's own timeout again once a checkout gets a connection.
    """
    pool = getattr(connection, "_pool", None)  # psycopg_pool's, as Django's backend reads it
    if pool is None:
        return
    pool.drain()  # closes the idle ones, those in use when handed back; opens new ones
    pool.timeout = min(pool.timeout, settings.DB_POOL_OUTAGE_TIMEOUT_S)
