"""The backend checks pooled connections on checkout without a round trip (postgresql/base.py)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import (
    DataError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from psycopg_pool import ConnectionPool, PoolTimeout
from rest_framework.authtoken.models import Token

from inventory_project.postgresql.base import DatabaseWrapper, closed_by_server
from inventory_project.postgresql.connection import NoAnswer
from products import selectors
from products.api.errors import LOCK_WAIT_DETAIL, NO_ANSWER_DETAIL, SCHEMA_CHANGED_DETAIL
from products.models import NAME_MAX_LENGTH, Product
from tests.concurrency import run_at_once
from tests.database import (
    WEB_LIMITS,
    database_url,
    other_connection,
    prepare_threshold,
    row_lock_held,
    wait_until_session_ended,
    web_server_connections,
)
from tests.inventory_project.conftest import json_request, serving
from tests.outage import Outage
from tests.processes import run_python
from tests.products.conftest import ProductFactory, make_user, token_client
from tests.time_limits import STATEMENT_S, slow_statement_cut_short

pytestmark = pytest.mark.django_db(transaction=True)


def _pooled_backend_pids() -> list[int]:
    """The server pids of every connection in the pool, all alive and handed back."""
    connection.close()  # Django hands its connection back to the pool
    pool = connection.pool
    assert pool is not None
    taken = [pool.getconn() for _ in range(pool.get_stats()["pool_available"])]
    pids = []
    for conn in taken:
        # An earlier test may have ended a pooled connection's backend: the pool drops it.
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT 1")
            pids.append(conn.info.backend_pid)
        pool.putconn(conn)
    return pids


def _terminate(pids: list[int]) -> None:
    """End these backends and wait until PostgreSQL has let them go."""
    params = connection.settings_dict
    with psycopg.connect(
        host=params["HOST"],
        port=params["PORT"] or 5432,
        user=params["USER"],
        password=params["PASSWORD"],
        dbname=params["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]
        ).fetchone() != (0,):
            admin.execute("SELECT pg_sleep(0.01)")


def test_a_checkout_of_a_healthy_connection_sends_nothing_extra(monkeypatch: Any) -> None:
    sent: list[str] = []
    execute = psycopg.Connection.execute

    def spy(self: psycopg.Connection[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return execute(self, query, *args, **kwargs)

    _pooled_backend_pids()
    monkeypatch.setattr(psycopg.Connection, "execute", spy)
    for _ in range(3):
        assert Product.objects.count() == 0
        connection.close()
    assert sent == []  # psycopg_pool's check would send "" on each checkout


def test_connections_the_server_closed_are_replaced_on_checkout() -> None:
    pids = _pooled_backend_pids()
    assert pids
    _terminate(pids)
    # Without the check, the first query would fail on a dead pooled connection.
    for _ in range(len(pids) + 1):
        assert Product.objects.count() == 0
        assert connection.connection.info.backend_pid not in pids
        connection.close()
    pool = connection.pool
    assert pool is not None
    assert pool.get_stats()["pool_size"] <= pool.max_size  # each dead one handed back once


def test_a_connection_closed_under_a_request_is_replaced_before_its_next_query() -> None:
    """Every later query of the request failed with "the connection is closed" (the error
    page's too, which then said less than the first failure)."""
    Product.objects.count()
    connection.connection.close()  # as a server that stopped answering leaves it (connection.py)
    assert Product.objects.count() == 0


def test_a_connection_closed_in_a_manual_transaction_is_not_replaced() -> None:
    """Its earlier statements went with it: the next one must fail, not run and commit alone
    on another connection."""
    product = ProductFactory(stock_level=1)
    update = "UPDATE products_product SET stock_level = %s WHERE id = %s"
    transaction.set_autocommit(False)
    try:
        with connection.cursor() as cursor:
            cursor.execute(update, [2, product.pk])
        connection.connection.close()
        with pytest.raises((InterfaceError, OperationalError)), connection.cursor() as cursor:
            cursor.execute(update, [3, product.pk])
    finally:
        connection.close()
        transaction.set_autocommit(True)
    product.refresh_from_db()
    assert product.stock_level == 1


def test_closed_by_server_reads_a_notice_without_discarding_the_connection() -> None:
    pool = connection.pool
    assert pool is not None
    conn = pool.getconn()
    try:
        conn.execute("LISTEN product_test_channel")
        # The DSN psycopg reports leaves the password out.
        with psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True) as other:
            other.execute("NOTIFY product_test_channel")
        poll_until_readable(conn)
        assert not closed_by_server(conn)
        conn.execute("UNLISTEN *")
        # The query read the notification into psycopg's backlog: take it, or the next user of
        # this pooled connection gets it first from notifies().
        assert [n.channel for n in conn.notifies(timeout=1, stop_after=1)] == [
            "product_test_channel"
        ]
    finally:
        pool.putconn(conn)


def poll_until_readable(conn: psycopg.Connection[Any]) -> None:
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    assert poller.poll(5000), "the notification never arrived"


# --- timestamptz values through psycopg's C loader ------------------------------------------


def test_timestamptz_values_load_through_the_fast_loader_as_django_loads_them() -> None:
    """The same values as Django's own loader gives: the instant, labelled datetime.timezone.utc
    (Django's time zone for the database), whatever offset PostgreSQL was given."""
    from django.db.backends.postgresql.psycopg_any import register_tzloader

    from inventory_project.postgresql.base import UtcTimestamptzLoader

    sql = (
        "SELECT '2024-02-29 23:59:59.999999+05:30'::timestamptz,"
        " '0001-01-01 00:00:00+00'::timestamptz, '9999-12-31 23:59:59.5+02'::timestamptz"
    )
    with connection.cursor() as cursor:
        loader = cursor.connection.adapters.get_loader(1184, psycopg.pq.Format.TEXT)
        assert loader is UtcTimestamptzLoader
        cursor.execute(sql)
        ours = cursor.fetchone()
    with connection.cursor() as cursor:
        register_tzloader(connection.timezone, cursor)  # Django's loader, on this cursor only
        cursor.execute(sql)
        django_s = cursor.fetchone()
    assert ours == django_s
    assert [value.tzinfo for value in ours] == [UTC] * 3
    assert ours[0] == datetime(2024, 2, 29, 18, 29, 59, 999999, tzinfo=UTC)


def test_a_timestamptz_python_cannot_hold_fails_as_with_djangos_loader() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'infinity'::timestamptz")
        with pytest.raises(DataError, match="infinity"):
            cursor.fetchone()


def test_product_timestamps_come_back_aware_in_utc() -> None:
    product = Product.objects.create(name="Clock", price="1.00", stock_level=1)
    loaded = Product.objects.get(pk=product.pk)
    assert loaded.created_at == product.created_at
    assert loaded.created_at.tzinfo is UTC


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "atomic"])
def test_a_statement_cut_short_by_a_signal_is_cancelled_and_its_connection_replaced(
    in_transaction: bool,
) -> None:
    """Celery's soft limit raised while psycopg waited left the statement running and the
    connection ACTIVE: every later statement failed, "another command is already in progress",
    the clean-up that catches the limit included. In a transaction, Django dropped the
    connection, but the statement ran on to its end with the transaction's locks."""

    def lock_then_cut_short() -> None:
        with transaction.atomic() if in_transaction else contextlib.nullcontext():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(42)")
            slow_statement_cut_short()

    with connection.cursor() as cursor:
        # The server's own check for a client gone (DB_SERVER_SESSION's
        # client_connection_check_interval) ends the statement too, up to a second after its
        # connection closes: off for this session, so that only the cancel can end it at once.
        cursor.execute("SET client_connection_check_interval = 0")
    with pytest.raises(SoftTimeLimitExceeded):
        lock_then_cut_short()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
        # ... and the server stopped the statement rather than finishing it (in 30 s). The
        # cancel returns once the server has it; the session's process takes it a moment later
        # (seen still active on a loaded machine), then ends: its connection was dropped.
        deadline = time.monotonic() + 10
        while True:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query = %s",
                [f"SELECT pg_sleep({STATEMENT_S})"],
            )
            if cursor.fetchone() == (0,):
                break
            assert time.monotonic() < deadline, "the statement still runs"
            time.sleep(0.05)
        cursor.execute("SELECT pg_try_advisory_lock(42), pg_advisory_unlock(42)")
        assert cursor.fetchone() == (True, True)


# --- Outages ---------------------------------------------------------------------------------


def _postgresql_outage() -> Outage:
    params = connection.settings_dict
    return Outage((params["HOST"] or "127.0.0.1", int(params["PORT"] or 5432)))


@contextlib.contextmanager
def _database_behind(outage: Outage, **options: float) -> Any:
    """The project's database settings through `outage`'s port, the pool's options laid over
    them: the backend, with the pool Django builds, open."""
    params = connection.settings_dict
    pool_options = {**params["OPTIONS"]["pool"], **options}
    wrapper = DatabaseWrapper(
        {
            **params,
            "HOST": "127.0.0.1",
            "PORT": str(outage.port),
            "OPTIONS": {**params["OPTIONS"], "pool": pool_options},
        },
        alias=f"outage-{uuid.uuid4()}",
    )
    pool = wrapper.pool
    assert pool is not None
    pool.open(wait=True)
    # contrib.postgres looks a new connection up by its alias (its type handlers).
    connections[wrapper.alias] = wrapper
    try:
        yield wrapper
    finally:
        wrapper.close()
        wrapper.close_pool()
        del connections[wrapper.alias]


@contextlib.contextmanager
def _pool_behind(outage: Outage, **options: float) -> Any:
    """The pool Django builds from the project's settings, through `outage`'s port."""
    with _database_behind(outage, **options) as database:
        yield database.pool


def _connects(pool: ConnectionPool) -> bool:
    """Whether a request would get a connection (within the pool's timeout) that answers."""
    try:
        with pool.connection() as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:  # PoolTimeout too: a request's 503
        return False


def test_after_a_long_outage_the_pool_connects_within_its_reconnect_timeout() -> None:
    """psycopg_pool tries a lost connection again at doubling intervals (1, 3, 7, 15, 31 s
    after the first try, 10 % jitter on each) for five minutes, and lets one such attempt at a
    time grow the pool: at the end of an outage of 20 s its next try came 8 to 14 s later, each
    request meanwhile waiting out the pool's timeout for a 503. Attempts give up after
    `DB_POOL_RECONNECT_TIMEOUT_S` now (the longest gap between tries is then 2 s), and the next
    request starts one at once."""
    # Requests in the outage come every half second, as each waits the pool's timeout.
    with _postgresql_outage() as outage, _pool_behind(outage, timeout=0.5) as pool:
        assert _connects(pool)
        outage.down()
        ends = time.monotonic() + 20
        while time.monotonic() < ends:
            assert not _connects(pool)
        outage.up()
        back = time.monotonic()
        while not _connects(pool):
            assert time.monotonic() - back < settings.DB_POOL_RECONNECT_TIMEOUT_S + 1, (
                "no connection yet"
            )


def test_requests_already_waiting_through_an_outage_get_a_connection_soon_after_it() -> None:
    """psycopg_pool starts an attempt only for a request that finds no connection. In an
    outage every gthread thread is already waiting: after an attempt gave up (every
    DB_POOL_RECONNECT_TIMEOUT_S), nothing tried again until one of them timed out."""
    with _postgresql_outage() as outage, _pool_behind(outage, timeout=40) as pool:
        assert _connects(pool)
        outage.down()
        pool.check()  # the connections the outage cut go: the request below has to wait
        got: list[float] = []

        def wait() -> None:  # one request, waiting from the start of the outage
            with contextlib.suppress(psycopg.OperationalError), pool.connection() as conn:
                conn.execute("SELECT 1")
                got.append(time.monotonic())

        waiting = threading.Thread(target=wait, daemon=True)
        waiting.start()
        time.sleep(12)  # two attempts give up meanwhile
        outage.up()
        back = time.monotonic()
        waiting.join(settings.DB_POOL_RECONNECT_TIMEOUT_S + 1)
        assert got, "no connection yet"
        assert got[0] - back < settings.DB_POOL_RECONNECT_TIMEOUT_S + 1


def test_while_the_database_is_down_checkouts_after_the_first_give_up_at_once() -> None:
    """Every checkout waited the pool's whole timeout for its 503, holding a server thread:
    the requests queued behind them, health probes among them, waited up to 50 s."""
    with _postgresql_outage() as outage, _database_behind(outage, timeout=3) as database:
        database.connect()
        database.close()
        outage.down()
        waits = []
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError):  # PoolTimeout
                database.connect()  # a request's checkout, as ensure_connection makes it
            waits.append(time.monotonic() - started)
        assert waits[0] >= 3  # the first waits the pool's timeout
        assert max(waits[1:]) < settings.DB_POOL_OUTAGE_TIMEOUT_S + 1
        outage.up()
        back = time.monotonic()
        while True:
            with contextlib.suppress(psycopg.OperationalError):
                database.connect()
                break
            assert time.monotonic() - back < settings.DB_POOL_RECONNECT_TIMEOUT_S + 1
        assert database.pool.timeout == 3  # its own again, once a checkout got a connection


def _tcp_settings(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )


def test_connections_notice_a_server_gone_without_a_word_within_seconds() -> None:
    """A host gone or a network cut was noticed only when TCP gave up: a query waited about 15
    minutes, an idle connection (the cache listener's LISTEN among them, missing every change
    meanwhile) two hours. Pooled connections and the listener's, opened from the same
    parameters, probe after 10 s of silence and give up after 30 s unacknowledged."""
    expected = (1, 10, 30_000)
    with connection.cursor():
        assert _tcp_settings(connection.connection) == expected
    params = connection.get_connection_params()
    with psycopg.connect(**params) as listener:  # as listen_product_changes connects
        assert _tcp_settings(listener) == expected


def test_the_server_drops_connections_the_app_lost_within_seconds_too() -> None:
    """A connection the app gave up on in a cut stayed open on the server for two hours (its
    keepalive default), holding any transaction's locks. PostgreSQL reports its socket's
    values."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW tcp_keepalives_idle")
        idle = cursor.fetchone()
        cursor.execute("SHOW tcp_keepalives_interval")
        interval = cursor.fetchone()
        cursor.execute("SHOW tcp_keepalives_count")
        count = cursor.fetchone()
    assert (idle, interval, count) == (("10",), ("5",), ("3",))


def test_a_connection_attempt_to_a_server_that_never_answers_gives_up() -> None:
    """psycopg waits 130 s by default, holding one of the pool's three workers each time."""
    params = connection.get_connection_params()
    failed = threading.Event()

    def connect() -> None:
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            psycopg.connect(**{**params, "host": "127.0.0.1", "port": silent.getsockname()[1]})
        failed.set()

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        attempt = threading.Thread(target=connect, daemon=True)
        attempt.start()
        attempt.join(30)
    assert failed.is_set()


def test_a_migration_waiting_for_a_lock_gives_up_rather_than_queue_the_tables_queries(
    settings: Any,
) -> None:
    """Behind a transaction that read the table, ALTER TABLE waited for it to end, and every
    query on the table after it waited behind it."""
    settings.MIGRATION_LOCK_TIMEOUT_S = 0.5
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE lock_probe (id int)")
    params = connection.get_connection_params()
    failures: list[Exception] = []

    def migrate() -> None:
        try:
            with connection.schema_editor() as editor:  # atomic, as a migration's
                editor.execute("ALTER TABLE lock_probe ADD COLUMN added int")
        except OperationalError as exc:
            failures.append(exc)
        finally:
            connection.close()

    try:
        with psycopg.connect(**params) as reader:
            reader.execute("SELECT * FROM lock_probe")  # its transaction stays open
            migration = threading.Thread(target=migrate, daemon=True)
            migration.start()
            migration.join(30)
            assert not migration.is_alive(), "the migration still waits"
        assert [type(exc.__cause__) for exc in failures] == [psycopg.errors.LockNotAvailable]
        with connection.cursor() as cursor:  # rolled back whole
            cursor.execute("SELECT count(*) FROM lock_probe")  # and the lock is gone
            cursor.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'lock_probe'"
            )
            assert cursor.fetchone() == (1,)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE lock_probe")


# --- What a web request's SQL may wait for ---------------------------------------------------

_LIMITS_QUERY = (
    "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),"
    " current_setting('idle_in_transaction_session_timeout')"
)


def test_the_workers_commands_and_migrations_keep_postgresqls_defaults() -> None:
    """They wait for advisory locks on purpose (one `migrate` at a time, the ads planner's
    lock), and a migration may build an index for minutes."""
    with connection.cursor() as cursor:
        cursor.execute(_LIMITS_QUERY)
        assert cursor.fetchone() == ("0", "0", "0")


def test_a_web_servers_connections_carry_the_settings_limits() -> None:
    with web_server_connections(**settings.WEB_DB_SESSION), connection.cursor() as cursor:
        cursor.execute(_LIMITS_QUERY)
        assert cursor.fetchone() == ("5s", "10s", "1min")


def test_a_web_request_waits_for_a_row_lock_no_longer_than_its_limit() -> None:
    """Ten PUTs behind a row lock that a shell kept held all of gunicorn's eight threads for as
    long as it was kept, and every request behind them waited too."""
    product = ProductFactory(stock_level=1)
    with web_server_connections(**WEB_LIMITS), row_lock_held(product.pk):
        (raised,) = run_at_once(
            lambda: Product.objects.filter(pk=product.pk).update(stock_level=2),
            times=1,
            within_s=20,
        )
    assert isinstance(raised, OperationalError)
    assert isinstance(raised.__cause__, psycopg.errors.LockNotAvailable)
    product.refresh_from_db()
    assert product.stock_level == 1


def test_a_web_requests_statement_is_cancelled_past_its_limit() -> None:
    def slow() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_sleep({STATEMENT_S})")

    with web_server_connections(**WEB_LIMITS):
        (raised,) = run_at_once(slow, times=1, within_s=20)
    assert isinstance(raised, OperationalError)
    assert isinstance(raised.__cause__, psycopg.errors.QueryCanceled)


def test_a_web_requests_transaction_left_idle_past_its_limit_ends_with_its_locks() -> None:
    product = ProductFactory()

    def lock_then_stall() -> None:
        with transaction.atomic():
            Product.objects.select_for_update().get(pk=product.pk)
            wait_until_session_ended(connection.connection.info.backend_pid)
            Product.objects.count()  # the request's next statement: its session is gone

    with web_server_connections(**WEB_LIMITS):
        with pytest.raises(InternalError) as raised:
            lock_then_stall()
        assert isinstance(raised.value.__cause__, psycopg.errors.IdleInTransactionSessionTimeout)
        with row_lock_held(product.pk):  # its lock went with it
            pass
        assert Product.objects.filter(pk=product.pk).exists()  # the next checkout is fine


def test_a_web_request_on_a_frozen_server_stops_waiting_after_its_answer_limit() -> None:
    """A server that stopped working without closing its sockets enforces none of its limits,
    and its kernel answers TCP's probes: a request waited for its answer with no end."""
    with (
        _postgresql_outage() as outage,
        _database_behind(outage) as database,
        web_server_connections(answer_timeout_s=1),
    ):

        def select() -> None:
            with database.cursor() as cursor:
                cursor.execute("SELECT 1")

        select()
        outage.freeze()
        database.inc_thread_sharing()
        try:
            (raised,) = run_at_once(select, times=1, within_s=20)
            assert isinstance(raised, OperationalError)
            assert isinstance(raised.__cause__, NoAnswer)
            assert database.connection.closed  # never handed out again
            database.close()
            # The pool's other connections went with it: the next request is not handed one
            # to wait out the limit again, and waits the pool's short outage wait.
            (raised,) = run_at_once(select, times=1, within_s=20)
            assert isinstance(raised, OperationalError)
            assert isinstance(raised.__cause__, PoolTimeout)
        finally:
            database.dec_thread_sharing()
        outage.thaw()
        back = time.monotonic()
        while True:  # the pool's new connections answer
            with contextlib.suppress(OperationalError):
                select()
                break
            database.close()
            assert time.monotonic() - back < settings.DB_POOL_RECONNECT_TIMEOUT_S + 5


def test_a_statement_whose_client_gave_up_is_ended_by_the_server() -> None:
    """With no statement limit (behind PgBouncer, the role's may be longer), a statement
    whose connection WEB_DB_ANSWER_TIMEOUT_S closed ran on to its end, with its locks."""
    with web_server_connections(answer_timeout_s=1):
        pid = connection.cursor().connection.info.backend_pid
        with pytest.raises(OperationalError) as raised, connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(30)")
        assert isinstance(raised.value.__cause__, NoAnswer)
        wait_until_session_ended(pid, within_s=10)


def _put(port: int, token: str, pk: int, stock_level: int) -> tuple[int, Any, Any]:
    """A PUT to the server on `port`: its status, headers and JSON body."""
    body = {"price": "1.00", "stock_level": stock_level}
    return json_request(port, "PUT", f"/api/products/{pk}", body, token=token)


def test_gunicorns_workers_answer_a_put_behind_a_held_lock_with_a_503_saying_so() -> None:
    product = ProductFactory(stock_level=1)
    token = Token.objects.create(user=make_user("clerk", "change_product")).key
    with serving(WEB_DB_LOCK_TIMEOUT_S="0.5") as port, row_lock_held(product.pk):
        status, headers, body = _put(port, token, product.pk, 2)
    assert (status, headers["Retry-After"]) == (503, "5")
    assert body["error"] == {"code": "service_unavailable", "message": LOCK_WAIT_DETAIL}
    product.refresh_from_db()
    assert product.stock_level == 1


def test_gunicorns_workers_answer_a_put_on_a_frozen_database_with_a_503_saying_so() -> None:
    product = ProductFactory(stock_level=1)
    token = Token.objects.create(user=make_user("clerk", "change_product")).key
    with (
        _postgresql_outage() as outage,
        serving(
            DATABASE_URL=database_url().replace(
                f"@{connection.settings_dict['HOST']}:{connection.settings_dict['PORT'] or 5432}/",
                f"@127.0.0.1:{outage.port}/",
            ),
            WEB_DB_STATEMENT_TIMEOUT_S="0.5",
            WEB_DB_ANSWER_TIMEOUT_S="1",
        ) as port,
    ):
        assert _put(port, token, product.pk, 2)[0] == 200
        outage.freeze()
        status, headers, body = _put(port, token, product.pk, 3)
        outage.thaw()
        assert (status, headers["Retry-After"]) == (503, "5")
        assert body["error"] == {"code": "service_unavailable", "message": NO_ANSWER_DETAIL}
        assert _put(port, token, product.pk, 4)[0] == 200  # a new connection, once it answers


# --- Prepared statements (DB_PREPARE_THRESHOLD) ---------------------------------------------

# The API's reads and writes, six times over (past psycopg's default threshold of 5), in a
# process of their own on a pool of one connection, through the WSGI layers that answer ahead of
# Django (wsgi.py) with the cache off so that every read reaches PostgreSQL; then what that
# connection holds prepared. Prints one JSON line.
_API_ON_ONE_CONNECTION = """
import json, sys

import django

django.setup()

from django.db import connection

from products.api.fast_path import CachedReadsApp
from products.api.fast_reads import ProductPagesApp
from products.api.fast_writes import ProductUpdateApp
from tests.products.api.wsgi_client import CountingDjango, send

token, product_id = sys.argv[1], sys.argv[2]
django_app = CountingDjango()
app = CachedReadsApp(ProductPagesApp(ProductUpdateApp(django_app)))
auth = {"HTTP_AUTHORIZATION": f"Token {token}"}
requests = [
    ("PATCH", f"/api/products/{product_id}", {"price": "2.00", "stock_level": 3}, auth, ""),
    ("GET", "/api/products", None, {}, "page=1&limit=5"),
    ("GET", "/api/products/search", None, {}, "name=widget&min_price=1&max_price=100"),
    ("GET", f"/api/products/{product_id}", None, {}, ""),
    ("POST", "/api/products", {"name": "Prepared", "price": "1.00", "stock_level": 1}, auth, ""),
]
answers = []
for round_ in range(6):
    for method, path, body, environ, query in requests:
        if method == "POST":
            body = {**body, "name": f"Prepared {round_}"}
        before = django_app.calls
        environ = {**environ, "QUERY_STRING": query, "HTTP_HOST": "localhost"}
        status, _, _ = send(app, method, path, body, **environ)
        answers.append([method, path, status, django_app.calls > before])
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM pg_prepared_statements")
    (prepared,) = cursor.fetchone()
threshold = connection.connection.prepare_threshold
print(json.dumps({"answers": answers, "threshold": threshold, "prepared": prepared}))
"""


def _api_on_one_connection(prepare_threshold: str) -> dict[str, Any]:
    product = ProductFactory(name="Widget prepared")
    user = make_user("clerk", "add_product", "change_product")
    token = Token.objects.create(user=user).key
    result = run_python(
        _API_ON_ONE_CONNECTION,
        token,
        str(product.pk),
        DB_PREPARE_THRESHOLD=prepare_threshold,
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE="1",
        PRODUCT_CACHE_ENABLED="false",
    )
    return {**json.loads(result.stdout.splitlines()[-1]), "product_id": product.pk}


def test_with_prepared_statements_off_the_api_reads_and_writes_and_prepares_nothing() -> None:
    """DB_PREPARE_THRESHOLD=0 is for PgBouncer in transaction mode before 1.21, where a
    statement prepared on one server connection is missing on the next: nothing may be
    prepared, by the views or by the paths that answer ahead of them. psycopg reads a threshold
    of 0 as "prepare at once": the setting must reach the connection as None."""
    seen = _api_on_one_connection("0")
    expected_status = {"PATCH": 200, "GET": 200, "POST": 201}
    assert [(m, p, s) for m, p, s, _ in seen["answers"]] == [
        (m, p, expected_status[m]) for m, p, _, _ in seen["answers"]
    ]
    # The update, list and search were answered ahead of Django, by the fast paths.
    ahead = {(m, p) for m, p, _, via_django in seen["answers"] if not via_django}
    assert ahead == {
        ("PATCH", f"/api/products/{seen['product_id']}"),
        ("GET", "/api/products"),
        ("GET", "/api/products/search"),
    }
    assert (seen["threshold"], seen["prepared"]) == (None, 0)


def test_the_prepare_threshold_reaches_the_connection_the_api_uses() -> None:
    """The check above can see prepared statements: with a threshold of 2 the same requests
    leave the connection holding some."""
    seen = _api_on_one_connection("2")
    assert seen["threshold"] == 2
    assert seen["prepared"] > 0


# Ten distinct statements, each run three times in a row on one pooled connection (prepared at
# its second run with a threshold of 1), then what that connection holds prepared. Prints one
# JSON line.
_DISTINCT_STATEMENTS = """
import json

import django

django.setup()

from django.db import connection

with connection.cursor() as cursor:
    for n in range(10):
        for _ in range(3):
            cursor.execute(f"SELECT %s::int + {n}", [n])
    cursor.execute("SELECT count(*) FROM pg_prepared_statements")
    (prepared,) = cursor.fetchone()
print(json.dumps({"kept_at_most": connection.connection.prepared_max, "prepared": prepared}))
"""


@pytest.mark.parametrize("prepared_max", ["3", ""])
def test_a_connection_keeps_at_most_db_prepared_max_statements_prepared(prepared_max) -> None:
    """Each kept statement holds its plan in the connection's server process; past the bound
    the least recently used is deallocated. Unset: psycopg's 100, and all ten are kept."""
    result = run_python(
        _DISTINCT_STATEMENTS,
        DB_PREPARE_THRESHOLD="1",
        DB_PREPARED_MAX=prepared_max,
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE="1",
    )
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["kept_at_most"] == int(prepared_max or 100)
    if prepared_max:
        # psycopg evicts when it next meets a new statement: one more may be kept meanwhile.
        assert 3 <= seen["prepared"] <= 4
    else:
        assert seen["prepared"] >= 10


@contextlib.contextmanager
def name_widened_elsewhere(by: int) -> Iterator[Callable[[int], None]]:
    """`name` widened by `by` characters on another connection, as a migration would; yields a
    function that widens it to another width. Put back after, and the statements this
    connection prepared for a wider column dropped: they would fail the next tests' first reads
    inside their transactions, had the test stopped half-way."""
    widen = "ALTER TABLE products_product ALTER COLUMN name TYPE varchar({})"
    with other_connection() as migration:

        def widen_to(more: int) -> None:
            migration.execute(widen.format(NAME_MAX_LENGTH + more))

        widen_to(by)
        try:
            yield widen_to
        finally:
            widen_to(0)
            if connection.connection is not None:
                connection.connection.execute("DEALLOCATE ALL")


def test_statements_prepared_before_a_column_changes_type_elsewhere_run_again() -> None:
    """A migration widening a column on another connection: PostgreSQL refuses each statement
    prepared before it ("cached plan must not change result type"), and psycopg keeps sending
    it. Every read of every connection that had prepared it failed, at every request, until the
    connection left the pool; now the first failure outside a transaction deallocates them."""
    product = ProductFactory(name="Steel bar", price=Decimal("150"))
    threshold = prepare_threshold()
    steel = selectors.ProductFilters(name="steel", min_price=Decimal(100), max_price=Decimal(200))

    def read() -> tuple[str, list[int]]:
        page = selectors.product_search(filters=steel, page=1, limit=20)
        return selectors.product_get(product_id=product.pk).name, [p.pk for p in page.products]

    for _ in range(threshold + 1):
        read()
    with name_widened_elsewhere(45) as widen_to:
        assert read() == ("Steel bar", [product.pk])
        # Inside a transaction the statement cannot run again: the error goes up, and the
        # rollback clears what psycopg kept.
        for _ in range(threshold + 1):
            read()
        widen_to(50)
        with pytest.raises(NotSupportedError, match="cached plan"), transaction.atomic():
            read()
        assert read() == ("Steel bar", [product.pk])


def test_a_request_meeting_a_stale_plan_inside_a_transaction_gets_a_503_to_try_again() -> None:
    """Inside a transaction the statement cannot run again, and the request's transaction is
    lost. Nothing of it was kept, and the next request works: a 503 with Retry-After, not the
    500 of a bug (a DELETE's locking read is the first statement of its transaction)."""
    threshold = prepare_threshold()
    products = ProductFactory.create_batch(threshold + 3)
    clerk = token_client(make_user("clerk", "delete_product"))
    for product in products[: threshold + 1]:
        assert clerk.delete(f"/api/products/{product.pk}").status_code == 204
    with name_widened_elsewhere(45):
        refused = clerk.delete(f"/api/products/{products[-2].pk}")
        assert (refused.status_code, refused.headers["Retry-After"]) == (503, "5")
        assert refused.json()["error"] == {
            "code": "service_unavailable",
            "message": SCHEMA_CHANGED_DETAIL,
        }
        assert Product.objects.filter(pk=products[-2].pk).exists()
        assert clerk.delete(f"/api/products/{products[-2].pk}").status_code == 204
        assert clerk.delete(f"/api/products/{products[-1].pk}").status_code == 204


def test_a_function_raising_the_stale_plan_error_runs_once() -> None:
    """Only PostgreSQL's plan cache is answered by running the statement again: a function that
    raises the same SQLSTATE and message has run, and may have done what a rollback does not
    undo (here a sequence's nextval)."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE stale_plan_calls")
        cursor.execute(
            "CREATE FUNCTION stale_plan_imitation() RETURNS integer AS $$ BEGIN"
            " PERFORM nextval('stale_plan_calls');"
            " RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',"
            " MESSAGE = 'cached plan must not change result type'; END $$ LANGUAGE plpgsql"
        )
        try:
            with pytest.raises(NotSupportedError, match="cached plan"):
                cursor.execute("SELECT stale_plan_imitation()")
            cursor.execute("SELECT last_value FROM stale_plan_calls")
            assert cursor.fetchone() == (1,)
        finally:
            cursor.execute("DROP FUNCTION stale_plan_imitation()")
            cursor.execute("DROP SEQUENCE stale_plan_calls")
