"""Reads: paging edge cases and the catalogue count."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from products import selectors
from products.models import Product
from tests.database import other_connection, prepare_threshold
from tests.products.conftest import ProductFactory


@pytest.mark.django_db
def test_count_is_exact_after_inserts_deletes_and_truncate() -> None:
    products = ProductFactory.create_batch(5)
    assert selectors.product_list(page=1, limit=20).count == 5
    Product.objects.filter(pk__in=[p.pk for p in products[:2]]).delete()
    assert selectors.product_list(page=1, limit=20).count == 3
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE products_product")
    assert selectors.product_list(page=1, limit=20).count == 0


@pytest.mark.django_db
def test_count_is_exact_after_writes_under_another_search_path() -> None:
    """Another service may write the table by its schema, with none of ours on its path."""
    ProductFactory.create_batch(2)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        schema = connection.ops.quote_name(cursor.fetchone()[0])
        table = f"{schema}.{connection.ops.quote_name(Product._meta.db_table)}"
        cursor.execute("SET LOCAL search_path = ''")
        cursor.execute(
            f"INSERT INTO {table} (name, price, stock_level, created_at, updated_at, version)"
            " SELECT 'p' || i, 1, 1, now(), now(), 1 FROM generate_series(1, 3) AS i"
        )
        cursor.execute(f"DELETE FROM {table} WHERE name = 'p1'")
        cursor.execute("RESET search_path")
    assert selectors.product_list(page=1, limit=20).count == 4


@pytest.mark.django_db
def test_deep_pages_are_exact_across_buckets_with_gaps() -> None:
    with connection.cursor() as cursor:
        # ids 1..3000 with every third one missing and a hole over a whole bucket (1024-2047)
        cursor.execute(
            "INSERT INTO products_product (id, name, price, stock_level, created_at, updated_at,"
            " version) SELECT i, 'p' || i, 1, 1, now(), now(), 1 FROM generate_series(1, 3000) i"
            " WHERE i % 3 <> 0 AND i NOT BETWEEN 1024 AND 2047"
        )
    expected = [i for i in range(1, 3001) if i % 3 and not 1024 <= i <= 2047]
    for page in (1, 2, 34, 35, 36, 70, 71):
        ids = [p.id for p in selectors.product_list(page=page, limit=10).products]
        assert ids == expected[(page - 1) * 10 : page * 10], page


@pytest.mark.django_db
def test_deep_pages_are_exact_in_every_bucket_of_a_dense_catalogue() -> None:
    """Each page starts at the first id of the bucket that holds its first row: ids 1..2500 fill
    buckets 0 to 2, and no empty bucket stands before a page's rows to hide a wrong start."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO products_product (id, name, price, stock_level, created_at, updated_at,"
            " version) SELECT i, 'p' || i, 1, 1, now(), now(), 1 FROM generate_series(1, 2500) i"
        )
    for page in (2, 103, 110, 205, 250):
        ids = [p.id for p in selectors.product_list(page=page, limit=10).products]
        assert ids == list(range((page - 1) * 10 + 1, page * 10 + 1)), page


@pytest.mark.django_db
def test_pages_and_detail_hold_what_the_orm_reads() -> None:
    """The SQL of product_get and the list pages gives the ORM's rows, every field loaded."""
    ProductFactory.create_batch(25)
    Product.objects.create(id=-7, name="negative id", price=Decimal("3.10"), stock_level=2)

    def fields(products):
        return [
            (p.id, p.name, p.price, p.stock_level, p.version, p.created_at, p.updated_at)
            for p in products
        ]

    ordered = list(Product.objects.order_by("id"))
    page_one = selectors.product_list(page=1, limit=10)
    assert fields(page_one.products) == fields(ordered[:10])
    assert page_one.products[0].id == -7
    assert not page_one.products[0]._state.adding
    assert fields(selectors.product_list(page=3, limit=10).products) == fields(ordered[20:])
    keyset = selectors.product_list_after(after_id=ordered[9].id, limit=10)
    assert fields(keyset.products) == fields(ordered[10:20])
    assert keyset.next_after_id == ordered[19].id
    assert selectors.product_list_after(after_id=ordered[19].id, limit=10).next_after_id is None
    for product in ordered[:3]:
        assert fields([selectors.product_get(product_id=product.id)]) == fields([product])


@pytest.mark.django_db
def test_a_product_id_never_changes() -> None:
    product = ProductFactory()
    with pytest.raises(IntegrityError):
        Product.objects.filter(pk=product.pk).update(id=product.pk + 1000)


@pytest.mark.django_db
def test_page_past_the_end_raises_page_out_of_range() -> None:
    ProductFactory.create_batch(2)
    with pytest.raises(selectors.PageOutOfRange):
        selectors.product_list(page=2, limit=2)


@pytest.mark.django_db
def test_a_list_page_past_the_end_is_refused_before_its_page_query() -> None:
    """No bucket holds the first row of a page past the end: read, it would be an OFFSET over
    the whole catalogue (page 2147483) only to find the page empty."""
    ProductFactory.create_batch(3)
    with CaptureQueriesContext(connection) as captured, pytest.raises(selectors.PageOutOfRange):
        selectors.product_list(page=2147483, limit=1)
    sql = [query["sql"] for query in captured.captured_queries]
    assert not [text for text in sql if "OFFSET" in text.upper()], sql


@pytest.mark.django_db
def test_product_version_is_the_products_own_not_a_neighbours() -> None:
    """The version If-Match and the cache's fences compare with: stored after a higher id."""
    ProductFactory(id=2)
    ProductFactory(id=1)
    Product.objects.filter(pk=1).update(stock_level=11)
    assert selectors.product_version(product_id=1) == 2
    assert selectors.product_version(product_id=2) == 1
    assert selectors.product_version(product_id=3) is None


@pytest.mark.django_db
def test_product_get_of_missing_id_raises_does_not_exist() -> None:
    with pytest.raises(Product.DoesNotExist):
        selectors.product_get(product_id=1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "ids_max", [1000, 4, 3, 2], ids=["ids-in-one-query", "at-the-cap", "past-it", "well-past-it"]
)
def test_search_pages_and_counts_the_same_whichever_way_it_reads(monkeypatch, ids_max) -> None:
    """Up to SEARCH_IDS_MAX matches are read as ids in one query; past it, counted apart."""
    monkeypatch.setattr(selectors, "SEARCH_IDS_MAX", ids_max)
    steel = [ProductFactory(name=f"Steel {n}", price=Decimal(n)) for n in (5, 15, 25, 35)]
    ProductFactory(name="Steel too dear", price=Decimal("500"))
    ProductFactory(name="Oak", price=Decimal("15"))
    filters = selectors.ProductFilters(name="steel", max_price=Decimal("100"))
    pages = [selectors.product_search(filters=filters, page=n, limit=3) for n in (1, 2)]
    assert [page.count for page in pages] == [4, 4]
    assert [[p.pk for p in page.products] for page in pages] == [
        [p.pk for p in steel[:3]],
        [steel[3].pk],
    ]
    with pytest.raises(selectors.PageOutOfRange):
        selectors.product_search(filters=filters, page=3, limit=3)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("ids_max", "scans_only"),
    [(1000, False), (1000, True), (2, False)],
    ids=["ids-in-one-query", "ids-in-one-query-rows-read-by-a-scan", "counted-apart"],
)
def test_search_pages_are_in_id_order_whatever_order_the_rows_are_stored_in(
    monkeypatch, ids_max, scans_only
) -> None:
    """Stored (and so scanned) from the highest id down, the matches still page by id, whether
    they are read as ids in one query or, past SEARCH_IDS_MAX, counted apart, and whichever way
    PostgreSQL reads the page's rows: through the primary key's index (in id order by itself)
    or by a scan, as it may plan it for another page or table."""
    monkeypatch.setattr(selectors, "SEARCH_IDS_MAX", ids_max)
    if scans_only:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
    for product_id in range(5, 0, -1):
        ProductFactory(id=product_id, name=f"Steel {product_id}")
    filters = selectors.ProductFilters(name="steel")
    pages = [selectors.product_search(filters=filters, page=n, limit=2) for n in (1, 2, 3)]
    assert [[p.pk for p in page.products] for page in pages] == [[1, 2], [3, 4], [5]]


@pytest.mark.django_db
@pytest.mark.parametrize("term", ["n's 100% st", "100% steel_b", "l_bar \\ '", "\\ ';--"])
def test_a_search_term_matches_its_quotes_wildcards_and_backslashes_as_written(term) -> None:
    """The values go into the statement's text (selectors._with_values): quoted there, a quote
    or a backslash stays part of the term, and LIKE's wildcards stay escaped."""
    wanted = ProductFactory(name="O'Brien's 100% steel_bar \\ ';--")
    ProductFactory(name="O'Brien's 1000 steelXbar \\ x")  # each wildcard would match here
    page = selectors.product_search(filters=selectors.ProductFilters(name=term), page=1, limit=10)
    assert [product.pk for product in page.products] == [wanted.pk]


# Names whose matches a wrong quoting would change: a backslash read as an escape under
# standard_conforming_strings off, a doubled quote read as one, a LIKE wildcard left active.
QUOTED_NAMES = ["x\\y", "xy", "x\\\\y", "a'b", "a''b", "a\\'b", "50%off", "50 off", "a_b", "aXb"]


@pytest.mark.django_db
@pytest.mark.parametrize("conforming", ["on", "off"])
@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("x\\y", ["x\\y"]),
        ("\\\\", ["x\\\\y"]),
        ("\\y", ["x\\y", "x\\\\y"]),
        ("a'b", ["a'b"]),
        ("''", ["a''b"]),
        ("\\'", ["a\\'b"]),
        ("0%o", ["50%off"]),
        ("a_b", ["a_b"]),
    ],
)
def test_a_term_matches_as_written_whatever_the_connections_standard_conforming_strings(
    conforming, term, expected
) -> None:
    """psycopg quotes the values by what the connection reports (E'...' around a backslash):
    with standard_conforming_strings off, '\\y' in a plain literal would be read as 'y'."""
    ids = {ProductFactory(name=name).pk: name for name in QUOTED_NAMES}
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('standard_conforming_strings', %s, false)", [conforming])
    try:
        assert (
            connection.connection.pgconn.parameter_status(b"standard_conforming_strings")
            == conforming.encode()
        )
        filters = selectors.ProductFilters(name=term)
        page = selectors.product_search(filters=filters, page=1, limit=20)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET standard_conforming_strings = on")
    assert sorted(ids[product.pk] for product in page.products) == sorted(expected)


ADVERSARIAL_NAMES = [
    "O'Brien's 100% steel_bar \\ ';--",
    "$1 $$ $tag$ quote",
    "%s and %(x)s and %b",
    "/* c */ -- d ; e",
    "E'\\x41' literal",
    "Straße",
    "İstanbul",
    "ΣΑΣ σας",
    "日本語の名前",
    "emoji 😀 steel",
    "zero\u200bwidth",
    "'" * 40,
    "\\" * 40,
    "😀" * 63,
]
ADVERSARIAL_TERMS = [
    *ADVERSARIAL_NAMES,
    "'",
    "\\",
    "%",
    "_",
    "%s",
    "%(x)s",
    "$$",
    "$1",
    "--",
    "/*",
    "'; DROP TABLE products_product; --",
    "\\' OR 1=1 --",
    "' OR ''='",
    "\\x41",
    "ß",
    "SS",
    "\u03c3",  # the lower case of the capital sigma
    "😀😀😀",
    "\t",
    "'" * 255,
    "\\" * 255,
    "😀" * 255,
    ("'\\%_" * 64)[:255],
]


def _found_by_postgresql(filters: selectors.ProductFilters) -> list[int]:
    """What PostgreSQL's own upper() and strpos() find for the term passed as a parameter: no
    LIKE pattern and no quoting of ours in between."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM products_product"
            " WHERE strpos(upper(name::text), upper(%s::text)) > 0"
            " AND price BETWEEN %s::numeric AND %s::numeric ORDER BY id",
            [filters.name, filters.min_price or 0, filters.max_price or Decimal("1e20")],
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
@pytest.mark.parametrize("term", ADVERSARIAL_TERMS)
def test_a_search_finds_what_postgresql_finds_for_the_term_as_written(term) -> None:
    """Quotes, backslashes, placeholders, dollar quotes, comments, case folding and 255 wide
    characters: the statement with its values in its text matches what a parameter did."""
    prices = [Decimal("0.50"), Decimal("150.00"), Decimal("9999999999.99")]
    for name in ADVERSARIAL_NAMES:
        for price in prices:
            ProductFactory(name=name, price=price)
    for low, high in [(None, None), (Decimal("100"), Decimal("200")), (Decimal("0"), None)]:
        filters = selectors.ProductFilters(name=term, min_price=low, max_price=high)
        page = selectors.product_search(filters=filters, page=1, limit=100)
        expected = _found_by_postgresql(filters)
        assert ([p.pk for p in page.products], page.count) == (expected, len(expected)), filters


@pytest.mark.django_db
def test_distinct_searches_stay_within_psycopgs_bound_on_prepared_statements() -> None:
    """Each search repeated past the prepare threshold is a statement of its own on the
    server: psycopg deallocates the least recently used past prepared_max (in a transaction
    too), and a search whose statement was deallocated is prepared again and still answers."""
    threshold = prepare_threshold()
    raw = connection.connection
    prepared_max = raw.prepared_max
    raw.prepared_max = 10  # psycopg's default is 100: the same path, in a tenth of the time
    wanted = ProductFactory(name="Steel bar 0", price=Decimal("150"))
    try:
        with transaction.atomic():
            for n in range(40):
                filters = selectors.ProductFilters(
                    name=f"Steel bar {n}", min_price=Decimal("100"), max_price=Decimal(200 + n)
                )
                for _ in range(threshold + 1):
                    selectors.product_search(filters=filters, page=1, limit=20)
            with connection.cursor() as cursor:
                cursor.execute("SELECT statement FROM pg_prepared_statements")
                searches = [row[0] for row in cursor.fetchall() if "LIKE" in row[0]]
            assert 0 < len(searches) <= 11, len(searches)
            assert not [sql for sql in searches if "Steel bar 0%" in sql]  # deallocated
            first = selectors.ProductFilters(
                name="Steel bar 0", min_price=Decimal("100"), max_price=Decimal("200")
            )
            for _ in range(threshold + 1):
                page = selectors.product_search(filters=first, page=1, limit=20)
                assert [p.pk for p in page.products] == [wanted.pk]
    finally:
        raw.prepared_max = prepared_max


@pytest.mark.django_db(transaction=True)
def test_a_search_prepared_before_a_column_is_added_elsewhere_still_answers() -> None:
    """A migration adding a column runs on another connection while a web connection keeps the
    search prepared: its explicit column list keeps its result type ("cached plan must not
    change result type" is what `p.*` would give on every later execution)."""
    wanted = ProductFactory(name="Steel bar", price=Decimal("150"))
    filters = selectors.ProductFilters(
        name="steel", min_price=Decimal("100"), max_price=Decimal("200")
    )
    connection.ensure_connection()
    for _ in range((connection.connection.prepare_threshold or 0) + 1):
        selectors.product_search(filters=filters, page=1, limit=20)
    with other_connection() as other:
        other.execute("ALTER TABLE products_product ADD COLUMN added_elsewhere integer")
        try:
            page = selectors.product_search(filters=filters, page=1, limit=20)
        finally:
            other.execute("ALTER TABLE products_product DROP COLUMN added_elsewhere")
    assert [p.pk for p in page.products] == [wanted.pk]


@pytest.mark.django_db
def test_a_selective_search_is_counted_and_paged_in_one_statement() -> None:
    ProductFactory.create_batch(3, name="Steel bar")
    filters = selectors.ProductFilters(name="steel")
    with CaptureQueriesContext(connection) as captured:
        page = selectors.product_search(filters=filters, page=1, limit=2)
    assert page.count == 3
    assert len(page.products) == 2
    assert len(captured.captured_queries) == 1, captured.captured_queries


@pytest.mark.django_db
def test_a_search_page_past_the_end_is_refused_before_its_page_query(monkeypatch) -> None:
    """Past SEARCH_IDS_MAX matches, page 2147483 ran its OFFSET query (a full scan of the
    matches: 150 ms on 300,000 rows) before it found the page empty."""
    monkeypatch.setattr(selectors, "SEARCH_IDS_MAX", 2)
    ProductFactory.create_batch(3, name="Steel bar")
    filters = selectors.ProductFilters(name="steel")
    with CaptureQueriesContext(connection) as captured, pytest.raises(selectors.PageOutOfRange):
        selectors.product_search(filters=filters, page=2147483, limit=1)
    sql = [query["sql"] for query in captured.captured_queries]
    assert not [text for text in sql if "OFFSET" in text.upper()], sql
    assert any("COUNT(*)" in text.upper() for text in sql), sql


@pytest.mark.django_db
def test_a_keyset_search_page_names_the_next_only_while_more_match() -> None:
    steel = [ProductFactory(name=f"Steel {n}") for n in range(3)]
    ProductFactory(name="Copper wire")
    filters = selectors.ProductFilters(name="steel")
    first = selectors.product_search_after(filters=filters, after_id=0, limit=2)
    assert [p.id for p in first.products] == [steel[0].id, steel[1].id]
    assert first.next_after_id == steel[1].id
    last = selectors.product_search_after(filters=filters, after_id=steel[1].id, limit=2)
    assert ([p.id for p in last.products], last.next_after_id) == ([steel[2].id], None)


@pytest.mark.django_db
def test_keyset_search_pages_are_in_id_order_whatever_order_the_rows_are_stored_in() -> None:
    """Stored (and so scanned) from the highest id down, each page after an id holds the next
    matches by id, and names the last of them as the next page's start."""
    for product_id in range(5, 0, -1):
        ProductFactory(id=product_id, name=f"Steel {product_id}")
    filters = selectors.ProductFilters(name="steel")
    pages, after_id = [], 0
    while after_id is not None:
        page = selectors.product_search_after(filters=filters, after_id=after_id, limit=2)
        pages.append([p.pk for p in page.products])
        after_id = page.next_after_id
    assert pages == [[1, 2], [3, 4], [5]]


@pytest.mark.django_db
def test_a_keyset_page_that_takes_the_last_rows_exactly_names_no_next() -> None:
    products = ProductFactory.create_batch(4)
    page = selectors.product_list_after(after_id=products[1].id, limit=2)
    assert [p.id for p in page.products] == [products[2].id, products[3].id]
    assert page.next_after_id is None


@pytest.mark.django_db(transaction=True)
def test_a_search_on_a_connection_closed_under_the_request_takes_a_fresh_one() -> None:
    """As every other read does (inventory_project/postgresql/base.py): the values are quoted
    on the connection the search's cursor runs on, not on the closed one."""
    wanted = ProductFactory(name="Steel bar")
    connection.ensure_connection()
    connection.connection.close()
    page = selectors.product_search(
        filters=selectors.ProductFilters(name="steel"), page=1, limit=20
    )
    assert [p.pk for p in page.products] == [wanted.pk]


@pytest.mark.django_db
def test_a_term_the_database_cannot_take_is_djangos_data_error() -> None:
    """A NUL (the query serializer refuses it; other callers may not): Django's DataError, which
    the API answers with a 400, as when the term was a parameter, not psycopg's own."""
    with pytest.raises(DataError):
        selectors.product_search(filters=selectors.ProductFilters(name="a\x00b"), page=1, limit=20)
