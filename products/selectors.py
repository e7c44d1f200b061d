"""Reads of the inventory. Views call only these, so a cache can sit here (see products/cache.py
once it exists) without touching the views.

Two paging styles: page/limit (OFFSET-like, with a count) for people, and keyset (`after_id`) for
clients that walk the whole catalogue, whose cost does not grow with depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import QuerySet, Subquery

from products.models import Product

# Above this many rows (by the planner's estimate) the unfiltered list reports the estimate
# instead of running count(*) on every request; the page itself is still exact.
EXACT_COUNT_MAX_ROWS = 100_000


class PageOutOfRange(Exception):
    """A page number past the last page."""


@dataclass(frozen=True)
class ProductFilters:
    name: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None

    def is_empty(self) -> bool:
        return self.name is None and self.min_price is None and self.max_price is None


@dataclass(frozen=True)
class OffsetPage:
    products: list[Product]
    count: int
    count_is_estimate: bool
    page: int
    limit: int

    @property
    def total_pages(self) -> int:
        return max(1, math.ceil(self.count / self.limit))

    @property
    def has_next(self) -> bool:
        return self.page < self.total_pages

    @property
    def has_previous(self) -> bool:
        return self.page > 1


@dataclass(frozen=True)
class KeysetPage:
    products: list[Product]
    limit: int
    after_id: int
    next_after_id: int | None


def product_get(*, product_id: int) -> Product:
    """One product by id; raises Product.DoesNotExist."""
    return Product.objects.get(pk=product_id)


def product_list(*, page: int, limit: int) -> OffsetPage:
    """Page `page` (1-based) of the whole catalogue in id order."""
    count, estimated = _catalogue_count()
    if not estimated and page > max(1, math.ceil(count / limit)):
        raise PageOutOfRange(f"page {page} is past the last page")
    offset = (page - 1) * limit
    queryset = Product.objects.order_by("id")
    if offset:
        # Skip the offset on the primary-key index alone (an index-only scan), then read just
        # `limit` rows, instead of fetching and discarding `offset` full rows.
        boundary = Product.objects.order_by("id").values("id")[offset : offset + 1]
        queryset = queryset.filter(id__gte=Subquery(boundary))
    products = list(queryset[:limit])
    _ensure_in_range(page, products)
    return OffsetPage(products, count, estimated, page, limit)


def product_list_after(*, after_id: int, limit: int) -> KeysetPage:
    """Up to `limit` products with id > after_id, in id order: cost independent of depth."""
    return _keyset_page(Product.objects.all(), after_id=after_id, limit=limit)


def product_search(*, filters: ProductFilters, page: int, limit: int) -> OffsetPage:
    """Products whose name contains `name` (any case) and whose price is within the bounds."""
    queryset = _filtered(filters).order_by("id")
    count = queryset.count()
    offset = (page - 1) * limit
    products = list(queryset[offset : offset + limit])
    _ensure_in_range(page, products)
    return OffsetPage(products, count, False, page, limit)


def product_search_after(*, filters: ProductFilters, after_id: int, limit: int) -> KeysetPage:
    """The keyset variant of product_search."""
    return _keyset_page(_filtered(filters), after_id=after_id, limit=limit)


def _filtered(filters: ProductFilters) -> QuerySet[Product]:
    queryset = Product.objects.all()
    if filters.name is not None:
        # icontains compiles to UPPER(name) LIKE UPPER(%s): served by product_name_upper_trgm.
        queryset = queryset.filter(name__icontains=filters.name)
    if filters.min_price is not None:
        queryset = queryset.filter(price__gte=filters.min_price)
    if filters.max_price is not None:
        queryset = queryset.filter(price__lte=filters.max_price)
    return queryset


def _keyset_page(queryset: QuerySet[Product], *, after_id: int, limit: int) -> KeysetPage:
    rows = list(queryset.filter(id__gt=after_id).order_by("id")[: limit + 1])
    products = rows[:limit]
    next_after_id = products[-1].id if len(rows) > limit else None
    return KeysetPage(products, limit, after_id, next_after_id)


def _ensure_in_range(page: int, products: list[Product]) -> None:
    if page == 1 or products:
        return
    raise PageOutOfRange(f"page {page} is past the last page")


def _catalogue_count() -> tuple[int, bool]:
    """(count, is_estimate): exact for small tables, the planner's estimate for large ones."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [Product._meta.db_table],
        )
        row = cursor.fetchone()
    estimate = int(row[0]) if row else -1
    if estimate > EXACT_COUNT_MAX_ROWS:
        return estimate, True
    return Product.objects.count(), False
