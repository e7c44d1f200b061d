from __future__ import annotations

import signal
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from products.models import Product
from tests.concurrency import both_look_first, run_at_once
from tests.processes import manage
from tests.products.conftest import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_seeds_the_requested_number_of_valid_products() -> None:
    out = StringIO()
    call_command("seed_products", count=2_000, stdout=out)
    assert Product.objects.count() == 2_000
    assert not Product.objects.filter(name="").exists()
    assert Product.objects.filter(name__icontains="steel").exists()
    assert Product.objects.filter(stock_level=0).exists()
    assert "seeded 2000 products in " in out.getvalue()


def test_a_seeded_catalogue_is_named_alike_mostly_in_stock_with_few_steel_names() -> None:
    """A search for "steel" is selective (the benchmarks rely on it: about 1 %)."""
    call_command("seed_products", count=2_000, stdout=StringIO())
    assert 0 < Product.objects.filter(name__icontains="steel").count() < 100
    assert Product.objects.filter(stock_level=0).count() < 1_000
    named = r"^[A-Z][a-z-]+ [A-Z][a-z]+ [A-Z][a-z]+ [0-9]{7}$"  # Compact Oak Lamp 0000042
    assert list(Product.objects.exclude(name__regex=named).values_list("name", flat=True)) == []


def test_without_a_count_it_seeds_a_catalogue() -> None:
    call_command("seed_products", stdout=StringIO())
    assert Product.objects.exists()


def test_large_seed_keeps_every_index() -> None:
    call_command("seed_products", count=60_000, stdout=StringIO())
    indexes = {index.name for index in Product._meta.indexes}
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'products_product'")
        present = {row[0] for row in cursor.fetchall()}
    assert indexes <= present


def test_refuses_a_non_empty_catalogue() -> None:
    ProductFactory()
    with pytest.raises(CommandError, match="--replace"):
        call_command("seed_products", count=10, stdout=StringIO())
    assert Product.objects.count() == 1


def test_replace_leaves_the_same_catalogue_every_time() -> None:
    call_command("seed_products", "--count", "50", "--replace", stdout=StringIO())
    first = list(Product.objects.values_list("id", "name", "price", "stock_level"))
    call_command("seed_products", "--count", "50", "--replace", stdout=StringIO())
    assert list(Product.objects.values_list("id", "name", "price", "stock_level")) == first
    assert first[0][0] == 1


@pytest.mark.django_db(transaction=True)
def test_two_seedings_at_once_load_one_catalogue(monkeypatch) -> None:
    """Both found the table empty and both loaded: twice the products, each name twice."""
    both_look_first(monkeypatch, Product)
    raised = run_at_once(lambda: call_command("seed_products", "--count", "50", stdout=StringIO()))
    outcomes = ["seeded"] * (2 - len(raised)) + [str(exc) for exc in raised]
    assert sorted(outcomes) == [
        "products already exist; use --replace to empty the table first",
        "seeded",
    ]
    assert Product.objects.count() == 50


def test_a_negative_seed_is_refused_but_zero_is_a_seed() -> None:
    """Python's random takes -1 as 1: two seeds that look different gave one catalogue."""
    with pytest.raises(CommandError, match="--seed must be >= 0"):
        call_command("seed_products", "--count", "1", "--seed", "-1", stdout=StringIO())
    call_command("seed_products", "--count", "1", "--seed", "0", stdout=StringIO())
    assert Product.objects.count() == 1


def test_a_negative_count_is_refused_but_zero_seeds_nothing() -> None:
    with pytest.raises(CommandError, match="--count must be >= 0"):
        call_command("seed_products", "--count", "-1", stdout=StringIO())
    call_command("seed_products", "--count", "0", stdout=StringIO())  # an empty catalogue
    assert not Product.objects.exists()


def test_a_seeding_inside_a_callers_transaction_refreshes_the_statistics_there() -> None:
    """VACUUM cannot run in a transaction block (bootstrap_demo's, a test's): ANALYZE does."""
    with transaction.atomic():
        call_command("seed_products", "--count", "500", stdout=StringIO())
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'products_product'")
            assert cursor.fetchone()[0] == 500


def test_ctrl_c_during_the_load_keeps_the_catalogue_and_says_so_in_one_line() -> None:
    """It was a KeyboardInterrupt traceback from inside psycopg's COPY."""
    kept = ProductFactory()
    seeding = manage("seed_products", "--count", "5000000", "--replace")
    try:
        deadline = time.monotonic() + 30
        with connection.cursor() as cursor:
            while True:  # interrupted mid-COPY, as Ctrl-C would
                cursor.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query LIKE 'COPY products_product%%'"
                )
                if cursor.fetchone() or seeding.poll() is not None:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
        seeding.send_signal(signal.SIGINT)
        _, stderr = seeding.communicate(timeout=30)
    finally:
        seeding.kill()
    assert seeding.returncode == -signal.SIGINT  # ended by it: a shell loop stops too
    assert stderr.strip().splitlines() == [
        "CommandError: interrupted: nothing was loaded (the load is one transaction, rolled back)"
    ]
    assert list(Product.objects.values_list("pk", flat=True)) == [kept.pk]
