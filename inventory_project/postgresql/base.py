"""Django's PostgreSQL backend, with pooled connections checked without a round trip.

With Django's pool, `CONN_HEALTH_CHECKS = True` hands psycopg_pool its `check_connection`,
which sends an empty query on every checkout: one more round trip to PostgreSQL on every
request that uses the database, for an answer the socket already has. A connection the server
closed (a restart or failover, `pg_terminate_backend`, `idle_session_timeout`) has something
to read on its socket: PostgreSQL's error message, then the end of the stream. A healthy idle
connection has nothing to read. So this backend looks at the socket on every checkout, runs the
query only when there is something to read, and swaps a connection the server closed for
another. The settings turn `CONN_HEALTH_CHECKS` off, so the pool does not check as well.

A peer that vanished without a word (a host gone, a network cut) has nothing to read either,
until TCP gives up on it: the settings' `DB_CONNECTION_DEFAULTS` (keepalive probes, a user
timeout) make that about 30 s, not hours, and the checkout after it replaces the connection.
The server is asked to do the same for its side (`DB_SERVER_SESSION`), so a connection
the app gave up on does not hold its locks there for hours.

In a web server's process (`serve_web_requests`) each connection also carries the limits on
what a request's SQL may wait for. It also reads `timestamptz` values with psycopg's C loader
(see `UtcTimestamptzLoader`), and migrates with a bounded wait for locks (schema.py).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import select
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.postgresql import base
from psycopg.adapt import AdaptersMap, Loader
from psycopg_pool import ConnectionPool, PoolTimeout

from inventory_project.postgresql import connection as answers
from inventory_project.postgresql.schema import DatabaseSchemaEditor

_TIMESTAMPTZ = psycopg.postgres.types["timestamptz"].oid
# psycopg's timestamptz text loader: its C class with psycopg[binary], else the Python one.
_PSYCOPG_LOADER = psycopg.adapters.get_loader(_TIMESTAMPTZ, psycopg.pq.Format.TEXT)


class UtcTimestamptzLoader(Loader):
    """Loads timestamptz values with psycopg's own loader on a connection in UTC, which is how
    Django keeps connections when `USE_TZ = True`.

    Django's loader is a subclass of psycopg's pure-Python one that re-labels every value with
    Django's time zone: about 10 us a value, against 1 us here; a page of 20 products holds 40
    of them. On a UTC connection psycopg's loader returns values in `datetime.UTC`, the very
    values Django's gives. The C class cannot be subclassed, so each instance takes the `load`
    of one; `timezone` is what Django's `create_cursor` compares with its own time zone.
    """

    timezone = datetime.UTC

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self.load = _PSYCOPG_LOADER(oid, context).load  # type: ignore[misc,method-assign]

    def load(self, data: Any) -> datetime.datetime:  # replaced in __init__
        raise NotImplementedError


@functools.cache
def _adapters(template: AdaptersMap) -> AdaptersMap:
    """Django's adapters, with UtcTimestamptzLoader."""
    adapters = AdaptersMap(template)
    adapters.register_loader(_TIMESTAMPTZ, UtcTimestamptzLoader)
    return adapters


# The server settings this process's new connections set beyond the keepalives: a web
# server's limits once serve_web_requests() has run, none elsewhere.
_session_settings: dict[str, str] = {}


def serve_web_requests() -> None:
    """Give this process's new connections the web's limits (the settings' WEB_DB_SESSION): a
    request's statement waits at most so long for a lock, runs at most so long, and its
    transaction is ended if left idle that long; past one, the request gets a 503 saying which.
    Its connections also stop waiting for an answer after WEB_DB_ANSWER_TIMEOUT_S, which ends
    a request on a server that enforces nothing any more (connection.py).

    gunicorn.conf.py calls it in each worker before it serves. Celery's workers, the commands
    and migrations never call it: they wait for advisory locks on purpose, and a migration may
    build an index for minutes. Connections opened before the call keep what they have.
    """
    _session_settings.update(settings.WEB_DB_SESSION)
    answers.answer_within(settings.WEB_DB_ANSWER_TIMEOUT_S)


def closed_by_server(connection: psycopg.Connection[Any]) -> bool:
    """Whether a pooled connection is unusable, asking PostgreSQL only if it said something."""
    if connection.closed:
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        # Reads what arrived: a notice or parameter change is consumed, an error raises.
        ConnectionPool.check_connection(connection)
    except psycopg.Error:
        return True
    return False


def _mid_statement(connection: psycopg.Connection[Any]) -> bool:
    return connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE


# The routine of PostgreSQL's plan cache that refuses a prepared statement whose result columns
# changed type since it was prepared (ALTER COLUMN ... TYPE, by a migration on another
# connection): "cached plan must not change result type". Its message is translated on a server
# whose lc_messages is not English, and a function may raise the same text and SQLSTATE after
# doing something a transaction does not undo (a sequence's nextval); the routine's name is
# neither.
_STALE_PLAN_ROUTINE = "RevalidateCachedQuery"


def raised_by(exc: BaseException | None, routine: str) -> bool:
    """Whether `exc` is PostgreSQL's error raised in its source routine `routine`: unlike the
    message, the routine's name is not translated, and no function can raise in it."""
    return isinstance(exc, psycopg.Error) and exc.diag.source_function == routine


def stale_plan(exc: BaseException) -> bool:
    """Whether PostgreSQL refused a prepared statement's plan as stale: nothing of the
    statement ran."""
    return isinstance(exc, psycopg.errors.FeatureNotSupported) and raised_by(
        exc, _STALE_PLAN_ROUTINE
    )


class ServerBindingCursor(base.ServerBindingCursor, psycopg.Cursor[Any]):
    """Django's cursor for server-side binding (which preparing statements needs), which runs a
    statement again, once, after PostgreSQL refused its prepared plan as stale.

    A migration that changes a column's type (a longer `name`, more digits in `price`) on
    another connection made every statement prepared before it fail on each connection that
    kept it, at every request, until that connection left the pool: psycopg forgets its
    prepared statements only after a DEALLOCATE, DISCARD, ROLLBACK or DDL on that same
    connection, and a request in autocommit sends none of them. Outside a transaction nothing
    ran, so `DEALLOCATE ALL` (psycopg then forgets them too) and the statement again are safe.
    Inside one, the transaction is aborted: the error goes up, and the ROLLBACK that ends the
    transaction clears them. A request gets a 503 for it, with Retry-After (products.api.errors).
    """

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        try:
            return super().execute(query, params, **kwargs)
        except psycopg.errors.FeatureNotSupported as exc:
            raw = self.connection
            idle = raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
            if not stale_plan(exc) or not idle:
                raise
            raw.execute("DEALLOCATE ALL")
            return super().execute(query, params, **kwargs)


class DatabaseWrapper(base.DatabaseWrapper):
    SchemaEditorClass = DatabaseSchemaEditor

    def ensure_connection(self) -> None:
        """Replace a connection left in the middle of a statement before it is used again.

        An exception raised by a signal handler while psycopg waits for PostgreSQL (Celery's
        soft time limit: SIGUSR1 in a prefork child) leaves the statement running and the
        connection ACTIVE; psycopg cancels the statement only for KeyboardInterrupt and
        SystemExit. Every later statement failed with "another command is already in
        progress", so the clean-up that catches the limit (failing the planned days, retrying
        the detection) failed too. Outside a transaction nothing is lost: the connection is
        closed (`_close` cancels the statement) and a fresh one taken. Inside one, the atomic
        block's ROLLBACK cannot be sent either, and Django closes the connection there.
        """
        raw = self.connection
        if raw is not None and not self.in_atomic_block and _mid_statement(raw):
            self.close()
        super().ensure_connection()

    def close_if_health_check_failed(self) -> None:
        """Before a query (Django's `_cursor`), also replace a connection closed under the
        request, outside a transaction.

        One closed because its server stopped answering (connection.py) failed every later
        query of the request with "the connection is closed", the error page's among them,
        which then said less than the first failure.
        """
        raw = self.connection
        # Not in a transaction: its earlier statements went with the connection, and the next
        # one must fail rather than run, committed, on another (set_autocommit(False) too).
        if raw is not None and raw.closed and not self.in_atomic_block and self.autocommit:
            self.close()
            return
        super().close_if_health_check_failed()

    def _close(self) -> None:
        # A statement still running is cancelled on the server before its connection goes
        # (the pool closes a connection handed back ACTIVE): left alone, it ran to its end,
        # holding its locks, the session's advisory locks and a transaction's row locks.
        raw = self.connection
        if raw is not None and _mid_statement(raw):
            with contextlib.suppress(psycopg.Error):
                raw.cancel_safe(timeout=5)
        super()._close()  # type: ignore[misc]  # not in django-stubs

    def _configure_connection(self, connection: psycopg.Connection[Any]) -> bool:
        """Django's set-up of a new connection (its time zone, role), the most statements it
        keeps prepared (DB_PREPARED_MAX), and the server's keepalives and client checks (the
        settings' DB_SERVER_SESSION) with a web server's limits (`serve_web_requests`), in one
        more round trip per connection, not per checkout."""
        commit: bool = super()._configure_connection(connection)  # type: ignore[misc]
        connection.prepared_max = getattr(settings, "DB_PREPARED_MAX", connection.prepared_max)
        session = {**getattr(settings, "DB_SERVER_SESSION", {}), **_session_settings}
        if session:
            calls = ", ".join(["set_config(%s, %s, false)"] * len(session))
            params = [part for item in session.items() for part in item]
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {calls}", params)
            commit = True
        return commit

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        if params.get("cursor_factory") is base.ServerBindingCursor:
            params["cursor_factory"] = ServerBindingCursor
        # Django sets each connection's TimeZone to its own time zone's name (UTC here).
        if self.timezone is datetime.UTC and "context" in params:
            params["context"] = _adapters(params["context"])
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = self._checkout(conn_params)
        pool = self.pool
        if pool is None:
            return connection
        # After a restart every pooled connection is dead: each is handed back (the pool opens
        # a replacement) and the next one is looked at.
        for _ in range(pool.max_size):
            try:
                closed = closed_by_server(connection)
            except BaseException:
                pool.putconn(connection)  # as psycopg_pool's own check does: never leak it
                raise
            if not closed:
                break
            pool.putconn(connection)
            connection = self._checkout(conn_params)
        return connection

    def _checkout(self, conn_params: dict[str, Any]) -> Any:
        """Django's checkout, shedding load while the pool finds no connection.

        While PostgreSQL is down every checkout waited the pool's whole timeout
        (`DB_POOL_TIMEOUT_S`, 10 s) for its 503, holding a server thread: the requests queued
        behind them, health probes among them, waited up to 50 s. Once a checkout has timed
        out, the next ones wait `DB_POOL_OUTAGE_TIMEOUT_S` (each still starts a connection
        attempt if none is under way) until one gets a connection. The first wave of requests
        in an outage still waits the whole timeout; so does, once, a pool that was full for
        that long with the database up, and after it every checkout that finds none free
        within the shorter wait, until one does.
        """
        pool = self.pool
        try:
            connection = super().get_new_connection(conn_params)
        except PoolTimeout:
            if pool is not None:
                pool.timeout = min(settings.DB_POOL_OUTAGE_TIMEOUT_S, self._pool_timeout)
            raise
        if pool is not None and pool.timeout != self._pool_timeout:
            pool.timeout = self._pool_timeout
        return connection

    @functools.cached_property
    def _pool_timeout(self) -> float:
        """The pool's timeout as the settings give it (psycopg_pool's default: 30 s)."""
        options = self.settings_dict["OPTIONS"].get("pool")
        return float(options.get("timeout", 30.0)) if isinstance(options, dict) else 30.0
