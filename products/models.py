"""The inventory domain: one Product table guarded by PostgreSQL itself."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models, transaction

from products import cache

PRICE_MAX_DIGITS = 12
PRICE_DECIMAL_PLACES = 2
NAME_MAX_LENGTH = 255
STOCK_MAX = 2_147_483_647  # PostgreSQL integer


def search_keys() -> models.Func:
    """A product's search keys (migration 0007): its name's 3-character pieces, its price
    buckets, and the pieces paired with its 100-dollar bucket."""
    return models.Func(
        models.F("name"),
        models.F("price"),
        function="products_search_pieces",
        output_field=ArrayField(models.IntegerField()),
    )


class ProductQuerySet(models.QuerySet["Product"]):
    """Bulk writes send no signals: these invalidate the product cache themselves, after commit.

    (The NOTIFY trigger of migration 0003 announces them to the listener as well, but only a
    moment later; a read right after the commit must already miss.)
    """

    def update(self, **kwargs: Any) -> int:
        # Which rows matched is known only to PostgreSQL: drop every cached product.
        count = super().update(**kwargs)
        if count:
            transaction.on_commit(cache.invalidate_all, using=self.db)
        return count

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        created = super().bulk_create(objs, *args, **kwargs)
        _invalidate_on_commit(created, self.db)
        return created

    def bulk_update(
        self, objs: Iterable[Any], fields: Iterable[str], *args: Any, **kwargs: Any
    ) -> int:
        objs = list(objs)
        count = super().bulk_update(objs, fields, *args, **kwargs)
        if count:
            _invalidate_on_commit(objs, self.db)
        return count


def _invalidate_on_commit(products: Sequence[Any], using: str) -> None:
    ids = [product.pk for product in products]
    if not ids:
        return
    if None in ids:  # ignore_conflicts: PostgreSQL does not say which rows went in
        transaction.on_commit(cache.invalidate_all, using=using)
    else:
        cache.invalidate_on_commit(ids, using=using)


# A name is one line of text: a line break could not even be kept by the admin's text box.
# C0 and C1 control characters (NEL, U+0085, among them) and the Unicode line and paragraph
# separators.
NAME_CONTROL_CHARACTERS_PATTERN = r"[\x00-\x1f\x7f-\x9f\u2028\u2029]"
NAME_CONTROL_CHARACTERS = RegexValidator(
    NAME_CONTROL_CHARACTERS_PATTERN,
    inverse_match=True,
    message="Names cannot contain control characters (line breaks, tabs).",
    code="control_characters",
)


class Product(models.Model):
    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=NAME_MAX_LENGTH, validators=[NAME_CONTROL_CHARACTERS])
    price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        validators=[MinValueValidator(Decimal("0"))],
    )
    stock_level = models.IntegerField(
        validators=[MinValueValidator(0), MaxValueValidator(STOCK_MAX)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Bumped by the BEFORE UPDATE trigger of migration 0002 on every UPDATE, whatever issued it
    # (API, admin list_editable, QuerySet.update(), raw SQL): ETags and cache keys rely on it.
    version = models.PositiveIntegerField(default=1, editable=False)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(name=""), name="product_name_not_empty"),
            models.CheckConstraint(condition=models.Q(price__gte=0), name="product_price_gte_0"),
            models.CheckConstraint(
                condition=models.Q(stock_level__gte=0), name="product_stock_level_gte_0"
            ),
            models.CheckConstraint(
                condition=models.Q(version__gte=1), name="product_version_gte_1"
            ),
        ]
        indexes = [
            models.Index(fields=["price"], name="product_price_idx"),
            # Name and price-range searches (products/selectors.py, migration 0007).
            GinIndex(search_keys(), name="product_search_pieces", gin_pending_list_limit=256),
        ]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    @property
    def etag(self) -> str:
        """A strong entity tag: changes whenever the row changes (the trigger bumps version),
        and with the JSON's shape (`cache.REPRESENTATION`)."""
        return f'"{self.pk}-{self.version}-{cache.REPRESENTATION}"'
