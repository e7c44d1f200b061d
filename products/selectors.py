"""Reads of the inventory, from PostgreSQL. The cache is not here: it keeps whole answers ahead of
the views that call these (api/fast_path.py; keys in products/cache.py).

Two paging styles: page/limit (OFFSET-like, with a count) for people, and keyset (`after_id`) for
clients that walk the whole catalogue, whose cost does not grow with depth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL
from psycopg import ClientCursor

from products.models import Product


class PageOutOfRange(Exception):
    """A page number past the last page."""


@dataclass(frozen=True)
class ProductFilters:
    name: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None


@dataclass(frozen=True)
class OffsetPage:
    products: list[Product]
    count: int
    page: int
    limit: int

    @property
    def total_pages(self) -> int:
        return _total_pages(self.count, self.limit)

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
    found = _products(_GET_SQL, [product_id])
    if not found:
        raise Product.DoesNotExist(f"No product with id {product_id}.")
    return found[0]


def product_version(*, product_id: int) -> int | None:
    """The product's current version (bumped by a trigger on every update), None if gone."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM products_product WHERE id = %s", [product_id])
        row = cursor.fetchone()
    return int(row[0]) if row else None


def product_list(*, page: int, limit: int) -> OffsetPage:
    """Page `page` (1-based) of the whole catalogue in id order."""
    count = _catalogue_count()
    _ensure_counted_in_range(page, count, limit)
    offset = (page - 1) * limit
    if offset:
        # The per-bucket counts say which block of ids holds row number `offset` and how many
        # rows come before it: only the remainder (< 1,024 rows) is skipped the slow way.
        first_id, offset = _bucket_start(offset)
        products = _products(_LIST_FROM_SQL, [first_id, limit, offset])
    else:
        products = _products(_LIST_SQL, [limit])
    _ensure_in_range(page, products)
    return OffsetPage(products, count, page, limit)


def product_list_after(*, after_id: int, limit: int) -> KeysetPage:
    """Up to `limit` products with id > after_id, in id order: cost independent of depth."""
    rows = _products(_LIST_AFTER_SQL, [after_id, limit + 1])
    return _keyset(rows, after_id=after_id, limit=limit)


# The model's fields, and their columns, in the order of the rows that Product.from_db takes.
_FIELDS = [field.attname for field in Product._meta.concrete_fields]
_PLAIN_COLUMNS = [str(field.column) for field in Product._meta.concrete_fields]
# A product and the whole catalogue's pages, in SQL: the ORM compiled each of these statements
# anew on every request, a fifth of an uncached list page's CPU (callgrind).
_SELECT_PRODUCTS = f"SELECT {', '.join(_PLAIN_COLUMNS)} FROM products_product"  # noqa: S608
_GET_SQL = f"{_SELECT_PRODUCTS} WHERE id = %s"
_LIST_SQL = f"{_SELECT_PRODUCTS} ORDER BY id LIMIT %s"
_LIST_FROM_SQL = f"{_SELECT_PRODUCTS} WHERE id >= %s ORDER BY id LIMIT %s OFFSET %s"
_LIST_AFTER_SQL = f"{_SELECT_PRODUCTS} WHERE id > %s ORDER BY id LIMIT %s"


def _products(sql: str, params: list[Any]) -> list[Product]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return _from_rows(cursor.fetchall())


def _from_rows(rows: Iterable[Sequence[Any]]) -> list[Product]:
    """Products from rows of their columns in _FIELDS order."""
    alias = connection.alias  # each read through the proxy is a thread-local lookup
    return [Product.from_db(alias, _FIELDS, row) for row in rows]


# A search matching at most this many products is counted and paged in one statement; past
# it, the count and the page are two (see _search).
SEARCH_IDS_MAX = 5_000


def product_search(*, filters: ProductFilters, page: int, limit: int) -> OffsetPage:
    """Products whose name contains `name` (any case) and whose price is within the bounds."""
    offset = (page - 1) * limit
    # A selective search (the common case) is one statement: it finds the matches once, and
    # counts them, picks the page's ids and reads those rows from the same snapshot.
    found = _count_and_page(filters, offset, limit)
    if found is not None:
        count, products = found
        _ensure_in_range(page, products)
        return OffsetPage(products, count, page, limit)
    with _planned_for_values():
        queryset = _filtered(filters).order_by("id")
        count = queryset.count()
        # Before the page query, whose OFFSET reads every match before it (a full scan for page
        # 2147483 of a common term), as product_list checks.
        _ensure_counted_in_range(page, count, limit)
        # Two queries on purpose: a window count(*) in the page query makes the planner walk
        # the primary key in id order over the whole table (measured: 1 s instead of 25 ms).
        products = list(queryset[offset : offset + limit])
    _ensure_in_range(page, products)
    return OffsetPage(products, count, page, limit)


_COLUMNS = ", ".join(f"p.{column}" for column in _PLAIN_COLUMNS)
# No ORDER BY in the matches, or the planner walks the primary key: array_agg sorts the ids.
# Array slices are 1-based and inclusive. An empty page still returns the count, with no row.
_COUNT_AND_PAGE_SQL = f"""
WITH matches AS (SELECT id FROM products_product WHERE {{where}} LIMIT %s),
found AS (SELECT count(*) AS n, (array_agg(id ORDER BY id))[%s:%s] AS ids FROM matches)
SELECT found.n, {_COLUMNS}
FROM found LEFT JOIN products_product AS p ON p.id = ANY(found.ids)
ORDER BY p.id
"""  # noqa: S608 (only the conditions of _search_conditions are interpolated)


def _count_and_page(
    filters: ProductFilters, offset: int, limit: int
) -> tuple[int, list[Product]] | None:
    """The match count and one page of products, or None past SEARCH_IDS_MAX matches."""
    where, params = _search_conditions(filters)
    # Slice bounds are integers: clamped, since no page past SEARCH_IDS_MAX is read here.
    first, last = (min(n, SEARCH_IDS_MAX + 2) for n in (offset + 1, offset + limit))
    with connection.cursor() as cursor:
        statement = _with_values(
            cursor,
            _COUNT_AND_PAGE_SQL.format(where=where),
            [*params, SEARCH_IDS_MAX + 1, first, last],
        )
        cursor.execute(statement)
        rows = cursor.fetchall()
    count = int(rows[0][0])
    if count > SEARCH_IDS_MAX:
        return None
    products = _from_rows(row[1:] for row in rows)
    return count, [product for product in products if product.pk is not None]


def _search_conditions(filters: ProductFilters) -> tuple[str, list[Any]]:
    """The search as a WHERE clause on products_product, and its parameters.

    The name matches as Django's icontains compiles it: UPPER(name) LIKE UPPER(%s), with LIKE's
    wildcards escaped. That decides what matches; the keys of product_search_pieces (migration
    0007) are what lets PostgreSQL find it without reading every name. Any name containing the
    term has every three-character piece of it (upper-cased), so a search asks the index for:
    - with a price range: for each bucket that tiles it, every piece paired with the bucket's
      100-dollar bucket, and the bucket itself if it is finer; the buckets ORed;
    - with a range too wide for that, every piece, and one of the buckets that tile the range;
    - without a range, every piece.
    """
    conditions: list[str] = []
    params: list[Any] = []
    if filters.name is not None:
        conditions.append("UPPER(name::text) LIKE UPPER(%s)")
        params.append(f"%{connection.ops.prep_for_like_query(filters.name)}%")
        if _has_name_keys(filters.name):
            keys, key_params = _name_key_condition(filters)
            conditions.append(keys)
            params.extend(key_params)
    if filters.min_price is not None:
        conditions.append("price >= %s")
        params.append(filters.min_price)
    if filters.max_price is not None:
        conditions.append("price <= %s")
        params.append(filters.max_price)
    return " AND ".join(conditions) or "TRUE", params


def product_search_after(*, filters: ProductFilters, after_id: int, limit: int) -> KeysetPage:
    """The keyset variant of product_search."""
    with _planned_for_values():
        return _keyset_page(_filtered(filters), after_id=after_id, limit=limit)


def _with_values(cursor: CursorWrapper, sql: str, params: Sequence[Any]) -> str:
    """The statement with its values in its text, quoted by psycopg as a client-side cursor
    quotes them, for the connection of `cursor`.

    PostgreSQL then plans it for those values, as it plans an unprepared statement (see
    _planned_for_values), and psycopg may still prepare it (DB_PREPARE_THRESHOLD): the same
    search repeated on a connection is planned once, for its values. Planning was a third of
    PostgreSQL's work for a search (pgbench, the bench's 1,000,000 products, `steel` at
    100-200: 1.13 ms a search planned each time, 0.76 ms prepared). Different values are a
    different text, with a plan of its own, never another search's. psycopg keeps at most
    `prepared_max` (100) statements per connection, dropping the least recently used; a kept
    search plan holds 73-458 kB of its server process's memory (more for the longest terms
    and the widest price tilings), so up to about 15 MB per connection for common searches.

    On the cursor's connection: taking the cursor is what replaces a connection closed under
    the request (inventory_project/postgresql/base.py); psycopg's errors here (a closed
    connection, a NUL in a term) are Django's, as they are from execute().
    """
    with connection.wrap_database_errors:
        return ClientCursor(cursor.connection).mogrify(sql, params)


@contextmanager
def _planned_for_values() -> Iterator[None]:
    """Plan the statements inside for the values they run with: do not prepare them.

    Other statements are prepared (DB_PREPARE_THRESHOLD), and PostgreSQL then settles on a
    generic plan, one for any values. That suits lookups by key; for a search the right plan
    depends on the values: a generic plan measured on the bench database ANDed the price index
    in for a price range covering every product (200 ms, against 20 ms planned for the values).
    Unprepared, each statement is planned for its values. This replaces `SET LOCAL
    plan_cache_mode`, whose transaction cost three more round trips per search.
    """
    connection.ensure_connection()
    raw = connection.connection
    threshold = raw.prepare_threshold
    raw.prepare_threshold = None
    try:
        yield
    finally:
        raw.prepare_threshold = threshold


def _filtered(filters: ProductFilters) -> QuerySet[Product]:
    return Product.objects.filter(_condition(filters))


def _condition(filters: ProductFilters) -> RawSQL:
    """_search_conditions as an ORM filter."""
    where, params = _search_conditions(filters)
    # Only the fixed SQL of _search_conditions is interpolated; every value is a parameter.
    return RawSQL(where, params, output_field=BooleanField())  # noqa: S611


# The bucket sizes the search keys hold: 10**0 to 10**5 dollars (migration 0005), and the level
# of the buckets paired with the name's pieces: 100 dollars (migration 0007).
PRICE_LEVELS = 6
PAIRED_LEVEL = 2
# A range that needs more buckets than this is widened to coarser ones (more candidates, each
# rechecked), and past the coarsest, searched without them.
PRICE_LABELS_MAX = 24


def name_contains(queryset: QuerySet[Product], term: str) -> QuerySet[Product]:
    """The products whose name contains `term`, in any case, found through the search keys."""
    return queryset.filter(_condition(ProductFilters(name=term)))


_KEYS = "products_search_pieces(name, price)"


def _name_key_condition(filters: ProductFilters) -> tuple[str, list[Any]]:
    """The condition on the search keys for a term that has keys (see _search_conditions)."""
    term = filters.name
    labels = _price_labels(filters.min_price, filters.max_price)
    branches = _paired_branches(labels) if labels is not None else None
    if branches is not None:
        branch = f"{_KEYS} @> (products_piece_keys(%s, %s) || products_price_keys(%s::text[]))"
        condition = " OR ".join([branch] * len(branches))
        return f"({condition})", [v for paired, finer in branches for v in (term, paired, finer)]
    condition = f"{_KEYS} @> products_name_keys(%s)"
    params: list[Any] = [term]
    if labels is not None:
        condition += f" AND {_KEYS} && products_price_keys(%s::text[])"
        params.append(labels)
    return condition, params


def _paired_branches(labels: list[str]) -> list[tuple[str, list[str]]] | None:
    """The tiling's buckets as (100-dollar bucket, [the bucket if finer]) pairs, at most
    PRICE_LABELS_MAX: a bucket coarser than 100 dollars is one pair per 100-dollar bucket."""
    branches: list[tuple[str, list[str]]] = []
    for label in labels:
        level, bucket = (int(part) for part in label.removeprefix("p").split(":"))
        if level < PAIRED_LEVEL:
            branches.append((f"p{PAIRED_LEVEL}:{bucket // 10 ** (PAIRED_LEVEL - level)}", [label]))
            continue
        span = 10 ** (level - PAIRED_LEVEL)
        if len(branches) + span > PRICE_LABELS_MAX:
            return None
        branches.extend(
            (f"p{PAIRED_LEVEL}:{n}", []) for n in range(bucket * span, (bucket + 1) * span)
        )
    return branches if len(branches) <= PRICE_LABELS_MAX else None


def _has_name_keys(term: str) -> bool:
    """Whether the term has a key: a three-character piece (products_name_keys)."""
    return len(term) >= 3


def _price_labels(low: Decimal | None, high: Decimal | None) -> list[str] | None:
    """Dollar buckets (`p<level>:<bucket>`) that tile [low, high], or None to not use them.

    A price p lies in bucket floor(p) // 10**level of each level. The range's whole dollars are
    tiled with the fewest aligned buckets; if that takes more than PRICE_LABELS_MAX, the range is
    widened to whole tens, hundreds, ... first. The tiling may cover more than the range (the
    price bounds are checked on every row anyway), never less.
    """
    if low is None or high is None or low > high:
        return None
    first, last = int(low), int(high)  # floors: prices are never negative
    for unit_level in range(PRICE_LEVELS):
        unit = 10**unit_level
        labels = _tiling(first // unit * unit, (last // unit + 1) * unit - 1, unit_level)
        if labels is not None:
            return labels
    return None


def _tiling(first: int, last: int, min_level: int) -> list[str] | None:
    labels: list[str] = []
    while first <= last:
        level = min_level
        while (
            level + 1 < PRICE_LEVELS
            and first % 10 ** (level + 1) == 0
            and first + 10 ** (level + 1) - 1 <= last
        ):
            level += 1
        labels.append(f"p{level}:{first // 10**level}")
        if len(labels) > PRICE_LABELS_MAX:
            return None
        first += 10**level
    return labels


def _keyset_page(queryset: QuerySet[Product], *, after_id: int, limit: int) -> KeysetPage:
    rows = list(queryset.filter(id__gt=after_id).order_by("id")[: limit + 1])
    return _keyset(rows, after_id=after_id, limit=limit)


def _keyset(rows: list[Product], *, after_id: int, limit: int) -> KeysetPage:
    """The page from up to limit + 1 rows after after_id (one more says whether there is a next)."""
    products = rows[:limit]
    next_after_id = products[-1].id if len(rows) > limit else None
    return KeysetPage(products, limit, after_id, next_after_id)


def _ensure_in_range(page: int, products: list[Product]) -> None:
    if page == 1 or products:
        return
    raise PageOutOfRange(f"page {page} is past the last page")


def _ensure_counted_in_range(page: int, count: int, limit: int) -> None:
    """PageOutOfRange for a page past the last of `count` rows, told before it is read."""
    if page > _total_pages(count, limit):
        raise PageOutOfRange(f"page {page} is past the last page")


def _total_pages(count: int, limit: int) -> int:
    return max(1, math.ceil(count / limit))


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
