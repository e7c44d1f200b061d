"""Product requests with no framework around the app's parts: what `products_bounds.py` measures.

gunicorn serves this module (`_bare:application`) for `bench/products_bounds.py`. It answers
three bench-only paths and hands everything else, the floor (`/healthz`) and the API included,
to `inventory_project.wsgi`:

- `/bare/search?name=...&min_price=...&max_price=...`: page 1 of 20, from the app's own
  selector (`selectors.product_search`: the statement the view sends, with its values in its
  text, planned for them and, repeated, kept once psycopg prepares it; on Django's pooled
  connection) and the output serializer's `_represent`, in one `orjson` call. Left out: the
  query serializer, the throttle, the page links, the ETag and every header but Content-Type,
  and the renderer. What this reaches is about the most a search in Python can reach.
- `/bare/search-kept`: the same page from a statement whose index keys were computed once, at
  start-up, for `name=steel&min_price=100&max_price=200` (the bench's search; nothing else is
  answered), prepared, on a connection of its own per thread that keeps one plan for every
  execution (`plan_cache_mode = force_generic_plan`, no parallel workers; the generic plan
  hides the price index, `price + 0`). The app cannot send this one (migration 0007: the keys
  are what PostgreSQL's `upper()` and `hashtext()` make of the term); its own statement, kept,
  has PostgreSQL fold the keys into the plan once. Since 2026-12-07 (the app keeping its
  search's plan), the two differ mostly in the plan PostgreSQL picks.
- `PUT /bare/products/<id>` with `Authorization: Token ...` and `{"price": "...",
  "stock_level": n}`: the token query of `inventory_project/authentication.py` (a row is
  enough: no permission or active-user check), `services.product_update` (the UPDATE, and the
  cache's invalidation and fence after it), the answer from `_represent`, and the write-through
  of `fast_path.keep_as_detail`. Left out: DRF's authenticator and permission classes, the input
  serializer and its checks, the throttle, the renderer, and every header but Content-Type and
  ETag. What this reaches is about the most a write can reach that keeps the cache's guarantees.

None of these paths is part of the app, and none is served anywhere but by the benchmark.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from datetime import UTC
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import orjson
import psycopg
from django.core import signals
from django.db import connection

from inventory_project.wsgi import application as app  # sets Django up: first

# isort: split
from inventory_project import authentication
from products import cache, selectors, services
from products.api import fast_path
from products.api.serializers import _represent
from products.models import Product

LIMIT = 20
KEPT_FILTERS = selectors.ProductFilters(
    name="steel", min_price=Decimal("100"), max_price=Decimal("200")
)
PUT_PREFIX = "/bare/products/"
_local = threading.local()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/bare/search":
        params = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        filters = selectors.ProductFilters(
            name=params["name"],
            min_price=Decimal(params["min_price"]),
            max_price=Decimal(params["max_price"]),
        )
        signals.request_started.send(sender=None, environ=environ)  # pool checkout and return
        try:
            page = selectors.product_search(filters=filters, page=1, limit=LIMIT)
            count, products = page.count, page.products
        finally:
            signals.request_finished.send(sender=None)
    elif path == "/bare/search-kept":
        count, products = _kept_search()
    elif path.startswith(PUT_PREFIX) and environ["REQUEST_METHOD"] == "PUT":
        return _put(environ, start_response, int(path.removeprefix(PUT_PREFIX)))
    else:
        return app(environ, start_response)
    body = orjson.dumps(
        {
            "count": count,
            "page": 1,
            "limit": LIMIT,
            "total_pages": max(1, -(-count // LIMIT)),
            "results": [_represent(product, UTC) for product in products],
        }
    )
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _put(
    environ: dict[str, Any], start_response: Callable[..., Any], product_id: int
) -> Iterable[bytes]:
    token = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Token ")
    data = orjson.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
    signals.request_started.send(sender=None, environ=environ)  # pool checkout and return
    try:
        with connection.cursor() as cursor:
            cursor.execute(authentication._sql(), [token])
            known = cursor.fetchone() is not None
        if known:
            product = services.product_update(
                product_id=product_id,
                price=Decimal(data["price"]),
                stock_level=int(data["stock_level"]),
            )
    finally:
        signals.request_finished.send(sender=None)
    if not known:
        start_response("401 Unauthorized", [("Content-Type", "application/json")])
        return [b'{"detail":"Invalid token."}']
    body = orjson.dumps(_represent(product, UTC))
    entry = cache.Entry(
        headers={"Content-Type": "application/json", "ETag": product.etag}, body=body
    )
    fast_path.keep_as_detail(product_id, entry)
    start_response("200 OK", list(entry.headers.items()))
    return [body]


def _kept_search() -> tuple[int, list[Product]]:
    database = getattr(_local, "database", None)
    if database is None:
        database = _local.database = _kept_connection()
    rows = database.execute(_local.sql, _local.params, prepare=True).fetchall()
    count = int(rows[0][0])
    products = selectors._from_rows(row[1:] for row in rows)
    return count, [product for product in products if product.pk is not None]


def _kept_connection() -> psycopg.Connection[Any]:
    """A connection of this thread's own, with the bench search's keys computed once."""
    # The bench's database, as the server's environment names it.
    database = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, prepare_threshold=0)
    database.execute("SET plan_cache_mode = force_generic_plan")
    database.execute("SET max_parallel_workers_per_gather = 0")
    # The keys of each branch of the selector's condition (`_name_key_condition`), computed once.
    labels = selectors._price_labels(KEPT_FILTERS.min_price, KEPT_FILTERS.max_price)
    assert labels is not None
    branches = selectors._paired_branches(labels)
    assert branches is not None
    keys: list[list[int]] = []
    for paired, finer in branches:
        row = database.execute(
            "SELECT products_piece_keys(%s, %s) || products_price_keys(%s::text[])",
            [KEPT_FILTERS.name, paired, finer],
            prepare=False,
        ).fetchone()
        assert row is not None
        keys.append(list(row[0]))
    condition = " OR ".join(["products_search_pieces(name, price) @> %s::int[]"] * len(keys))
    kept_where = (
        f"UPPER(name::text) LIKE UPPER(%s) AND ({condition})"
        " AND price + 0 >= %s AND price + 0 <= %s"
    )
    _local.sql = selectors._COUNT_AND_PAGE_SQL.format(where=kept_where)
    _local.params = [
        f"%{KEPT_FILTERS.name}%",
        *keys,
        KEPT_FILTERS.min_price,
        KEPT_FILTERS.max_price,
        selectors.SEARCH_IDS_MAX + 1,
        1,
        LIMIT,
    ]
    return database
