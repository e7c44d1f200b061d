"""The backend checks pooled connections on checkout without a round trip (postgresql/base.py)."""

from __future__ import annotations

import contextlib
import select
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DataError, connection, transaction

from inventory_project.postgresql.base import closed_by_server
from products.models import Product
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

    with pytest.raises(SoftTimeLimitExceeded):
        lock_then_cut_short()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
        # ... and the server stopped the statement rather than finishing it.
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = %s AND state = 'active'",
            [f"SELECT pg_sleep({STATEMENT_S})"],
        )
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT pg_try_advisory_lock(42), pg_advisory_unlock(42)")
        assert cursor.fetchone() == (True, True)
