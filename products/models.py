"""The inventory domain: one Product table guarded by PostgreSQL itself."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Upper

PRICE_MAX_DIGITS = 12
PRICE_DECIMAL_PLACES = 2
NAME_MAX_LENGTH = 255
STOCK_MAX = 2_147_483_647  # PostgreSQL integer


class Product(models.Model):
    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=NAME_MAX_LENGTH)
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
            # Django compiles `name__icontains` to UPPER("name"::text) LIKE UPPER(%s): the index
            # must be on that expression, or PostgreSQL never uses it.
            GinIndex(
                OpClass(Upper("name"), name="gin_trgm_ops"),
                name="product_name_upper_trgm",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    @property
    def etag(self) -> str:
        """A strong entity tag: changes whenever the row changes (the trigger bumps version)."""
        return f'"{self.pk}-{self.version}"'
