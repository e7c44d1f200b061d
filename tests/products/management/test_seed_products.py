from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from products.models import Product
from tests.products.conftest import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_seeds_the_requested_number_of_valid_products() -> None:
    call_command("seed_products", count=2_000, stdout=StringIO())
    assert Product.objects.count() == 2_000
    assert not Product.objects.filter(name="").exists()
    assert Product.objects.filter(name__icontains="steel").exists()
    assert Product.objects.filter(stock_level=0).exists()


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
    call_command("seed_products", count=50, replace=True, stdout=StringIO())
    first = list(Product.objects.values_list("id", "name", "price", "stock_level"))
    call_command("seed_products", count=50, replace=True, stdout=StringIO())
    assert list(Product.objects.values_list("id", "name", "price", "stock_level")) == first
    assert first[0][0] == 1
