"""The products table's trigger functions after a migration changes a column's type."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from products.triggers import refresh_trigger_functions
from tests.database import other_connection
from tests.products.conftest import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)

VERSION_TYPE = "ALTER TABLE products_product ALTER COLUMN version TYPE {}"
UPDATE = "UPDATE products_product SET stock_level = stock_level + 1 WHERE id = %s RETURNING version"


@pytest.fixture
def web() -> Iterator[psycopg.Connection]:
    """A pooled connection of the web's, which has run the version trigger."""
    with other_connection() as web:
        yield web


@pytest.fixture
def migration() -> Iterator[psycopg.Connection]:
    """Another connection, as `migrate`'s; the column's type is put back after the test."""
    with other_connection() as migration:
        try:
            yield migration
        finally:
            migration.execute(VERSION_TYPE.format("integer"))


def _update(web: psycopg.Connection, product_id: int) -> int:
    row = web.execute(UPDATE, [product_id]).fetchone()
    assert row is not None
    return int(row[0])


def test_the_version_trigger_works_on_old_connections_after_migrate(
    web: psycopg.Connection, migration: psycopg.Connection
) -> None:
    """A migration that changes `version`'s type broke the trigger on each connection that had
    run it, at every update, until the connection closed. `migrate` now ends by giving the
    function a new version, which each connection compiles again."""
    product = ProductFactory()
    assert _update(web, product.pk) == 2
    migration.execute(VERSION_TYPE.format("bigint"))
    # The failure this is about: the trigger's own plan, made for an integer column.
    with pytest.raises(psycopg.errors.DatatypeMismatch):
        _update(web, product.pk)
    with pytest.raises(psycopg.errors.DatatypeMismatch):
        _update(web, product.pk)

    call_command("migrate", verbosity=0)

    assert _update(web, product.pk) == 3


def test_every_plpgsql_trigger_function_of_the_app_is_refreshed_and_nothing_else() -> None:
    """The four functions behind products_product's triggers; not the search's functions, which
    its index calls with plain values."""
    refreshed = refresh_trigger_functions(apps.get_app_config("products"), connection.alias)
    assert refreshed == [
        "products_product_bump_version",
        "products_product_count_buckets",
        "products_product_keep_id",
        "products_product_notify",
    ]


def test_the_refresh_leaves_each_function_as_it_was() -> None:
    def definitions() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_get_functiondef(oid) FROM pg_proc WHERE proname LIKE 'products\\_%'"
                " ORDER BY proname"
            )
            return [row[0] for row in cursor.fetchall()]

    before = definitions()
    refresh_trigger_functions(apps.get_app_config("products"), connection.alias)
    assert definitions() == before


@pytest.fixture
def audit_trigger() -> Iterator[str]:
    """A DBA's audit trigger on products_product (the PostgreSQL wiki's kind): a PL/pgSQL
    function of another role, in a schema of its own. Yields a role like the one `migrate`
    runs as: owner of the app's objects (a member of their owner), of nothing of the audit's."""
    database = connection.settings_dict["NAME"]
    migrator, auditor = f"{database}_migrator"[-63:], f"{database}_auditor"[-63:]
    with other_connection() as dba:
        dba.execute(f'CREATE ROLE "{migrator}" NOLOGIN; CREATE ROLE "{auditor}" NOLOGIN')
        dba.execute(f'GRANT "{connection.settings_dict["USER"]}" TO "{migrator}"')
        dba.execute(f'CREATE SCHEMA audit AUTHORIZATION "{auditor}"')
        dba.execute(
            "CREATE FUNCTION audit.if_modified() RETURNS trigger LANGUAGE plpgsql"
            " SECURITY DEFINER SET search_path = pg_catalog AS $$ BEGIN RETURN NULL; END $$"
        )
        dba.execute(f'ALTER FUNCTION audit.if_modified() OWNER TO "{auditor}"')
        dba.execute(
            "CREATE TRIGGER audit_products AFTER INSERT OR UPDATE OR DELETE ON products_product"
            " FOR EACH STATEMENT EXECUTE FUNCTION audit.if_modified()"
        )
        try:
            yield migrator
        finally:
            dba.execute("DROP TRIGGER audit_products ON products_product")
            dba.execute("DROP SCHEMA audit CASCADE")
            dba.execute(f'DROP ROLE "{migrator}"; DROP ROLE "{auditor}"')


def test_migrate_leaves_alone_a_trigger_function_it_may_not_replace(audit_trigger: str) -> None:
    """A trigger someone else put on the table (an audit's), whose function `migrate`'s role
    does not own: every `migrate` failed at its end, with nothing to apply too ("permission
    denied for schema audit"). The app's own functions are still refreshed."""
    with connection.cursor() as cursor:
        cursor.execute(f'SET ROLE "{audit_trigger}"')
    try:
        refreshed = refresh_trigger_functions(apps.get_app_config("products"), connection.alias)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert refreshed == [
        "products_product_bump_version",
        "products_product_count_buckets",
        "products_product_keep_id",
        "products_product_notify",
    ]


def test_the_version_trigger_works_after_a_migrate_that_failed_past_a_type_change(
    web: psycopg.Connection,
) -> None:
    """A migration changed `version`'s type and committed, then a later one failed (a lock
    timeout at MIGRATION_LOCK_TIMEOUT_S, say): `migrate` never reached its end, and the
    trigger failed every update until a later `migrate` succeeded."""
    product = ProductFactory()
    assert _update(web, product.pk) == 2
    with override_settings(MIGRATION_MODULES={"products": "tests.products.migrations_type_change"}):
        try:
            with pytest.raises(Exception, match="a later migration fails"):
                call_command("migrate", "products", verbosity=0)
            assert _update(web, product.pk) == 3
        finally:
            call_command("migrate", "products", "0009", verbosity=0)


def test_a_refresh_meeting_another_replacement_of_the_function_succeeds() -> None:
    """The README asks a migration changing a column's type to re-create the function itself.
    Another `migrate` whose refresh met that migration's uncommitted replacement failed at its
    end with "tuple concurrently updated": the advisory lock keeps only two refreshes apart.
    The function has a new version all the same."""
    failures: list[Exception] = []

    def refresh() -> None:
        try:
            refresh_trigger_functions(apps.get_app_config("products"), connection.alias)
        except Exception as exc:
            failures.append(exc)
        finally:
            connection.close()

    with other_connection() as migration, other_connection() as observer:
        row = migration.execute(
            "SELECT pg_get_functiondef('products_product_bump_version'::regproc)"
        ).fetchone()
        assert row is not None
        with migration.transaction():
            migration.execute(row[0])
            other = threading.Thread(target=refresh, daemon=True)
            other.start()
            deadline = time.monotonic() + 20
            while observer.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted"
            ).fetchone() != (1,):
                assert time.monotonic() < deadline, "the refresh never waited for the row"
                time.sleep(0.05)
        other.join(30)
    assert not other.is_alive()
    assert failures == []
