"""Writes to the inventory: atomic, validated by full_clean() before PostgreSQL's own checks.

The field validators state the same invariants as the CHECK constraints, so full_clean() skips
validate_constraints: Django checks each constraint with a query of its own (four per write),
and PostgreSQL enforces them on the write anyway.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal

from django.db import transaction

from products.models import Product


class VersionMismatch(Exception):
    """The caller's If-Match did not name the product's current version."""

    def __init__(self, current: Product) -> None:
        super().__init__(f"product {current.pk} is at version {current.version}")
        self.current = current


def product_create(*, name: str, price: Decimal, stock_level: int) -> Product:
    """Create a product; raises django.core.exceptions.ValidationError on bad values."""
    product = Product(name=name, price=price, stock_level=stock_level)
    product.full_clean(validate_constraints=False)
    with transaction.atomic():
        product.save(force_insert=True)
    return product


def product_update(
    *,
    product_id: int,
    price: Decimal | None = None,
    stock_level: int | None = None,
    expected_versions: Collection[int] | None = None,
) -> Product:
    """Set price and/or stock level.

    The row is locked for the read-check-write, so with `expected_versions` (from If-Match) two
    concurrent writers of the same version cannot both win: the second sees the bumped version and
    gets VersionMismatch. Raises Product.DoesNotExist, VersionMismatch or ValidationError.
    """
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=product_id)
        if expected_versions is not None and product.version not in expected_versions:
            raise VersionMismatch(product)
        fields = ["updated_at"]
        if price is not None:
            product.price = price
            fields.append("price")
        if stock_level is not None:
            product.stock_level = stock_level
            fields.append("stock_level")
        product.full_clean(validate_constraints=False)
        product.save(update_fields=fields)
        # The trigger bumped it from the value we hold the lock on.
        product.version += 1
    return product


def product_delete(*, product_id: int, expected_versions: Collection[int] | None = None) -> None:
    """Delete a product; raises Product.DoesNotExist or VersionMismatch."""
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=product_id)
        if expected_versions is not None and product.version not in expected_versions:
            raise VersionMismatch(product)
        product.delete()
