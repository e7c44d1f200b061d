"""The search keys (migrations 0005, 0007) only narrow a search: every result is what LIKE and
the price bounds alone would return, whatever the term and the range."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal

import pytest
from django.db import connection

from products import selectors
from products.models import Product
from tests.products.conftest import ProductFactory

NAMES = [
    "Steel bar",
    "STAINLESS STEEL PIPE",
    "steelworks clamp",
    "Stee l gap",
    "Heavy-duty Rubber Hammer 0000002",
    "Crème brûlée torch",
    "ÉCROU acier",
    "50% off valve_x",
    "A\\B slash",
    "ab",
    "Tee",
]
PRICES = [
    "0.00", "0.99", "1.00", "9.99", "10.00", "99.99", "100.00", "100.01", "150.50", "199.99",
    "200.00", "200.01", "999.99", "1000.00", "12345.67", "100000.00", "250000.00",
]  # fmt: skip
TERMS = ["steel", "STEEL", "tee", "eel", "stee", "l g", "-duty", "0000002", "brûl", "ÉCROU", "crou"]
TERMS += ["50%", "e_x", "a\\b", "ab", "b", "", "zzz"]
BOUNDS = [None, "0", "1", "9.99", "100", "100.00", "150", "199.99", "200", "200.005", "1000"]
BOUNDS += ["99999.99", "100000", "1000000", "9999999999.99"]


def by_hand(term: str | None, low: Decimal | None, high: Decimal | None) -> list[int]:
    return sorted(
        p.pk
        for p in Product.objects.all()
        if (term is None or term.upper() in p.name.upper())
        and (low is None or p.price >= low)
        and (high is None or p.price <= high)
    )


@pytest.mark.django_db
def test_searches_find_exactly_what_like_and_the_bounds_find() -> None:
    for i, name in enumerate(NAMES):
        for price in PRICES[i % 3 :: 3]:
            ProductFactory(name=name, price=Decimal(price))
    rng = random.Random(5)
    cases = [(term, rng.choice(BOUNDS), rng.choice(BOUNDS)) for term in TERMS for _ in range(6)]
    cases += [("steel", "100", "200"), ("steel", "199.99", "200"), ("tee", "0", "99999.99")]
    for term, low, high in cases:
        filters = selectors.ProductFilters(
            name=term,
            min_price=Decimal(low) if low is not None else None,
            max_price=Decimal(high) if high is not None else None,
        )
        page = selectors.product_search(filters=filters, page=1, limit=500)
        expected = by_hand(term, filters.min_price, filters.max_price)
        assert [p.pk for p in page.products] == expected, (term, low, high)
        assert page.count == len(expected), (term, low, high)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (0, 0),
        (100, 200),
        (0, 5398),
        (1234, 5678),
        (1, 99_999),
        (123, 987_654),
        (0, 10**9),
        (5, 4_999_995),
    ],
)
def test_price_labels_tile_the_range_and_no_more_than_widened(low: int, high: int) -> None:
    labels = selectors._price_labels(Decimal(low), Decimal(high) + Decimal("0.99"))
    if labels is None:
        assert high - low > 10**5  # only ranges too wide even for the coarsest buckets
        return
    assert len(labels) <= selectors.PRICE_LABELS_MAX
    covered: list[tuple[int, int]] = []
    for label in labels:
        level, bucket = (int(part) for part in label.removeprefix("p").split(":"))
        assert 0 <= level < selectors.PRICE_LEVELS
        covered.append((bucket * 10**level, (bucket + 1) * 10**level - 1))
    covered.sort()
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(covered))  # no gaps
    # Exactly the range widened to whole units of the finest bucket used: never less, no more.
    unit = min(last - first + 1 for first, last in covered)
    assert covered[0][0] == low // unit * unit
    assert covered[-1][1] == (high // unit + 1) * unit - 1


def test_the_fewest_buckets_tile_an_aligned_range() -> None:
    assert selectors._price_labels(Decimal("100"), Decimal("200")) == ["p2:1", "p0:200"]
    assert selectors._price_labels(Decimal("0"), Decimal("999.99")) == ["p3:0"]
    assert selectors._price_labels(Decimal("5"), Decimal("4")) is None


def test_each_bucket_is_searched_within_its_100_dollar_bucket() -> None:
    assert selectors._paired_branches(["p2:1", "p0:200"]) == [("p2:1", []), ("p2:2", ["p0:200"])]
    assert selectors._paired_branches(["p1:15", "p0:160"]) == [
        ("p2:1", ["p1:15"]),
        ("p2:1", ["p0:160"]),
    ]
    assert selectors._paired_branches(["p3:4"]) == [(f"p2:{n}", []) for n in range(40, 50)]
    # More branches than PRICE_LABELS_MAX: the unpaired keys serve the range.
    assert selectors._paired_branches(["p3:0", "p3:1", "p3:2"]) is None
    assert selectors._paired_branches(["p4:0"]) is None


@pytest.mark.django_db
def test_the_database_and_the_selectors_name_price_buckets_alike() -> None:
    """A product's keys hold the hash of its price's label at each level, as queries build it."""
    product = ProductFactory(name="Oak", price=Decimal("1234.56"))
    assert selectors._price_labels(product.price, product.price) == ["p0:1234"]
    sql = (
        "SELECT products_search_pieces(name, price) @> products_price_keys(%s::text[]),"
        " products_search_pieces(name, price) @> products_piece_keys('oak', %s)"
        " FROM products_product WHERE id = %s"
    )
    with connection.cursor() as cursor:
        for level in range(selectors.PRICE_LEVELS):
            label = f"p{level}:{1234 // 10**level}"
            cursor.execute(sql, [[label], label, product.pk])
            # The name's pieces are paired with the 100-dollar bucket only.
            assert cursor.fetchone() == (True, level == selectors.PAIRED_LEVEL), label
        cursor.execute(sql, [["p0:1235"], "p2:13", product.pk])
        assert cursor.fetchone() == (False, False)


@pytest.mark.django_db
@pytest.mark.parametrize("labels", [[], ["p0:200"], ["p2:1", "p0:200", "p2:1"], ["é"]])
def test_price_keys_are_the_hash_of_each_label_in_order(labels: list[str]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT products_price_keys(%s::text[]),"
            " ARRAY(SELECT hashtext(label) FROM unnest(%s::text[]) AS label)",
            [labels, labels],
        )
        keys, expected = cursor.fetchone()
    assert keys == expected
    assert len(keys) == len(labels)


@pytest.mark.django_db
def test_the_index_expression_needs_no_search_path() -> None:
    """Autovacuum's ANALYZE, a dump's restore and logical replication evaluate the index
    expression with only pg_catalog on the search path: the key functions must still resolve."""
    product = ProductFactory(name="Oak shelf", price=Decimal("12.00"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        schema = connection.ops.quote_name(cursor.fetchone()[0])
        table = f"{schema}.{connection.ops.quote_name(Product._meta.db_table)}"
        cursor.execute("SET LOCAL search_path = ''")
        cursor.execute(f"UPDATE {table} SET name = 'Steel shelf' WHERE id = %s", [product.pk])
        cursor.execute(f"ANALYZE {table}")
        cursor.execute("RESET search_path")
    filters = selectors.ProductFilters(name="steel", min_price=None, max_price=None)
    assert [p.pk for p in selectors.product_search(filters=filters, page=1, limit=10).products] == [
        product.pk
    ]
