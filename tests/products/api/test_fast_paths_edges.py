"""Edge cases where the WSGI fast paths (cache hits, pages, writes) must answer as Django does.

Each compares the whole stack with Django alone: the cache, the pages path and the write path
switched off. Found by a review that compared the two over many request variants.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from django.db import InterfaceError, OperationalError
from django.test import override_settings
from rest_framework.authtoken.models import Token

from inventory_project.authentication import TokenAuthentication
from products.api.fast_path import CachedReadsApp
from products.api.fast_reads import ProductPagesApp
from products.api.fast_writes import ProductUpdateApp
from products.models import Product
from tests.products.api.wsgi_client import CountingDjango, send
from tests.products.conftest import ProductFactory, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_cache_state")]

DJANGO_ALONE = {
    "PRODUCT_CACHE_ENABLED": False,
    "PRODUCT_FAST_READS": False,
    "PRODUCT_FAST_WRITES": False,
}
# The whole stack, the pages path (the cache off) and Django alone: a request answered alike.
PAGES_PATH = {"PRODUCT_CACHE_ENABLED": False}
EACH_LAYERING = pytest.mark.parametrize(
    "layers", [{}, PAGES_PATH, DJANGO_ALONE], ids=["the stack", "the pages path", "Django alone"]
)


@pytest.fixture
def token() -> str:
    return Token.objects.create(user=make_user("clerk", "change_product")).key


def by_django(app: Any, *args: Any, **kwargs: Any) -> Any:
    with override_settings(**DJANGO_ALONE):
        return send(app, *args, **kwargs)


@pytest.mark.parametrize(
    "suffix",
    [
        "\n",  # /api/products/1%0A: `$` matched before the newline
        "\u0661".encode().decode("latin-1"),  # an Arabic-Indic digit, as WSGI hands it over
    ],
)
def test_a_detail_path_django_does_not_route_is_not_answered(stack, token, suffix: str) -> None:
    app, _ = stack
    product = ProductFactory(pk=1, stock_level=1)
    send(app, "GET", "/api/products/1")  # cached now
    path = "/api/products/1\n" if suffix == "\n" else "/api/products/" + suffix
    assert send(app, "GET", path)[0] == by_django(app, "GET", path)[0] == 404
    patched = send(app, "PATCH", path, {"stock_level": 7}, HTTP_AUTHORIZATION=f"Token {token}")
    assert patched[0] == 404
    product.refresh_from_db()
    assert product.stock_level == 1


@pytest.mark.parametrize("path", ["/api/products/1", "/api/products", "/api/products/search"])
@pytest.mark.parametrize("through_wsgi_layer", [True, False])
def test_a_304_from_the_cache_is_djangos_304(stack, path: str, through_wsgi_layer: bool) -> None:
    """Both cache layers: the WSGI one, and the middleware (a hit the WSGI layer missed)."""
    app, _ = stack
    ProductFactory(pk=1, name="Steel bar")
    query = "name=steel" if path.endswith("search") else ""
    etag = send(app, "GET", path, QUERY_STRING=query)[1]["ETag"]
    if not through_wsgi_layer:
        # Without the WSGI cache layer in front (the test client, runserver) the middleware
        # answers hits.
        app = ProductPagesApp(ProductUpdateApp(CountingDjango()))
    cached = send(app, "GET", path, QUERY_STRING=query, HTTP_IF_NONE_MATCH=etag)
    alone = by_django(app, "GET", path, QUERY_STRING=query, HTTP_IF_NONE_MATCH=etag)
    assert cached[0] == alone[0] == 304
    assert cached[1] == alone[1]


@pytest.mark.parametrize("path", ["/api/products/1", "/api/products", "/api/products/search"])
@pytest.mark.parametrize("through_wsgi_layer", [True, False])
def test_a_cached_read_whose_if_match_fails_is_djangos_412(
    stack, path: str, through_wsgi_layer: bool
) -> None:
    app, _ = stack
    ProductFactory(pk=1, name="Steel bar")
    query = "name=steel" if path.endswith("search") else ""
    send(app, "GET", path, QUERY_STRING=query)  # cached now
    if not through_wsgi_layer:
        app = ProductPagesApp(ProductUpdateApp(CountingDjango()))
    cached = send(app, "GET", path, QUERY_STRING=query, HTTP_IF_MATCH='"1-999-1"')
    alone = by_django(app, "GET", path, QUERY_STRING=query, HTTP_IF_MATCH='"1-999-1"')
    assert cached[0] == alone[0] == 412
    assert cached[2] == alone[2]


@pytest.mark.parametrize("path", ["/api/products/1", "/api/products", "/api/products/search"])
@pytest.mark.parametrize("cache_on", [True, False])
@pytest.mark.parametrize("with_token", [True, False])
def test_a_304_varies_as_its_200(stack, token, path: str, cache_on: bool, with_token) -> None:
    """The 304 sent Vary: Cookie (anonymous) or no Vary (a token), the 200 Vary: Accept and
    Cookie: a cache refreshing its stored headers from the 304 lost Accept (RFC 9110, 15.4.5)."""
    app, _ = stack
    ProductFactory(pk=1, name="Steel bar")
    query = "name=steel" if path.endswith("search") else ""
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"} if with_token else {}
    ask = send if cache_on else by_django
    _, ok, _ = ask(app, "GET", path, QUERY_STRING=query, **auth)
    ask(app, "GET", path, QUERY_STRING=query, **auth)  # a hit, where the cache is on
    status, not_modified, _ = ask(
        app, "GET", path, QUERY_STRING=query, HTTP_IF_NONE_MATCH=ok["ETag"], **auth
    )
    assert status == 304
    assert not_modified["Vary"] == ok["Vary"]
    assert "Accept" in ok["Vary"]


def test_a_200_from_the_middleware_cache_has_its_length() -> None:
    ProductFactory(pk=1)
    app = ProductPagesApp(ProductUpdateApp(CountingDjango()))  # no WSGI cache layer in front
    send(app, "GET", "/api/products/1")
    status, headers, content = send(app, "GET", "/api/products/1")
    assert (status, headers["Content-Length"]) == (200, str(len(content)))


@pytest.mark.parametrize(
    "error",
    [OperationalError("couldn't get a connection"), InterfaceError("connection already closed")],
    ids=["operational-error", "interface-error"],
)
def test_a_write_with_the_database_down_waits_for_it_once(
    stack, monkeypatch, caplog, error: Exception
) -> None:
    app, django = stack
    product = ProductFactory()
    tries: list[str] = []

    def unavailable(self: Any, key: str) -> Any:
        tries.append(key)
        raise error

    monkeypatch.setattr(TokenAuthentication, "authenticate_credentials", unavailable)
    body = {"stock_level": 7}
    fast = send(app, "PATCH", f"/api/products/{product.pk}", body, HTTP_AUTHORIZATION="Token a")
    assert (fast[0], len(tries), django.calls) == (503, 1, 0)
    (record,) = [r for r in caplog.records if r.name == "products.api.fast_writes"]
    assert record.getMessage() == f"database unavailable: {type(error).__name__}: {error}"
    alone = by_django(
        app, "PATCH", f"/api/products/{product.pk}", body, HTTP_AUTHORIZATION="Token a"
    )
    assert (fast[0], json.loads(fast[2])) == (alone[0], json.loads(alone[2]))
    assert fast[1]["Retry-After"] == alone[1]["Retry-After"] == "5"


def test_a_write_with_a_csrf_cookie_django_replaces_goes_to_django(stack, token) -> None:
    app, django = stack
    product = ProductFactory()
    answer = send(
        app,
        "PATCH",
        f"/api/products/{product.pk}",
        {"stock_level": 7},
        HTTP_AUTHORIZATION=f"Token {token}",
        HTTP_COOKIE="csrftoken=bad",
    )
    assert (answer[0], django.calls) == (200, 1)
    assert "Set-Cookie" in answer[1]


def test_a_cached_detail_with_too_many_query_fields_gets_djangos_400(stack) -> None:
    app, django = stack
    product = ProductFactory()
    query = "&".join(["a"] * 1001)  # DATA_UPLOAD_MAX_NUMBER_FIELDS is 1000
    send(app, "GET", f"/api/products/{product.pk}")  # fills the cache
    calls = django.calls
    status, _, content = send(app, "GET", f"/api/products/{product.pk}", QUERY_STRING=query)
    assert (status, django.calls) == (400, calls + 1)
    assert b"1000" in content


def test_a_request_without_a_path_gets_djangos_answer(stack) -> None:
    """PEP 3333 lets a server leave PATH_INFO out for the application's root."""
    app, django = stack
    ProductFactory()
    status, _, _ = send(app, "GET", "", without=["PATH_INFO"])
    assert django.calls == 1
    assert status == by_django(app, "GET", "", without=["PATH_INFO"])[0]


def test_a_raw_utf8_query_does_not_share_a_key_with_its_mojibake(stack) -> None:
    app, _ = stack
    ProductFactory(name="Écrou acier", price=Decimal("3.10"))
    raw = "name=é".encode().decode("latin-1")  # raw UTF-8 bytes, as a server may pass them
    send(app, "GET", "/api/products/search", QUERY_STRING=raw)
    mojibake = "name=%C3%83%C2%A9"  # the two characters "Ã©"
    fast = send(app, "GET", "/api/products/search", QUERY_STRING=mojibake)
    assert fast == by_django(app, "GET", "/api/products/search", QUERY_STRING=mojibake)
    assert json.loads(fast[2])["count"] == 0


@EACH_LAYERING
def test_a_raw_query_that_is_not_utf8_is_refused_naming_the_parameter(
    stack, layers: dict[str, bool]
) -> None:
    """A server may pass a query's bytes unquoted: they are checked as escaped ones are, not
    searched for as Django reads them (`caf` and a replacement character)."""
    app, _ = stack
    raw = b"name=caf\xe9".decode("latin-1")
    with override_settings(**layers):
        status, _, content = send(app, "GET", "/api/products/search", QUERY_STRING=raw)
    assert status == 400
    assert json.loads(content)["error"]["fields"] == {"name": ["Not valid UTF-8."]}


@EACH_LAYERING
def test_the_links_of_a_raw_utf8_query_carry_its_bytes(stack, layers: dict[str, bool]) -> None:
    """A server may pass a query's UTF-8 bytes unquoted; WSGI hands them over as Latin-1 text.
    The links quote the bytes, so the next page is of the same search (Django's own absolute
    URL quotes each byte's Latin-1 reading: `cr%C3%83%C2%A8me`, another search)."""
    app, django = stack
    ProductFactory(name="Crème 1")
    second = ProductFactory(name="Crème 2")
    raw = "name=crème&limit=1".encode().decode("latin-1")
    with override_settings(**layers):
        page = json.loads(send(app, "GET", "/api/products/search", QUERY_STRING=raw)[2])
        query = page["next"].partition("?")[2]
        following = json.loads(send(app, "GET", "/api/products/search", QUERY_STRING=query)[2])
    assert page["next"] == "http://testserver/api/products/search?limit=1&name=cr%C3%A8me&page=2"
    assert [row["id"] for row in following["results"]] == [second.pk]
    assert following["previous"] == "http://testserver/api/products/search?limit=1&name=cr%C3%A8me"
    if layers == PAGES_PATH:
        assert django.calls == 0  # answered ahead of Django, as other queries are


@pytest.mark.parametrize("cache_on", [True, False])
@pytest.mark.parametrize(
    ("environ", "without", "settings"),
    [
        (
            {"SERVER_NAME": "testserver", "SERVER_PORT": "80", "HTTP_X_FORWARDED_PORT": "8443"},
            ["HTTP_HOST"],
            {"USE_X_FORWARDED_PORT": True},
        ),
        ({}, [], {"SECURE_REFERRER_POLICY": ["same-origin", "strict-origin"]}),
        ({}, [], {"SECURE_SSL_REDIRECT": True}),
        (
            {"wsgi.url_scheme": "https"},
            [],
            {
                "SECURE_HSTS_SECONDS": 3600,
                "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
                "SECURE_HSTS_PRELOAD": True,
            },
        ),
        ({"HTTP_X_FORWARDED_HOST": "evil.example"}, [], {"USE_X_FORWARDED_HOST": True}),
        # The proxy headers are taken only where the settings say so: an allowed host or another
        # port from the client would otherwise go into the links of a page cached for everyone.
        ({"HTTP_X_FORWARDED_HOST": "localhost"}, [], {}),
        (
            {"SERVER_NAME": "testserver", "SERVER_PORT": "80", "HTTP_X_FORWARDED_PORT": "8443"},
            ["HTTP_HOST"],
            {},
        ),
        ({}, [], {"SECURE_HSTS_SECONDS": 3600}),  # plain HTTP: no HSTS
        ({"wsgi.url_scheme": "https"}, [], {}),  # HSTS not set: none, not a max-age of 0
        # DEBUG's own hosts stand in for an empty ALLOWED_HOSTS, and only under DEBUG.
        ({"HTTP_HOST": "localhost"}, [], {"ALLOWED_HOSTS": []}),
        ({"HTTP_HOST": "localhost"}, [], {"ALLOWED_HOSTS": [], "DEBUG": True}),
        ({"HTTP_HOST": ""}, [], {"ALLOWED_HOSTS": ["*"]}),  # "*" allows no empty host
        (
            {"HTTP_X_FORWARDED_PROTO": "https"},
            [],
            {
                "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
                "SECURE_HSTS_SECONDS": 3600,
            },
        ),
        ({}, [], {"SECURE_REFERRER_POLICY": "same-origin, strict-origin"}),
        # A chain of proxies sends a list: Django reads its first value (HTTPS here), not the
        # whole list nor the last one.
        (
            {"HTTP_X_FORWARDED_PROTO": "https, http"},
            [],
            {
                "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
                "SECURE_HSTS_SECONDS": 3600,
            },
        ),
        (
            {"HTTP_USER_AGENT": "BadBot/1.0"},
            [],
            {"DISALLOWED_USER_AGENTS": [re.compile("BadBot")]},
        ),
        # XFrameOptionsMiddleware sends the setting in capitals, however it is written.
        ({}, [], {"X_FRAME_OPTIONS": "sameorigin"}),
        ({}, [], {"SECURE_CROSS_ORIGIN_OPENER_POLICY": "same-origin-allow-popups"}),
        # Headers switched off are not sent.
        (
            {},
            [],
            {
                "SECURE_CONTENT_TYPE_NOSNIFF": False,
                "SECURE_REFERRER_POLICY": None,
                "SECURE_CROSS_ORIGIN_OPENER_POLICY": None,
            },
        ),
    ],
)
def test_settings_django_applies_are_applied_alike(
    environ: dict[str, str], without: list[str], settings: dict[str, Any], cache_on: bool
) -> None:
    for n in range(3):
        ProductFactory(name=f"Steel {n}")
    with override_settings(PRODUCT_CACHE_ENABLED=cache_on, **settings):
        # Built here: Django's middlewares read some settings once, as they are built.
        app = CachedReadsApp(ProductPagesApp(ProductUpdateApp(CountingDjango())))
        send(app, "GET", "/api/products", QUERY_STRING="limit=2", without=without, **environ)
        fast = send(app, "GET", "/api/products", QUERY_STRING="limit=2", without=without, **environ)
        alone = by_django(
            app, "GET", "/api/products", QUERY_STRING="limit=2", without=without, **environ
        )
    assert fast == alone
    assert Product.objects.count() == 3


@override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=None, PRODUCT_CACHE_ENABLED=True)
def test_with_no_limit_on_a_querys_fields_pages_are_still_answered_from_the_cache(stack) -> None:
    """None is Django's setting for no limit: too_many_fields must not compare with it."""
    app, django = stack
    ProductFactory.create_batch(3)
    first = send(app, "GET", "/api/products", QUERY_STRING="limit=2")
    again = send(app, "GET", "/api/products", QUERY_STRING="limit=2")
    assert (first[0], again[0], django.calls) == (200, 200, 0)


def test_with_ssl_redirect_on_a_cached_page_is_answered_over_https_and_redirected_over_http() -> (
    None
):
    ProductFactory.create_batch(3)
    https = {"wsgi.url_scheme": "https"}
    with override_settings(PRODUCT_CACHE_ENABLED=True, SECURE_SSL_REDIRECT=True):
        # Built here: SecurityMiddleware reads the setting once, as it is built.
        django = CountingDjango()
        app = CachedReadsApp(ProductPagesApp(ProductUpdateApp(django)))
        send(app, "GET", "/api/products", QUERY_STRING="limit=2", **https)  # stored
        hit = send(app, "GET", "/api/products", QUERY_STRING="limit=2", **https)
        plain = send(app, "GET", "/api/products", QUERY_STRING="limit=2")
    assert (hit[0], plain[0], django.calls) == (200, 301, 1)


def test_a_plain_http_page_cached_before_ssl_redirect_was_turned_on_is_redirected() -> None:
    """Entries outlive a deploy: one stored over plain HTTP before SECURE_SSL_REDIRECT was
    turned on is still in Redis, and the redirect comes before it, as Django's does."""
    ProductFactory.create_batch(3)
    with override_settings(PRODUCT_CACHE_ENABLED=True):
        before = CachedReadsApp(ProductPagesApp(ProductUpdateApp(CountingDjango())))
        send(before, "GET", "/api/products", QUERY_STRING="limit=2")  # stored
    with override_settings(PRODUCT_CACHE_ENABLED=True, SECURE_SSL_REDIRECT=True):
        # Built here: SecurityMiddleware reads the setting once, as it is built.
        django = CountingDjango()
        app = CachedReadsApp(ProductPagesApp(ProductUpdateApp(django)))
        status, headers, _ = send(app, "GET", "/api/products", QUERY_STRING="limit=2")
    assert (status, django.calls) == (301, 1)
    assert headers["Location"] == "https://testserver/api/products?limit=2"


def test_an_https_request_without_a_host_header_is_not_answered_another_hosts_page(stack) -> None:
    """Without a Host header (HTTP/1.0) Django names the host from SERVER_NAME, leaving out
    HTTPS's default port: the page is not the one cached for `Host: testserver:443`, whose
    links carry the port."""
    app, _ = stack
    ProductFactory.create_batch(3)
    https = {"wsgi.url_scheme": "https"}
    send(app, "GET", "/api/products", QUERY_STRING="limit=2", HTTP_HOST="testserver:443", **https)
    no_host = {"SERVER_NAME": "testserver", "SERVER_PORT": "443", **https}
    fast = send(
        app, "GET", "/api/products", QUERY_STRING="limit=2", without=["HTTP_HOST"], **no_host
    )
    alone = by_django(
        app, "GET", "/api/products", QUERY_STRING="limit=2", without=["HTTP_HOST"], **no_host
    )
    assert fast == alone
    assert json.loads(fast[2])["next"].startswith("https://testserver/")
