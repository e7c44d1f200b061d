"""Writes: validated before PostgreSQL sees them, atomic, version-checked."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from products import services
from products.models import Product
from tests.products.conftest import ProductFactory

pytestmark = pytest.mark.django_db


def test_create_returns_the_saved_product_at_version_1() -> None:
    product = services.product_create(name="Lamp", price=Decimal("3.10"), stock_level=2)
    assert Product.objects.get(pk=product.pk).version == product.version == 1


def test_create_with_negative_stock_is_a_validation_error_naming_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        services.product_create(name="Lamp", price=Decimal("1"), stock_level=-5)
    assert "stock_level" in info.value.message_dict
    assert not Product.objects.exists()


def test_update_returns_the_bumped_version() -> None:
    product = ProductFactory()
    updated = services.product_update(product_id=product.pk, stock_level=3)
    assert updated.version == Product.objects.get(pk=product.pk).version == 2


def test_update_with_a_stale_expected_version_raises_and_writes_nothing() -> None:
    product = ProductFactory(stock_level=4)
    services.product_update(product_id=product.pk, stock_level=3)
    with pytest.raises(services.VersionMismatch):
        services.product_update(product_id=product.pk, stock_level=1, expected_versions={1})
    assert Product.objects.get(pk=product.pk).stock_level == 3


def test_update_refusing_any_existing_version_raises_and_writes_nothing() -> None:
    """If-None-Match: * on a product that exists: the UPDATE's own check, not only the view's."""
    product = ProductFactory(stock_level=4)
    with pytest.raises(services.VersionMismatch):
        services.product_update(product_id=product.pk, stock_level=1, refuse_existing=True)
    assert Product.objects.get(pk=product.pk).stock_level == 4


def test_update_of_a_missing_product_raises_does_not_exist() -> None:
    with pytest.raises(Product.DoesNotExist):
        services.product_update(product_id=123456, stock_level=1)


def test_update_with_negative_price_is_a_validation_error() -> None:
    product = ProductFactory()
    with pytest.raises(ValidationError):
        services.product_update(product_id=product.pk, price=Decimal("-1"))
    assert Product.objects.get(pk=product.pk).version == 1


def test_delete_with_matching_version_deletes() -> None:
    product = ProductFactory()
    services.product_delete(product_id=product.pk, expected_versions={1})
    assert not Product.objects.filter(pk=product.pk).exists()


def test_delete_with_stale_version_raises() -> None:
    product = ProductFactory()
    with pytest.raises(services.VersionMismatch):
        services.product_delete(product_id=product.pk, expected_versions={7})
    assert Product.objects.filter(pk=product.pk).exists()


def test_create_validates_without_a_query_per_constraint() -> None:
    """The field validators state the CHECK constraints; PostgreSQL enforces them on the
    INSERT. Django's validate_constraints would ask PostgreSQL once per constraint first."""
    with CaptureQueriesContext(connection) as captured:
        services.product_create(name="Lamp", price=Decimal("3.10"), stock_level=2)
    selects = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    assert selects == []


def test_update_refusing_the_current_version_raises_and_writes_nothing() -> None:
    """If-None-Match naming the current ETag: the UPDATE's own check, not only the view's."""
    product = ProductFactory(stock_level=4)
    with pytest.raises(services.VersionMismatch):
        services.product_update(product_id=product.pk, stock_level=1, refused_versions={1})
    assert Product.objects.get(pk=product.pk).stock_level == 4
