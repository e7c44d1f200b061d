"""The WSGI fast path for product updates: the same answers as the DRF view, or the view itself.

Each test sends raw WSGI requests to `ProductUpdateApp` wrapped around Django's own WSGI
handler, and counts which requests reach Django. Writes are committed for real
(`transaction=True`): invalidation runs after commit, and the fast path returns its database
connection the way Django's request cycle does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import (
    DataError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    connection,
)
from django.test import override_settings
from rest_framework.authtoken.models import Token

from products import services
from products.api.fast_path import CachedReadsApp
from products.api.fast_writes import ProductUpdateApp
from products.api.serializers import ProductOutputSerializer
from products.models import Product
from tests.products.api.wsgi_client import CountingDjango, send
from tests.products.conftest import ProductFactory, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_cache_state")]


@pytest.fixture
def stack() -> tuple[CachedReadsApp, CountingDjango]:
    django = CountingDjango()
    return CachedReadsApp(ProductUpdateApp(django)), django


@pytest.fixture
def token() -> str:
    user = make_user("clerk", "change_product")
    return Token.objects.create(user=user).key


def put(
    app: Any,
    product: Product,
    token: str,
    body: Any,
    *,
    without: Collection[str] = (),
    **environ: str,
) -> Any:
    return send(
        app,
        "PUT",
        f"/api/products/{product.pk}",
        body,
        without=without,
        HTTP_AUTHORIZATION=f"Token {token}",
        **environ,
    )


def test_a_plain_token_put_is_answered_without_django(stack, token) -> None:
    app, django = stack
    product = ProductFactory(price=Decimal("1.00"), stock_level=1)
    status, headers, content = put(app, product, token, {"price": "12.50", "stock_level": 7})
    product.refresh_from_db()
    assert (status, django.calls) == (200, 0)
    assert (product.price, product.stock_level, product.version) == (Decimal("12.50"), 7, 2)
    assert json.loads(content)["stock_level"] == 7
    assert headers["ETag"] == product.etag


def test_it_answers_what_the_view_answers(stack, token) -> None:
    app, django = stack
    product = ProductFactory()
    fast = put(app, product, token, {"price": "3.00", "stock_level": 4})
    with override_settings(PRODUCT_FAST_WRITES=False):
        slow = put(app, product, token, {"price": "3.00", "stock_level": 4})
    assert django.calls == 1
    assert (fast[0], slow[0]) == (200, 200)
    fast_body, slow_body = json.loads(fast[2]), json.loads(slow[2])
    # Only what the second write changed differs: the version, and the time it was written.
    assert slow_body["version"] == fast_body["version"] + 1
    for changed in ("version", "updated_at"):
        fast_body.pop(changed), slow_body.pop(changed)
    assert fast_body == slow_body
    assert set(fast[1]) == set(slow[1])
    for name in set(fast[1]) - {"ETag", "Content-Length"}:
        assert fast[1][name] == slow[1][name], name


@pytest.mark.parametrize(
    ("body", "environ"),
    [
        (None, {"CONTENT_TYPE": "application/json; charset=utf-8"}),
        (None, {"CONTENT_TYPE": "application/json;charset=UTF-8"}),
        (None, {"HTTP_ACCEPT": "application/json"}),
        (None, {"HTTP_ACCEPT": " */* "}),
        (b'{"price": "12.50", "stock_level": 7}'.ljust(4096), {}),
        (None, {"HTTP_COOKIE": f"theme=dark; csrftoken={'a' * 32}"}),
    ],
    ids=[
        "charset",
        "charset-without-space",
        "accept-json",
        "accept-any",
        "body-of-4-kib",
        "cookies-django-leaves-alone",
    ],
)
def test_every_shape_it_takes_is_answered_without_django(stack, token, body, environ) -> None:
    app, django = stack
    product = ProductFactory(price=Decimal("1.00"), stock_level=1)
    status, _, _ = put(app, product, token, body or {"price": "12.50", "stock_level": 7}, **environ)
    product.refresh_from_db()
    assert (status, django.calls) == (200, 0)
    assert (product.price, product.stock_level) == (Decimal("12.50"), 7)


@override_settings(SECURE_SSL_REDIRECT=True)
def test_with_ssl_redirect_on_an_https_write_is_still_answered_here(stack, token) -> None:
    """Only the plain-HTTP requests that Django redirects are left to it."""
    app, django = stack
    product = ProductFactory(price=Decimal("1.00"), stock_level=1)
    body = {"price": "12.50", "stock_level": 7}
    status, _, _ = put(app, product, token, body, **{"wsgi.url_scheme": "https"})
    product.refresh_from_db()
    assert (status, django.calls, product.stock_level) == (200, 0, 7)


def test_a_patch_sets_only_the_fields_it_names(stack, token) -> None:
    app, django = stack
    product = ProductFactory(price=Decimal("5.00"), stock_level=3)
    status, _, _ = send(
        app,
        "PATCH",
        f"/api/products/{product.pk}",
        {"stock_level": 9},
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    product.refresh_from_db()
    assert (status, django.calls) == (200, 0)
    assert (product.price, product.stock_level) == (Decimal("5.00"), 9)


def test_json_numbers_are_read_exactly_not_as_floats(stack, token) -> None:
    app, django = stack
    product = ProductFactory(price=Decimal("5.00"), stock_level=3)
    body = b'{"price": 19.990, "stock_level": 1e3}'
    status, _, content = put(app, product, token, body)
    assert (status, django.calls) == (200, 0)
    assert (json.loads(content)["price"], json.loads(content)["stock_level"]) == ("19.99", 1000)


def test_the_next_read_sees_the_write(stack, token) -> None:
    app, django = stack
    product = ProductFactory(stock_level=1)
    send(app, "GET", f"/api/products/{product.pk}")  # cached
    put(app, product, token, {"price": "9.99", "stock_level": 2})
    calls = django.calls
    status, _, content = send(app, "GET", f"/api/products/{product.pk}")
    assert (status, json.loads(content)["stock_level"]) == (200, 2)
    assert django.calls == calls  # answered by the write's own entry, not PostgreSQL


def test_it_gives_its_database_connection_back(stack, token) -> None:
    app, _ = stack
    product = ProductFactory()
    put(app, product, token, {"price": "9.99", "stock_level": 2})
    assert connection.connection is None


@pytest.mark.parametrize(
    ("body", "environ", "code"),
    [
        (b"{not json", {}, 400),
        ({"price": "-1", "stock_level": 2}, {}, 400),
        ({"price": "1.00"}, {}, 400),  # PUT needs both
        ({"price": "1.00", "stock_level": 2, "name": "x"}, {}, 400),
        ({"price": "1.00", "stock_level": 2}, {"HTTP_AUTHORIZATION": "Token wrong"}, 401),
        ({"price": "1.00", "stock_level": 2}, {"HTTP_IF_MATCH": '"1-999"'}, 412),
        ({"price": "1.00", "stock_level": 2}, {"HTTP_IF_NONE_MATCH": "*"}, 412),
        (
            {"price": "1.00", "stock_level": 2},
            {"HTTP_IF_UNMODIFIED_SINCE": "Sat, 01 Jan 2000 00:00:00 GMT"},
            200,
        ),
        ({"price": "1.00", "stock_level": 2}, {"HTTP_ORIGIN": "http://testserver"}, 200),
        ({"price": "1.00", "stock_level": 2}, {"HTTP_ACCEPT": "text/html"}, 200),
        ({"price": "1.00", "stock_level": 2}, {"QUERY_STRING": "format=json"}, 200),
        ({"price": "1.00", "stock_level": 2}, {"HTTP_COOKIE": "sessionid=abc"}, 200),
        ([1, 2], {}, 400),
        ({"price": "1.00", "stock_level": 2}, {"HTTP_ACCEPT": ""}, 406),
        ('{"price": "1.00", "stock_level": 2}'.encode("utf-16"), {}, 400),
        (b'\xef\xbb\xbf{"price": "1.00", "stock_level": 2}', {}, 400),
        (b"[" * 1100 + b"]" * 1100, {}, 400),
        (b'{"price": "1.00", "stock_level": 2, "csrfmiddlewaretoken": NaN}', {}, 400),
        (b'{"price": 1e-400, "stock_level": 2}', {}, 400),
        (b'{"price": "1.00", "stock_level": 7.0000000000000001}', {}, 400),
        (b'{"price": "1.00", "stock_level": 2, "\\ud800": 1}', {}, 400),
        (b'{"price": "1.00", "stock_level": 2, "price": "9.00"}', {}, 400),
        ({"price": "1.00", "stock_level": 2}, {"HTTP_HOST": "evil.example"}, 400),
        (b'{"price": "1.00", "stock_level": 2}' + b" " * 4096, {}, 200),
        (b'{"price": "1.00", "stock_level": 2}'.ljust(4097), {}, 200),
        ({"price": "1.00", "stock_level": 2}, {"CONTENT_LENGTH": "35x"}, 400),
        ({"price": "1.00", "stock_level": 2}, {"CONTENT_TYPE": "text/plain"}, 415),
    ],
    ids=[
        "bad-json",
        "negative-price",
        "missing-field",
        "unknown-field",
        "bad-token",
        "if-match",
        "if-none-match",
        "if-unmodified-since",
        "origin",
        "browsable-api",
        "query-string",
        "session-cookie",
        "not-an-object",
        "empty-accept",
        "utf-16",
        "byte-order-mark",
        "nested-too-deeply",
        "nan-is-not-json",
        "price-underflow",
        "fraction-of-a-stock-level",
        "lone-surrogate-key",
        "a-name-given-twice",
        "host-not-allowed",
        "body-over-4-kib",
        "body-of-4-kib-and-a-byte",
        "content-length-not-a-number",
        "json-sent-as-text",
    ],
)
def test_everything_else_is_answered_by_the_view(stack, token, body, environ, code) -> None:
    app, django = stack
    product = ProductFactory(price=Decimal("5.00"), stock_level=3)
    environ = {"HTTP_AUTHORIZATION": f"Token {token}", **environ}
    status, _, _ = send(app, "PUT", f"/api/products/{product.pk}", body, **environ)
    assert (status, django.calls) == (code, 1)
    product.refresh_from_db()
    if code != 200:
        assert (product.price, product.stock_level, product.version) == (Decimal("5.00"), 3, 1)


@pytest.mark.parametrize(
    ("settings_", "environ", "code"),
    [
        ({"SECURE_SSL_REDIRECT": True}, {}, 301),
        ({"PREPEND_WWW": True}, {}, 301),
        ({"DISALLOWED_USER_AGENTS": [re.compile("BadBot")]}, {"HTTP_USER_AGENT": "BadBot"}, 403),
    ],
    ids=["https-redirect", "prepend-www", "disallowed-user-agent"],
)
def test_a_write_django_redirects_or_refuses_is_not_made(token, settings_, environ, code) -> None:
    """Django's middlewares answer these before the view: the fast path must not write."""
    product = ProductFactory(price=Decimal("5.00"), stock_level=3)
    with override_settings(**settings_):
        # Built here: Django's middlewares read some settings once, as they are built.
        django = CountingDjango()
        app = CachedReadsApp(ProductUpdateApp(django))
        status, _, _ = put(app, product, token, {"price": "1.00", "stock_level": 2}, **environ)
    assert (status, django.calls) == (code, 1)
    product.refresh_from_db()
    assert (product.price, product.stock_level, product.version) == (Decimal("5.00"), 3, 1)


@pytest.mark.parametrize(("method", "code"), [("DELETE", 204), ("POST", 405)])
def test_another_method_with_a_json_body_is_not_taken_for_an_update(
    stack, method: str, code: int
) -> None:
    """A body a PUT would take, sent by a user who may also add and delete products: the view
    deletes the product, or refuses the method; this path must not update it."""
    app, django = stack
    product = ProductFactory(price=Decimal("5.00"), stock_level=3)
    user = make_user("manager", "add_product", "change_product", "delete_product")
    key = Token.objects.create(user=user).key
    body = {"price": "1.00", "stock_level": 2}
    status, _, _ = send(
        app, method, f"/api/products/{product.pk}", body, HTTP_AUTHORIZATION=f"Token {key}"
    )
    assert (status, django.calls) == (code, 1)
    left = Product.objects.filter(pk=product.pk).values_list("price", "stock_level").first()
    assert left == (None if method == "DELETE" else (Decimal("5.00"), 3))


def test_a_write_without_a_content_length_is_answered_by_the_view(stack, token) -> None:
    """PEP 3333 lets a server leave CONTENT_LENGTH out: Django then reads no body."""
    app, django = stack
    product = ProductFactory(price=Decimal("5.00"), stock_level=3)
    body = {"price": "1.00", "stock_level": 2}
    status, _, _ = put(app, product, token, body, without=["CONTENT_LENGTH"])
    assert (status, django.calls) == (400, 1)
    product.refresh_from_db()
    assert (product.price, product.stock_level) == (Decimal("5.00"), 3)


def test_a_user_without_the_permission_gets_the_views_403(stack) -> None:
    app, django = stack
    product = ProductFactory()
    key = Token.objects.create(user=make_user("reader")).key
    status, _, _ = put(app, product, key, {"price": "1.00", "stock_level": 2})
    assert (status, django.calls) == (403, 1)


def test_an_unknown_product_gets_the_views_404(stack, token) -> None:
    app, django = stack
    gone = ProductFactory()
    Product.objects.filter(pk=gone.pk).delete()
    status, _, content = put(app, gone, token, {"price": "1.00", "stock_level": 2})
    assert (status, django.calls) == (404, 1)
    assert json.loads(content)["error"]["code"] == "not_found"


def test_switched_off_every_write_goes_to_the_view(stack, token) -> None:
    app, django = stack
    product = ProductFactory()
    with override_settings(PRODUCT_FAST_WRITES=False):
        status, _, _ = put(app, product, token, {"price": "1.00", "stock_level": 2})
    assert (status, django.calls) == (200, 1)


def test_answered_writes_count_once_against_the_write_limit(stack, token) -> None:
    app, django = stack
    product = ProductFactory()
    with override_settings(RATELIMIT_WRITES="2/m"):
        codes = [
            put(app, product, token, {"price": "1.00", "stock_level": n})[0] for n in (1, 2, 3)
        ]
    assert codes == [200, 200, 429]
    assert django.calls == 1  # only the third, which the view refused


def test_a_write_handed_on_after_it_was_counted_is_counted_once(stack, token) -> None:
    """An unknown product is found only by the UPDATE, after the throttle: the view, which
    answers the 404, must not count that request again."""
    app, django = stack
    gone, product = ProductFactory(), ProductFactory()
    Product.objects.filter(pk=gone.pk).delete()
    with override_settings(RATELIMIT_WRITES="2/m"):
        codes = [
            put(app, target, token, {"price": "1.00", "stock_level": 2})[0]
            for target in (gone, product, product)
        ]
    assert codes == [404, 200, 429]
    assert django.calls == 2  # the 404 and the 429


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("server closed the connection unexpectedly"),
        InterfaceError("connection already closed"),
    ],
    ids=["operational-error", "interface-error"],
)
def test_a_connection_lost_during_the_update_is_a_503_not_a_second_write(
    stack, token, monkeypatch, caplog, error: Exception
) -> None:
    """The UPDATE may have committed: sending the request on to the view would write it twice.
    The outage is logged, as the view logs it: the 503s alone would not tell."""
    app, django = stack
    product = ProductFactory(stock_level=1)
    update = services.product_update

    def committed_then_lost(**kwargs):
        update(**kwargs)
        raise error

    monkeypatch.setattr(services, "product_update", committed_then_lost)
    status, headers, content = put(app, product, token, {"price": "1.00", "stock_level": 2})
    product.refresh_from_db()
    assert (status, django.calls, product.version) == (503, 0, 2)
    assert json.loads(content)["error"]["code"] == "service_unavailable"
    assert (headers["Content-Type"], headers["Retry-After"]) == ("application/json", "5")
    (record,) = [r for r in caplog.records if r.name == "products.api.fast_writes"]
    assert record.getMessage() == f"database unavailable: {type(error).__name__}: {error}"


def test_a_failure_after_the_commit_is_a_json_500_not_a_second_write(
    stack, token, monkeypatch, caplog
) -> None:
    """Falling through to the view would write again; the server's bare 500 is not JSON. The
    failure is logged with its traceback, as Django logs a view's."""
    app, django = stack
    product = ProductFactory(stock_level=1)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the renderer broke")

    monkeypatch.setattr(ProductOutputSerializer, "data", property(broken))
    status, headers, content = put(app, product, token, {"price": "1.00", "stock_level": 2})
    product.refresh_from_db()
    assert (status, django.calls, product.version) == (500, 0, 2)
    assert json.loads(content)["error"]["code"] == "server_error"
    assert headers["Content-Type"] == "application/json"
    (record,) = [r for r in caplog.records if r.name == "products.api.fast_writes"]
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "the renderer broke"


@pytest.mark.parametrize(
    ("refusal", "status", "code"),
    [
        (ValidationError({"price": ["Must be at least 0."]}), 400, "invalid"),
        (IntegrityError("new row violates check constraint"), 400, "invalid"),
        (DataError("numeric field overflow"), 400, "invalid"),
        # A trigger's plan kept from before a migration changed `version` to bigint (h65):
        # raised out of the fast path, it got gunicorn's bare 500.
        (ProgrammingError("type of parameter 15 (bigint) does not match"), 500, "server_error"),
        (NotSupportedError("cached plan must not change result type"), 500, "server_error"),
    ],
    ids=["validation-error", "integrity-error", "data-error", "programming", "not-supported"],
)
def test_a_write_refused_with_nothing_committed_is_answered_by_the_view(
    stack, token, monkeypatch, refusal: Exception, status: int, code: str
) -> None:
    """Nothing was committed (PostgreSQL answered the one statement with an error): the view
    answers, with what its exception handler gives, in JSON."""
    app, django = stack
    product = ProductFactory(stock_level=1)

    def refused(**kwargs: Any) -> Any:
        raise refusal

    monkeypatch.setattr(services, "product_update", refused)
    answer, headers, content = put(app, product, token, {"price": "1.00", "stock_level": 2})
    assert (answer, django.calls) == (status, 1)
    assert (headers["Content-Type"], json.loads(content)["error"]["code"]) == (
        "application/json",
        code,
    )
