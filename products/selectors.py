"""Reads of the inventory. Views call only these, so a cache can sit here (see products/cache.py
once it exists) without touching the views.

Two paging styles: page/limit (OFFSET-like, with a count) for people, and keyset (`after_id`) for
clients that walk the whole catalogue, whose cost does not grow with depth.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import QuerySet

from products.models import Product


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


def product_version(*, product_id: int) -> int | None:
    """The product's current version (bumped by a trigger on every update), None if gone."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM products_product WHERE id = %s", [product_id])
        row = cursor.fetchone()
    return int(row[0]) if row else None


def product_list(*, page: int, limit: int) -> OffsetPage:
    """Page `page` (1-based) of the whole catalogue in id order."""
    count = _catalogue_count()
    if page > max(1, math.ceil(count / limit)):
        raise PageOutOfRange(f"page {page} is past the last page")
    offset = (page - 1) * limit
    queryset = Product.objects.order_by("id")
    if offset:
        # The per-bucket counts say which block of ids holds row number `offset` and how many
        # rows come before it: only the remainder (< 1,024 rows) is skipped the slow way.
        first_id, offset = _bucket_start(offset)
        queryset = queryset.filter(id__gte=first_id)
    products = list(queryset[offset : offset + limit])
    _ensure_in_range(page, products)
    return OffsetPage(products, count, page, limit)


def product_list_after(*, after_id: int, limit: int) -> KeysetPage:
    """Up to `limit` products with id > after_id, in id order: cost independent of depth."""
    return _keyset_page(Product.objects.all(), after_id=after_id, limit=limit)


# A search matching at most this many products reads their ids in one query, and counts and
# pages them here; past it, PostgreSQL counts and pages separately.
SEARCH_IDS_MAX = 5_000


def product_search(*, filters: ProductFilters, page: int, limit: int) -> OffsetPage:
    """Products whose name contains `name` (any case) and whose price is within the bounds."""
    with _planned_for_values():
        return _search(filters, page, limit)


def _search(filters: ProductFilters, page: int, limit: int) -> OffsetPage:
    queryset = _filtered(filters)
    offset = (page - 1) * limit
    # A selective search (the common case) finds its matches once: the count and the page were
    # two index scans of the same candidates. No ORDER BY, or the planner walks the primary key.
    ids = list(_match_ids(queryset))
    if len(ids) <= SEARCH_IDS_MAX:
        ids.sort()
        wanted = ids[offset : offset + limit]
        # The filter again: a row changed since the ids were read must still match to be shown.
        products = list(queryset.filter(id__in=wanted).order_by("id")) if wanted else []
        _ensure_in_range(page, products)
        return OffsetPage(products, len(ids), page, limit)
    queryset = queryset.order_by("id")
    count = queryset.count()
    # Two queries on purpose: a window count(*) in the page query makes the planner walk the
    # primary key in id order over the whole table (measured: 1 s instead of 25 ms).
    products = list(queryset[offset : offset + limit])
    _ensure_in_range(page, products)
    return OffsetPage(products, count, page, limit)


def _match_ids(queryset: QuerySet[Product]) -> QuerySet[Product, int]:
    """Up to SEARCH_IDS_MAX + 1 ids of the queryset's rows, in no particular order."""
    return queryset.order_by().values_list("id", flat=True)[: SEARCH_IDS_MAX + 1]


def product_search_after(*, filters: ProductFilters, after_id: int, limit: int) -> KeysetPage:
    """The keyset variant of product_search."""
    with _planned_for_values():
        return _keyset_page(_filtered(filters), after_id=after_id, limit=limit)


@contextmanager
def _planned_for_values() -> Iterator[None]:
    """Plan the statements inside for the values they run with, even once prepared.

    Statements are prepared (DB_PREPARE_THRESHOLD), and PostgreSQL then settles on a generic
    plan, one for any values. That suits lookups by key; for a search the right plan depends
    on the values: a generic plan measured on the bench database ANDed the price index in for
    a price range covering every product (200 ms, against 20 ms planned for the values).
    SET LOCAL ends with the transaction, so the pooled connection goes back as it came.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        yield


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


def _catalogue_count() -> int:
    """Exact, from the per-bucket counts the triggers of migration 0004 keep."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(sum(n), 0)::bigint FROM products_id_bucket")
        row = cursor.fetchone()
    return int(row[0])


_BUCKET_START_SQL = """
WITH b AS (
    SELECT bucket, n, sum(n) OVER (ORDER BY bucket) AS upto
    FROM products_id_bucket WHERE n > 0
)
SELECT bucket, upto - n FROM b WHERE upto > %s ORDER BY bucket LIMIT 1
"""
BUCKET_BITS = 10  # migration 0004: bucket = id >> 10


def _bucket_start(offset: int) -> tuple[int, int]:
    """(first id of the bucket holding row `offset`, offset left within that bucket)."""
    with connection.cursor() as cursor:
        cursor.execute(_BUCKET_START_SQL, [offset])
        row = cursor.fetchone()
    if row is None:  # past the end: an empty page
        return 0, offset
    bucket, before = row
    return int(bucket) << BUCKET_BITS, offset - int(before)
