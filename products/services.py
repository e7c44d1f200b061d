"""Writes to the inventory: atomic, validated by the model's fields before PostgreSQL's checks.

The field validators state the same invariants as the CHECK constraints, so full_clean() skips
validate_constraints: Django checks each constraint with a query of its own (four per write),
and PostgreSQL enforces them on the write anyway. Updates, the frequent write, validate just the
fields they set and are one statement (see product_update).
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, connection, models, transaction
from django.utils import timezone

from products import cache
from products.models import Product


class VersionMismatch(Exception):
    """The product's current version is not one the caller's preconditions allow (If-Match did
    not name it, or If-None-Match did)."""

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
    refused_versions: Collection[int] | None = None,
    refuse_existing: bool = False,
) -> Product:
    """Set price and/or stock level in one statement, and return the product as written.

    One `UPDATE ... RETURNING`: the version checks (`expected_versions` from If-Match,
    `refused_versions` and `refuse_existing` from If-None-Match) are part of its WHERE clause,
    so two concurrent writers of the same version cannot both win (the second re-reads the row
    after the first commits and no longer matches), and the write costs
    one round trip instead of a locking read, a save and a commit. It is a single statement, so
    it needs no transaction of its own; not going through Model.save(), it sends no post_save
    and invalidates the cache itself, after commit, as every bulk write does.
    Raises Product.DoesNotExist, VersionMismatch or ValidationError.
    """
    values = _cleaned(price=price, stock_level=stock_level)
    values["updated_at"] = timezone.now()
    params = [_field(name).get_db_prep_save(v, connection) for name, v in values.items()]
    sets = ", ".join(f"{_field(name).column} = %s" for name in values)
    where = f"{_field('id').column} = %s"
    params.append(product_id)
    if expected_versions is not None:
        where += f" AND {_field('version').column} = ANY(%s)"
        params.append(list(expected_versions))
    if refused_versions:
        where += f" AND NOT {_field('version').column} = ANY(%s)"
        params.append(list(refused_versions))
    if refuse_existing:
        where += " AND FALSE"  # then told apart from a missing product below
    table = Product._meta.db_table
    sql = f"UPDATE {table} SET {sets} WHERE {where} RETURNING {_COLUMNS}"  # noqa: S608
    with connection.cursor() as cursor:
        try:
            cursor.execute(sql, params)
        except (OperationalError, InterfaceError):
            # The connection failed with the UPDATE in flight: it may have committed, or may
            # commit later (a server that stopped answering runs it once it resumes: the
            # listener's invalidation covers that), and no invalidation is registered yet.
            # Invalidating a row that did not change costs a miss.
            if not connection.in_atomic_block:
                cache.invalidate([product_id])
            raise
        row = cursor.fetchone()
    if row is None:
        current = Product.objects.filter(pk=product_id).first()
        if current is None:
            raise Product.DoesNotExist(f"No product with id {product_id}.")
        raise VersionMismatch(current)
    transaction.on_commit(lambda: cache.invalidate([product_id]))
    return Product.from_db(connection.alias, _FIELDS, row)


_FIELDS = [field.attname for field in Product._meta.concrete_fields]
_COLUMNS = ", ".join(str(field.column) for field in Product._meta.concrete_fields)


def _field(name: str) -> models.Field:
    field = Product._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def _cleaned(**values: Any) -> dict[str, Any]:
    """The given fields, converted and checked by the model fields' own validators."""
    cleaned, errors = {}, {}
    for name, value in values.items():
        if value is None:
            continue
        try:
            cleaned[name] = _field(name).clean(value, None)
        except ValidationError as exc:
            errors[name] = exc.messages
    if errors:
        raise ValidationError(errors)
    return cleaned


def product_delete(
    *,
    product_id: int,
    expected_versions: Collection[int] | None = None,
    refused_versions: Collection[int] | None = None,
    refuse_existing: bool = False,
) -> None:
    """Delete a product; raises Product.DoesNotExist or VersionMismatch.

    The preconditions are product_update's, checked on the row locked for the delete.
    """
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=product_id)
        refused_by = precondition_refusing(
            product.version,
            expected_versions=expected_versions,
            refused_versions=refused_versions,
            refuse_existing=refuse_existing,
        )
        if refused_by is not None:
            raise VersionMismatch(product)
        product.delete()


def precondition_refusing(
    version: int,
    *,
    expected_versions: Collection[int] | None = None,
    refused_versions: Collection[int] | None = None,
    refuse_existing: bool = False,
) -> str | None:
    """The header whose precondition (product_update's) refuses a product at `version`:
    "If-Match", then "If-None-Match" (RFC 9110, 13.2.2's order), or None."""
    if expected_versions is not None and version not in expected_versions:
        return "If-Match"
    if refuse_existing or (refused_versions is not None and version in refused_versions):
        return "If-None-Match"
    return None
