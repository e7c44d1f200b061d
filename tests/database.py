"""The test database as another process reaches it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection
from django.test import override_settings

from inventory_project.postgresql import base as backend
from inventory_project.postgresql import connection as answers


def database_url(name: str | None = None) -> str:
    """DATABASE_URL for the test database, or for database `name` on the same server."""
    db = connection.settings_dict
    user = quote(db["USER"], safe="")
    if db["PASSWORD"]:
        user += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{user}@{db['HOST']}:{db['PORT'] or 5432}/{name or db['NAME']}"


# The web's limits, shortened for the tests (milliseconds, as WEB_DB_SESSION holds them): not so
# short that a busy machine's pause between two statements of a request's transaction ends it
# where a test does not mean to.
WEB_LIMITS = {
    "lock_timeout": "300",
    "statement_timeout": "2000",
    "idle_in_transaction_session_timeout": "2000",
}


@contextlib.contextmanager
def web_server_connections(answer_timeout_s: float = 0, **session: str) -> Iterator[None]:
    """This process's connections as a gunicorn worker's (`serve_web_requests`), with the
    server settings `session` (WEB_DB_SESSION's names, in milliseconds) for the web's limits,
    and `answer_timeout_s` for WEB_DB_ANSWER_TIMEOUT_S (0: none).

    The pool is closed before and after: its connections carry what they were opened with.
    """
    connection.close()
    connection.close_pool()
    saved = dict(backend._session_settings), answers.answer_timeout_s()
    try:
        with override_settings(WEB_DB_SESSION=session, WEB_DB_ANSWER_TIMEOUT_S=answer_timeout_s):
            backend.serve_web_requests()
        yield
    finally:
        backend._session_settings.clear()
        backend._session_settings.update(saved[0])
        answers.answer_within(saved[1])
        connection.close()
        connection.close_pool()


def wait_until_session_ended(pid: int, within_s: float = 20) -> None:
    """Wait until PostgreSQL has ended the session of backend `pid` (as its
    idle-in-transaction limit does); fails after `within_s`."""
    with other_connection() as observer:
        deadline = time.monotonic() + within_s
        while observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the transaction is still open"
            time.sleep(0.05)


def other_connection() -> psycopg.Connection[Any]:
    """A connection of the test's own, in autocommit, as another user or process has: it sees
    only what is committed, and what it writes is committed at once. Use it in a `with`."""
    return psycopg.connect(**connection.get_connection_params(), autocommit=True)


@contextlib.contextmanager
def lock_holder() -> Iterator[psycopg.Connection[Any]]:
    """A connection of the test's own, outside the web's limits, as a shell or a migration
    would hold locks: its transaction keeps what it takes until the block ends, or until it has
    sat 20 s (the server then ends it: a request waiting with no limit gets its lock, and the
    test fails rather than hangs)."""
    with psycopg.connect(**connection.get_connection_params()) as holder:
        holder.execute("SET idle_in_transaction_session_timeout = '20s'")
        yield holder


@contextlib.contextmanager
def row_lock_held(pk: int) -> Iterator[None]:
    """Product `pk`'s row locked by `lock_holder`'s connection for the block."""
    with lock_holder() as holder:
        holder.execute("SELECT 1 FROM products_product WHERE id = %s FOR UPDATE", [pk])
        yield


def prepare_threshold() -> int:
    """The runs after which psycopg prepares a statement on this test's connection; skips the
    test where nothing is prepared (DB_PREPARE_THRESHOLD=0)."""
    connection.ensure_connection()
    threshold = connection.connection.prepare_threshold
    if threshold is None:
        pytest.skip("nothing is prepared with DB_PREPARE_THRESHOLD=0")
    return int(threshold)
