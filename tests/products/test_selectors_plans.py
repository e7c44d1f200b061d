"""The query plans that keep reads fast on a large catalogue (60,000 rows, analyzed)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection

from products import selectors
from products.models import Product
from tests.database import prepare_threshold


def explain(queryset, *, analyze: bool = False) -> dict:
    """PostgreSQL's plan for the queryset's query (run, with ANALYZE)."""
    sql, params = queryset.query.sql_with_params()
    return explain_sql(sql, list(params), analyze=analyze)


def explain_sql(sql: str, params: list | None, *, analyze: bool = False) -> dict:
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN ({options}) " + sql, params)
        raw = cursor.fetchone()[0]
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]


def nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.fixture(scope="module")
def large_catalogue(django_db_setup, django_db_blocker):
    """60,000 seeded products (about 1 % named Steel), analyzed; removed afterwards."""
    with django_db_blocker.unblock():
        call_command("seed_products", count=60_000, replace=True, verbosity=0)
        yield
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE products_product RESTART IDENTITY")


@pytest.mark.django_db
@pytest.mark.usefixtures("large_catalogue")
def test_name_search_uses_the_search_keys() -> None:
    for filters in (
        selectors.ProductFilters(name="steel"),
        selectors.ProductFilters(name="steel", min_price=Decimal("100"), max_price=Decimal("200")),
    ):
        plan = explain(selectors._filtered(filters))
        assert "product_search_pieces" in {node.get("Index Name") for node in nodes(plan)}, plan
        assert not any(node["Node Type"] == "Seq Scan" for node in nodes(plan)), plan


@pytest.mark.django_db
@pytest.mark.usefixtures("large_catalogue")
def test_a_name_and_price_search_reads_about_as_many_candidates_as_it_finds() -> None:
    """Index scans narrowed by name and price together, one per price bucket (migration 0007):
    the first plan ANDed a bitmap of every product named steel with a bitmap of every product in
    the price range."""
    filters = selectors.ProductFilters(
        name="steel", min_price=Decimal("100"), max_price=Decimal("200")
    )
    where, params = selectors._search_conditions(filters)
    # The statement as the app sends it: its values in its text (selectors._with_values).
    with connection.cursor() as cursor:
        sql = selectors._with_values(
            cursor, selectors._COUNT_AND_PAGE_SQL.format(where=where), [*params, 5001, 1, 20]
        )
    plan = explain_sql(sql, None, analyze=True)
    scans = [node for node in nodes(plan) if node["Node Type"] == "Bitmap Index Scan"]
    # 100-200 is tiled by the buckets 100-199 and 200, one scan each.
    assert [node["Index Name"] for node in scans] == ["product_search_pieces"] * 2, plan
    found = selectors.product_search(filters=filters, page=1, limit=20).count
    assert found > 0
    assert sum(scan["Actual Rows"] for scan in scans) <= 2 * found + 20, plan


@pytest.mark.django_db
@pytest.mark.usefixtures("large_catalogue")
def test_deep_keyset_page_reads_only_the_page_rows() -> None:
    after_id = 59_000
    plan = explain(Product.objects.filter(id__gt=after_id).order_by("id")[:21], analyze=True)
    scans = [node for node in nodes(plan) if "Scan" in node["Node Type"]]
    assert [node["Index Name"] for node in scans] == ["products_product_pkey"], plan
    assert all(node["Actual Rows"] <= 21 for node in scans), plan
    page = selectors.product_list_after(after_id=after_id, limit=20)
    assert [p.id for p in page.products] == list(range(59_001, 59_021))


@pytest.mark.django_db
@pytest.mark.usefixtures("large_catalogue")
def test_deep_offset_page_skips_on_the_index_without_reading_rows() -> None:
    page = selectors.product_list(page=2_500, limit=20)
    assert [p.id for p in page.products] == list(range(49_981, 50_001))
    assert page.count == 60_000


@pytest.mark.django_db
@pytest.mark.usefixtures("large_catalogue")
def test_search_statements_are_planned_for_their_values_and_kept_with_them() -> None:
    """A search's values are in its statement's text: PostgreSQL plans it for them, and keeps
    that plan once psycopg prepares it. Prepared with parameters, it would settle on one generic
    plan for every search; for a price range covering the whole catalogue that plan ANDs the
    price index in (10x slower)."""
    prepare_threshold()
    narrow = selectors.ProductFilters(
        name="steel", min_price=Decimal("100"), max_price=Decimal("200")
    )
    broad = selectors.ProductFilters(name="e")
    for _ in range(12):  # past psycopg's threshold and PostgreSQL's five custom plans
        selectors.product_search(filters=narrow, page=1, limit=20)
        selectors.product_search(filters=broad, page=1, limit=20)
        selectors.product_search_after(filters=narrow, after_id=0, limit=20)
        selectors.product_get(product_id=1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, parameter_types::text FROM pg_prepared_statements")
        prepared = cursor.fetchall()
    assert any("products_product" in sql for sql, _ in prepared), "nothing is prepared at all"
    searches = [(sql, types) for sql, types in prepared if "LIKE" in sql]
    assert [types for _, types in searches] == ["{}"] * len(searches), searches
    assert [sql for sql, _ in searches if "'%steel%'" in sql and "200" in sql], searches
