"""PostgreSQL guards the invariants itself, and the trigger bumps version on every UPDATE."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from products.models import Product
from tests.products.conftest import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("column", "value"), [("name", "''"), ("price", "-0.01"), ("stock_level", "-1")]
)
def test_check_constraints_reject_bad_rows_written_with_raw_sql(column, value) -> None:
    values = {"name": "'ok'", "price": "1", "stock_level": "1"} | {column: value}
    sql = (
        "INSERT INTO products_product (name, price, stock_level, created_at, updated_at, version)"
        f" VALUES ({values['name']}, {values['price']}, {values['stock_level']}, now(), now(), 1)"
    )
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)


def test_queryset_update_bumps_version_and_updated_at() -> None:
    product = ProductFactory()
    Product.objects.filter(pk=product.pk).update(stock_level=1)
    fresh = Product.objects.get(pk=product.pk)
    assert fresh.version == 2
    assert fresh.updated_at >= product.updated_at


def test_raw_sql_update_bumps_version() -> None:
    product = ProductFactory()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE products_product SET price = 2 WHERE id = %s", [product.pk])
        cursor.execute("UPDATE products_product SET price = 3 WHERE id = %s", [product.pk])
    assert Product.objects.get(pk=product.pk).version == 3


def test_save_bumps_version_even_if_the_writer_sends_an_old_one() -> None:
    product = ProductFactory()
    product.price = Decimal("1.00")
    product.version = 1
    product.save()
    assert Product.objects.get(pk=product.pk).version == 2


def test_etag_carries_id_and_version() -> None:
    product = ProductFactory()
    assert product.etag == f'"{product.pk}-1-1"'
