"""Generated requests answered alike by the WSGI fast paths and by Django alone.

Each request goes through the application's product layers (`stack`) with the cache and fast
paths on, and again with them off (`DJANGO_ALONE`), on the same rows; status, headers and bytes
must match. What differs between any two answers is left out: the browsable API's CSRF tokens
and its cookie's expiry. A review (h67) ran fuller generators over 3,500 reads and 3,000 writes.
"""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token

from products import cache
from products.models import Product
from tests.products.api.wsgi_client import send
from tests.products.conftest import ProductFactory, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_cache_state")]

DJANGO_ALONE = {
    "PRODUCT_CACHE_ENABLED": False,
    "PRODUCT_FAST_READS": False,
    "PRODUCT_FAST_WRITES": False,
}
# Examples share the test's database rows, cache and rate-limit counters.
GENERATED = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
_clients = itertools.count(1)


def a_new_client() -> str:
    """An address of its own for each example: the rate limits stay out of the comparison."""
    n = next(_clients)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


_CSRF = re.compile(rb"[A-Za-z0-9]{32,64}")


def comparable(answer: tuple[int, dict[str, str], bytes]) -> Any:
    """The answer without the browsable API's CSRF tokens and its cookie's expiry."""
    status, headers, content = answer
    headers = dict(headers)
    if "Set-Cookie" in headers:
        cookie = re.sub(r"csrftoken=[A-Za-z0-9]+", "csrftoken=-", headers["Set-Cookie"])
        headers["Set-Cookie"] = re.sub(r"expires=[^;]+", "expires=-", cookie)
    if headers.get("Content-Type", "").startswith("text/html"):
        content = _CSRF.sub(b"-", content)
    return status, headers, content


# Reads: query strings of the parameters the pages read, spelled every way a client might.
NAMES = ["page", "limit", "after_id", "name", "min_price", "max_price"]
ODD_NAMES = ["format", "utm_source", "Page", "page ", "", "pa%67e", "limit[]", "\u00e9"]
VALUES = [
    "", "1", "2", "01", " 1", "+1", "-1", "1.0", "1e3", "1E3", "NaN", "Infinity", "-Infinity",
    "99999999999999999999", "2147483648", "9223372036854775808", "100.00", "100.000", "99.99",
    ".5", "5.", "1_0", "\u0663", "\uff11", "0x10", "\u00a01", "9999999999.99", "steel", "STEEL",
    "\u00e9", "\u00c9crou", "50%", "a b", "a+b", "\x00", "%", "\U0001f600", "<",
]  # fmt: skip


@st.composite
def encoded(draw: Any, text: str) -> str:
    """Percent-encoded, or the raw bytes a server passes on (UTF-8 or Latin-1, read as Latin-1)."""
    how = draw(st.sampled_from(["quote", "utf-8", "latin-1"]))
    if how == "quote":
        return quote(text, safe="")
    return text.encode(how, "replace").decode("latin-1")


@st.composite
def query_strings(draw: Any) -> str:
    names = st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES), st.sampled_from(ODD_NAMES))
    values = st.one_of(st.sampled_from(VALUES), st.integers(-2, 30).map(str), st.text(max_size=3))
    pairs = draw(st.lists(st.tuples(names, values), max_size=4))
    return "&".join(
        name if "%" in name else draw(encoded(name)) + "=" + draw(encoded(value))
        for name, value in pairs
    )


ACCEPTS = [None] * 4 + [
    "*/*", "application/json", "text/html", "application/json; indent=4", "image/png",
    "application/*", "",
]  # fmt: skip
IF_NONE_MATCHES = [None] * 4 + ["current", "W/current", '"x", current', "*", '"x"', ""]
PAGES = ["/api/products", "/api/products/", "/api/products/search", "/api/products/search/"]


@pytest.fixture
def catalogue() -> None:
    for name, price in [
        ("Steel bar", "100.00"),
        ("STEEL pipe", "150.50"),
        ("Steel nut", "99.99"),
        ("\u00c9crou acier", "3.10"),
        ("50% valve", "12.00"),
        ("a b", "0.00"),
        ("a+b", "1000"),
    ]:
        ProductFactory(name=name, price=Decimal(price))


@override_settings(PRODUCT_CACHE_ENABLED=True)
@pytest.mark.usefixtures("catalogue")
def test_generated_reads_are_answered_as_django_answers_them(stack) -> None:
    """Each read twice through the stack (a miss the pages path loads, then a hit), once with
    the cache off (the pages path alone), once through Django alone."""
    app, _ = stack

    @GENERATED
    @given(
        path=st.sampled_from(PAGES),
        query=query_strings(),
        accept=st.sampled_from(ACCEPTS),
        if_none_match=st.sampled_from(IF_NONE_MATCHES),
    )
    def check(path: str, query: str, accept: str | None, if_none_match: str | None) -> None:
        environ = {} if accept is None else {"HTTP_ACCEPT": accept}
        if if_none_match is not None:
            with override_settings(**DJANGO_ALONE):
                _, headers, _ = send(
                    app, "GET", path, QUERY_STRING=query, REMOTE_ADDR=a_new_client()
                )
            current = headers.get("ETag", '"none"')
            environ["HTTP_IF_NONE_MATCH"] = if_none_match.replace("current", current)

        def read(**layers: bool) -> Any:
            with override_settings(**layers):
                answer = send(
                    app, "GET", path, QUERY_STRING=query, REMOTE_ADDR=a_new_client(), **environ
                )
            return comparable(answer)

        alone = read(**DJANGO_ALONE)
        assert read() == alone  # a miss, or a hit of an earlier example
        assert read() == alone  # a hit, where the page is stored
        assert read(PRODUCT_CACHE_ENABLED=False) == alone

    check()


# Writes: JSON bodies valid and not, in the shapes the write path takes and those it hands on.
PRICES = st.one_of(
    st.decimals(min_value=0, max_value=10**10, places=2).map(str),
    st.decimals(min_value=0, max_value=10**6, places=2),
    st.sampled_from(["12.50", " 12.50", "1e3", "NaN", "-1", "-0", "12.505", "1_0", ".5", 12.5]),
)
STOCK_LEVELS = st.one_of(
    st.integers(-1, 2**31), st.sampled_from([10**30, "7", 7.0, True, None, [], {}])
)
RAW_NUMBERS = ["1e3", "7.0", "7.00000000000000001", "1e-400", "1e400", "-0", "1" * 5000, "70e-1"]
OTHER_BODIES = [
    b"null", b"[]", b'"x"', b"7", b"{}", b"{", b" ", b"\xff\xfe", b'{"price": "1\xff"}',
    b'\xef\xbb\xbf{"stock_level": 3}', b'{"stock_level": 3, "stock_level": 4}',
    b'{"price": "\\ud800"}', b"[" * 2000 + b"]" * 2000, b'{"stock_level": 3}'.ljust(4097),
    '{"stock_level": 3}'.encode("utf-16"),
]  # fmt: skip


@st.composite
def bodies(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["object", "object", "object", "raw number", "other"]))
    if kind == "raw number":
        field = draw(st.sampled_from(["price", "stock_level"]))
        return f'{{"{field}": {draw(st.sampled_from(RAW_NUMBERS))}}}'.encode()
    if kind == "other":
        return draw(st.sampled_from(OTHER_BODIES))
    fields = {"price": PRICES, "stock_level": STOCK_LEVELS, "name": st.just("x"), "id": PRICES}
    names = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3, unique=True))
    return json.dumps({name: draw(fields[name]) for name in names}, default=str).encode()


CONTENT_TYPES = [None] * 4 + [
    "application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON",
    "application/json; charset=utf-16", "application/json; charset=bogus", "text/plain",
    "application/vnd.api+json", "",
]  # fmt: skip
IF_MATCHES = [None] * 6 + ["current", '"1-9-1"', "*", "garbage"]
CREATED = datetime(2026, 12, 8, 1, 2, 3, 456789, tzinfo=UTC)
WRITTEN = datetime(2026, 12, 8, 1, 2, 4, 567890, tzinfo=UTC)
# Read before each write (filling the cache, where it is on) and after it.
READS = [
    ("/api/products/1", ""),
    ("/api/products", ""),
    ("/api/products/search", "name=steel"),
    ("/api/products/search", "max_price=100"),
]


@override_settings(
    PRODUCT_CACHE_ENABLED=True, RATELIMIT_WRITES="1000000/m", RATELIMIT_READS="1000000/m"
)
def test_generated_writes_are_answered_as_django_answers_them(stack, monkeypatch) -> None:
    """Each write to a product made afresh (same id, version and times), through the stack
    and through Django alone: the same answer, the same row, and the same reads after it."""
    app, _ = stack
    token = Token.objects.create(user=make_user("clerk", "change_product")).key
    clock = [CREATED]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])

    @GENERATED
    @given(
        method=st.sampled_from(["PUT", "PATCH"]),
        path=st.sampled_from(["/api/products/1"] * 3 + ["/api/products/1/", "/api/products/2"]),
        body=bodies(),
        content_type=st.sampled_from(CONTENT_TYPES),
        accept=st.sampled_from([None, None, None, "*/*", "application/json", "text/html"]),
        if_match=st.sampled_from(IF_MATCHES),
    )
    def check(
        method: str,
        path: str,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        if_match: str | None,
    ) -> None:
        environ = {"HTTP_AUTHORIZATION": f"Token {token}"}
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type
        if accept is not None:
            environ["HTTP_ACCEPT"] = accept
        if if_match is not None:
            current = f'"1-1-{cache.REPRESENTATION}"'
            environ["HTTP_IF_MATCH"] = if_match.replace("current", current)

        def write(**layers: bool) -> Any:
            clock[0] = CREATED
            Product.objects.all().delete()
            Product.objects.create(pk=1, name="Steel bar", price=Decimal("10.00"), stock_level=5)
            # Another time than the row's: the version trigger takes the database's otherwise.
            clock[0] = WRITTEN
            with override_settings(**layers):
                for read_path, query in READS:
                    send(app, "GET", read_path, QUERY_STRING=query, REMOTE_ADDR=a_new_client())
                answer = comparable(send(app, method, path, body, **environ))
                row = Product.objects.filter(pk=1).values().first()
                reads = [
                    comparable(send(app, "GET", p, QUERY_STRING=q, REMOTE_ADDR=a_new_client()))
                    for p, q in READS
                ]
            return answer, row, reads

        assert write() == write(**DJANGO_ALONE)

    check()
