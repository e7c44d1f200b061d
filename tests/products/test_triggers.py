"""The products table's trigger functions after a migration changes a column's type."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection

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
