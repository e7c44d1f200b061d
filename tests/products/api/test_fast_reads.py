"""The WSGI path for list and search pages: the same answers as the DRF views, or the views.

Each test sends raw WSGI requests to the application's layers wrapped around Django's own WSGI
handler, and counts which requests reach Django. Every answer is compared with the one Django
gives with the path switched off (`PRODUCT_FAST_READS=false`): status, headers and bytes.
"""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import InterfaceError, OperationalError, connection
from django.test import override_settings

from products import cache, selectors, services
from products.api import fast_path
from tests.database import other_connection, wait_until_session_ended
from tests.products.api.wsgi_client import CountingDjango, send
from tests.products.conftest import ProductFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_cache_state")]

# Answered here: every page a client may ask for, in both paging modes.
ANSWERED = [
    ("/api/products", ""),
    ("/api/products/", "page=2&limit=3"),
    ("/api/products", "limit=4&after_id=3"),
    ("/api/products", "utm_source=mail&limit=2"),  # other parameters are ignored, as the view does
    ("/api/products/search", "name=steel"),
    ("/api/products/search/", "name=STEEL&min_price=100&max_price=200"),
    ("/api/products/search", "name=steel&min_price=100&max_price=200&page=2&limit=2"),
    ("/api/products/search", "name=steel&after_id=2&limit=2"),
    ("/api/products/search", "min_price=150.5"),
    ("/api/products/search", "name=%C3%A9crou"),
    ("/api/products/search", "name=st+ee"),
    ("/api/products/search", "name=50%25"),
    ("/api/products/search", "name=a<b>"),  # quoted in the page links, as Django quotes them
    ("/api/products/search", "name=format"),  # a value, not DRF's format parameter
    ("/api/products/search", "name=zzz"),  # no match: count 0, one empty page
]
# Refused or past the end: the view answers with its error.
REFUSED = [
    ("/api/products", "page=0", 400),
    ("/api/products", "page=abc", 400),
    ("/api/products", "limit=101", 400),
    ("/api/products", "page=2&after_id=1", 400),
    ("/api/products", "page=99", 404),
    ("/api/products/search", "", 400),
    ("/api/products/search", "name=", 400),
    ("/api/products/search", "name=a%00b", 400),
    ("/api/products/search", "name=%FF", 400),
    ("/api/products/search", "min_price=-1", 400),
    ("/api/products/search", "min_price=5&max_price=4", 400),
    ("/api/products/search", "name=steel&page=9", 404),
]


@pytest.fixture
def catalogue() -> None:
    for name, price in [
        ("Steel bar", "100.00"),
        ("STEEL pipe", "150.50"),
        ("Steel clamp", "200.00"),
        ("Steel nut", "99.99"),
        ("Écrou acier", "3.10"),
        ("50% valve", "12.00"),
        ("A<B> cable", "1.00"),
    ]:
        ProductFactory(name=name, price=Decimal(price))


def get(app: Any, path: str, query: str, **environ: str) -> tuple[int, dict[str, str], bytes]:
    return send(app, "GET", path, QUERY_STRING=query, **environ)


def through_django(app: Any, path: str, query: str, **environ: str) -> Any:
    with override_settings(PRODUCT_FAST_READS=False):
        return get(app, path, query, **environ)


def assert_same(fast: Any, slow: Any) -> None:
    assert fast[0] == slow[0]
    assert fast[2] == slow[2]
    assert fast[1] == slow[1]


@override_settings(PRODUCT_CACHE_ENABLED=False)
@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize(("path", "query"), ANSWERED)
def test_pages_are_answered_here_as_the_view_answers_them(stack, path: str, query: str) -> None:
    app, django = stack
    fast = get(app, path, query)
    assert (fast[0], django.calls) == (200, 0)
    slow = through_django(app, path, query)
    assert django.calls == 1
    assert_same(fast, slow)
    # And over plain HTTP, where the links say http.
    assert_same(
        get(app, path, query, HTTP_X_FORWARDED_PROTO="http"),
        through_django(app, path, query, HTTP_X_FORWARDED_PROTO="http"),
    )


@override_settings(PRODUCT_CACHE_ENABLED=False)
@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize(("path", "query", "code"), REFUSED)
def test_refused_queries_go_to_the_view(stack, path: str, query: str, code: int) -> None:
    app, django = stack
    refused = get(app, path, query)
    assert (refused[0], django.calls) == (code, 1)
    assert json.loads(refused[2])["error"]


@override_settings(PRODUCT_CACHE_ENABLED=False)
@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize(
    "environ",
    [
        {"HTTP_ACCEPT": "text/html"},  # the browsable API
        {"HTTP_ACCEPT": "application/json; indent=4"},
        {"HTTP_AUTHORIZATION": "Token abc"},
        {"HTTP_COOKIE": "sessionid=abc"},
        {"REQUEST_METHOD": "HEAD"},
        {"SCRIPT_NAME": "/inventory"},
        {"HTTP_HOST": "evil.example"},  # not allowed: Django answers 400
    ],
)
def test_other_requests_go_to_django(stack, environ: dict[str, str]) -> None:
    app, django = stack
    get(app, "/api/products/search", "name=steel", **environ)
    assert django.calls == 1


@override_settings(PRODUCT_CACHE_ENABLED=False)
@pytest.mark.usefixtures("catalogue")
def test_if_none_match_gets_a_304_here(stack) -> None:
    app, django = stack
    etag = get(app, "/api/products/search", "name=steel")[1]["ETag"]
    fast = get(app, "/api/products/search", "name=steel", HTTP_IF_NONE_MATCH=etag)
    slow = through_django(app, "/api/products/search", "name=steel", HTTP_IF_NONE_MATCH=etag)
    assert (fast[0], django.calls) == (304, 1)
    assert_same(fast, slow)


@override_settings(PRODUCT_CACHE_ENABLED=True)
@pytest.mark.usefixtures("catalogue")
def test_a_miss_is_loaded_here_and_stored_for_the_next_reader(stack) -> None:
    app, django = stack
    first = get(app, "/api/products/search", "name=steel&min_price=100&max_price=200")
    second = get(app, "/api/products/search", "name=steel&min_price=100&max_price=200")
    assert django.calls == 0
    assert first == second
    assert json.loads(first[2])["count"] == 3
    # A write bumps the catalogue: the next read is a miss, loaded here again, and current.
    product = ProductFactory(name="Steel hook", price=Decimal("120.00"))
    third = get(app, "/api/products/search", "name=steel&min_price=100&max_price=200")
    assert json.loads(third[2])["count"] == 4
    services.product_delete(product_id=product.pk)
    fourth = get(app, "/api/products/search", "name=steel&min_price=100&max_price=200")
    assert (json.loads(fourth[2])["count"], django.calls) == (3, 0)
    assert fourth[1]["ETag"] == first[1]["ETag"]


@override_settings(PRODUCT_CACHE_ENABLED=True)
@pytest.mark.usefixtures("catalogue")
def test_a_miss_another_reader_is_loading_is_answered_with_its_entry(
    stack, monkeypatch, django_assert_num_queries
) -> None:
    """Under a stampede the readers that wait for the leader answer what it stored, rather
    than each loading the page from PostgreSQL again."""
    app, django = stack
    stored = cache.Entry(headers={"ETag": '"the-leaders"'}, body=b'{"from": "the leader"}')
    real_claim = cache.claim
    leaders: list[tuple[cache.Lookup, bytes]] = []

    def while_another_reader_leads(lookup: cache.Lookup) -> Any:
        _, lease = real_claim(lookup)  # another reader missed first and leads
        assert lease is not None
        leaders.append((lookup, lease))
        return real_claim(lookup)

    def leader_stores_meanwhile(seconds: float) -> None:
        for lookup, lease in leaders:
            cache.store(lookup, stored)
            cache.release(lookup, lease)

    monkeypatch.setattr(cache, "claim", while_another_reader_leads)
    monkeypatch.setattr(
        cache, "time", SimpleNamespace(monotonic=time.monotonic, sleep=leader_stores_meanwhile)
    )
    with django_assert_num_queries(0):
        status, headers, body = get(app, "/api/products/search", "name=steel")
    assert (status, body, headers["ETag"], django.calls) == (200, stored.body, stored.etag, 0)


@override_settings(PRODUCT_CACHE_ENABLED=True)
@pytest.mark.usefixtures("catalogue")
def test_with_the_cache_on_it_answers_as_the_view_answers(stack) -> None:
    app, django = stack
    fast = get(app, "/api/products/search", "name=steel&limit=2")
    cache.invalidate_all()
    slow = through_django(app, "/api/products/search", "name=steel&limit=2")
    assert django.calls == 1
    assert_same(fast, slow)


@override_settings(PRODUCT_CACHE_ENABLED=False, RATELIMIT_ENABLE=True, RATELIMIT_READS="2/m")
@pytest.mark.usefixtures("catalogue")
def test_reads_count_against_the_limit_once_and_the_view_answers_429(stack) -> None:
    app, django = stack
    assert get(app, "/api/products/search", "name=steel")[0] == 200
    assert get(app, "/api/products", "")[0] == 200
    status, headers, _ = get(app, "/api/products/search", "name=steel")
    assert (status, django.calls) == (429, 1)
    assert "Retry-After" in headers


@override_settings(PRODUCT_CACHE_ENABLED=True)
@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize(
    ("query", "environ"),
    [
        # Accept headers DRF does not answer with compact JSON (406, HTML, indented JSON).
        ("limit=2", {"HTTP_ACCEPT": ""}),
        ("limit=2", {"HTTP_ACCEPT": "application/xml"}),
        ("limit=2", {"HTTP_ACCEPT": "text/*"}),
        ("limit=2", {"HTTP_ACCEPT": "TEXT/HTML"}),
        ("limit=2", {"HTTP_ACCEPT": "application/json; INDENT=2"}),
        # DRF's format override, however encoded.
        ("limit=2&%66ormat=api", {}),
        ("limit=2&format=json", {}),
        # A CSRF cookie that CsrfViewMiddleware replaces in its answer: too short, or of the
        # right length with characters a token never has.
        ("limit=2", {"HTTP_COOKIE": "csrftoken=bad"}),
        ("limit=2", {"HTTP_COOKIE": "csrftoken=" + "!" * 32}),
        # A present but empty Host header: Django answers 400.
        ("limit=2", {"HTTP_HOST": "", "SERVER_NAME": "127.0.0.1"}),
        # Links with a script prefix Django takes from the environ.
        ("limit=2", {"SCRIPT_URL": "/inventory/api/products"}),
        ("limit=2", {"REDIRECT_URL": "/inventory/api/products"}),
    ],
)
def test_requests_drf_answers_otherwise_go_to_django_hit_or_miss(
    stack, query: str, environ: dict[str, str]
) -> None:
    app, django = stack
    get(app, "/api/products", "limit=2")  # the page is in the cache now
    assert django.calls == 0
    get(app, "/api/products", query, **environ)
    assert django.calls == 1


@override_settings(PRODUCT_CACHE_ENABLED=False)
@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize("query", ["limit=2&format=api", "limit=2&%66ormat=api"])
def test_with_the_cache_off_a_format_parameter_gets_the_browsable_api(stack, query: str) -> None:
    """DRF's format override, however encoded, is the view's to answer: here it would be JSON."""
    app, django = stack
    status, headers, _ = get(app, "/api/products", query)
    assert (status, django.calls) == (200, 1)
    assert headers["Content-Type"].startswith("text/html")


@override_settings(PRODUCT_CACHE_ENABLED=False)
@pytest.mark.usefixtures("catalogue")
def test_a_valid_csrf_cookie_is_left_alone(stack) -> None:
    app, django = stack
    token = "a" * 32
    fast = get(app, "/api/products", "limit=2", HTTP_COOKIE=f"csrftoken={token}")
    assert django.calls == 0
    assert_same(
        fast, through_django(app, "/api/products", "limit=2", HTTP_COOKIE=f"csrftoken={token}")
    )


@override_settings(PRODUCT_CACHE_ENABLED=False)
@pytest.mark.usefixtures("catalogue")
def test_cookies_django_does_not_read_are_left_alone(stack) -> None:
    """A browser sends its other cookies too (a theme, analytics): no CSRF cookie to check."""
    app, django = stack
    cookies = "theme=dark; _ga=GA1.2.3"
    fast = get(app, "/api/products", "limit=2", HTTP_COOKIE=cookies)
    assert django.calls == 0
    assert_same(fast, through_django(app, "/api/products", "limit=2", HTTP_COOKIE=cookies))


@override_settings(PRODUCT_CACHE_ENABLED=False, FORCE_SCRIPT_NAME="/inventory")
@pytest.mark.usefixtures("catalogue")
def test_a_forced_script_name_goes_to_django(stack) -> None:
    app, django = stack
    get(app, "/api/products", "limit=2")
    assert django.calls == 1


@override_settings(PRODUCT_CACHE_ENABLED=True)
@pytest.mark.usefixtures("catalogue")
def test_a_request_without_a_host_header_gets_links_to_the_server_as_django_builds_them(
    stack,
) -> None:
    app, django = stack
    environ = {"SERVER_NAME": "testserver", "SERVER_PORT": "8000"}
    fast = send(
        app, "GET", "/api/products", QUERY_STRING="limit=2", without=["HTTP_HOST"], **environ
    )
    assert (fast[0], django.calls) == (200, 0)
    assert "://testserver:8000/api/products?" in json.loads(fast[2])["next"]


@override_settings(PRODUCT_CACHE_ENABLED=True)
@pytest.mark.usefixtures("catalogue")
def test_with_the_cache_on_a_query_the_cache_does_not_look_up_goes_to_the_view(stack) -> None:
    """A name given twice: the cache layer leaves it to the view, and so does this path."""
    app, django = stack
    status, _, content = get(app, "/api/products", "limit=2&limit=3")
    assert (status, django.calls) == (400, 1)
    assert json.loads(content)["error"]["code"] == "invalid"


@override_settings(PRODUCT_CACHE_ENABLED=True)
@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize("query", ["limit=2&cb=8f3a", "limit=02"])
def test_with_the_cache_on_a_page_the_cache_does_not_store_is_still_answered_here(
    stack, query: str
) -> None:
    """A parameter the view ignores, or a number's other spelling: the cache layer looks and
    has nowhere to store the page, and leaves it to this path, not to Django."""
    app, django = stack
    fast = get(app, "/api/products", query)
    assert (fast[0], django.calls) == (200, 0)
    assert_same(fast, through_django(app, "/api/products", query))


@override_settings(PRODUCT_CACHE_ENABLED=False)
def test_a_request_without_a_query_string_gets_the_views_links(stack) -> None:
    """PEP 3333 lets a server leave QUERY_STRING out of the environ when it is empty."""
    app, django = stack
    ProductFactory.create_batch(21)  # one past the default limit: the page has a next link
    fast = send(app, "GET", "/api/products")  # no QUERY_STRING in its environ
    assert (fast[0], django.calls) == (200, 0)
    slow = through_django(app, "/api/products", "")
    assert json.loads(fast[2])["next"] == "http://testserver/api/products?page=2"
    assert_same(fast, slow)


@override_settings(PRODUCT_CACHE_ENABLED=True)
def test_a_page_asked_for_without_a_query_string_is_cached_as_the_empty_query(
    stack, django_assert_num_queries
) -> None:
    """The environ without QUERY_STRING (PEP 3333) is the page without a query: stored on the
    first read and answered from the cache after, not loaded from PostgreSQL every time."""
    app, django = stack
    ProductFactory.create_batch(3)
    first = send(app, "GET", "/api/products")
    with django_assert_num_queries(0):
        again = send(app, "GET", "/api/products")
    assert (again, django.calls) == (first, 0)
    assert again == get(app, "/api/products", "")


@override_settings(PRODUCT_CACHE_ENABLED=True)
@pytest.mark.usefixtures("catalogue")
def test_each_path_of_a_page_has_its_own_cached_links(stack) -> None:
    app, _ = stack
    with_slash = json.loads(get(app, "/api/products/", "limit=2")[2])
    without = json.loads(get(app, "/api/products", "limit=2")[2])
    assert "://testserver/api/products/?" in with_slash["next"]
    assert "://testserver/api/products?" in without["next"]


@override_settings(PRODUCT_CACHE_ENABLED=False, RATELIMIT_ENABLE=True, RATELIMIT_READS="3/m")
@pytest.mark.usefixtures("catalogue")
def test_a_request_handed_on_to_the_view_is_counted_once(stack) -> None:
    app, django = stack
    statuses = [get(app, "/api/products", query)[0] for query in ("page=99", "", "", "")]
    assert statuses == [404, 200, 200, 429]
    assert django.calls == 2


@pytest.mark.parametrize("cache_on", [False, True])
@pytest.mark.parametrize(
    "error",
    [OperationalError("connection refused"), InterfaceError("connection already closed")],
    ids=["operational-error", "interface-error"],
)
@pytest.mark.usefixtures("catalogue")
def test_the_database_unavailable_is_the_views_503_without_a_second_wait(
    stack, monkeypatch, caplog, cache_on: bool, error: Exception
) -> None:
    """Answered here, and logged here as the view logs it: the 503s alone would not tell.
    Both errors of a database gone: none to connect to, or a connection closed under us."""
    app, django = stack

    def unavailable(**kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(selectors, "product_search", unavailable)
    with override_settings(PRODUCT_CACHE_ENABLED=cache_on):
        fast = get(app, "/api/products/search", "name=steel")
        assert (fast[0], django.calls, fast[1]["Retry-After"]) == (503, 0, "5")
        (record,) = [r for r in caplog.records if r.name == "products.api.fast_reads"]
        assert record.getMessage() == f"database unavailable: {type(error).__name__}: {error}"
        assert_same(fast, through_django(app, "/api/products/search", "name=steel"))


@override_settings(PRODUCT_CACHE_ENABLED=False)
@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize(
    "accept",
    ["*/*", "application/json", "application/*", "application/json, text/javascript, */*; q=0.01"],
)
def test_accept_headers_drf_answers_in_json_are_answered_here(stack, accept: str) -> None:
    app, django = stack
    fast = get(app, "/api/products/search", "name=steel", HTTP_ACCEPT=accept)
    assert (fast[0], django.calls) == (200, 0)
    assert_same(fast, through_django(app, "/api/products/search", "name=steel", HTTP_ACCEPT=accept))


@override_settings(PRODUCT_CACHE_ENABLED=False, SECURE_SSL_REDIRECT=True)
@pytest.mark.usefixtures("catalogue")
def test_with_ssl_redirect_on_https_pages_are_still_answered_here(stack) -> None:
    """Only the plain-HTTP requests that Django redirects are left to it."""
    app, django = stack
    status, _, _ = get(app, "/api/products", "limit=2", **{"wsgi.url_scheme": "https"})
    assert (status, django.calls) == (200, 0)


@override_settings(PRODUCT_CACHE_ENABLED=True)
@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize("through_wsgi_layer", [True, False])
def test_a_reader_waiting_for_a_load_that_fails_stops_waiting_when_it_fails(
    stack, monkeypatch, through_wsgi_layer: bool
) -> None:
    """The reader that leads a miss releases its lock however its load ends (here the 503 of
    a database outage): a reader waiting for its entry then loads the page itself at once,
    rather than waiting out FILL_WAIT_S for an entry that is never coming. Both leaders: this
    path, and the cache middleware in front of the view (Django without the WSGI layers)."""
    app, _ = stack
    if not through_wsgi_layer:
        app = CountingDjango()
    lookup = fast_path._lookup("/api/products/search", "name=steel", "testserver", "http")
    waiting, leader_done = threading.Event(), threading.Event()
    clock = SimpleNamespace(now=0.0)  # the waiter's clock: it moves only when the waiter sleeps

    def sleep(seconds: float) -> None:
        waiting.set()
        assert leader_done.wait(10)
        clock.now += seconds

    claimed: list[Any] = []

    def other_reader() -> None:
        claimed.append(cache.claim(lookup))
        claimed.append(clock.now)

    other = threading.Thread(target=other_reader, daemon=True)

    def unavailable(**kwargs: Any) -> None:
        other.start()  # it finds the lock this load holds, and waits for the entry
        assert waiting.wait(10)
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "product_search", unavailable)
    monkeypatch.setattr(cache, "time", SimpleNamespace(monotonic=lambda: clock.now, sleep=sleep))
    assert get(app, "/api/products/search", "name=steel")[0] == 503
    leader_done.set()
    other.join(10)
    assert claimed[0] == (None, None)  # no entry: it loads the page itself
    assert claimed[1] < cache.FILL_WAIT_S  # as soon as the lock was gone


@override_settings(PRODUCT_CACHE_ENABLED=False)
@pytest.mark.usefixtures("catalogue")
def test_a_connection_the_server_closed_since_the_last_request_is_not_used_for_the_page(
    stack,
) -> None:
    """As Django's handler does, the path starts each request with request_started, which hands
    a connection left checked out (a request that never finished: gunicorn_worker.ClientIdle)
    back to the pool, whose checkout replaces a connection the server has closed meanwhile."""
    app, django = stack
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with other_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until_session_ended(pid)
    status, _, _ = get(app, "/api/products", "limit=2")
    assert (status, django.calls) == (200, 0)


@override_settings(PRODUCT_CACHE_ENABLED=False, DEBUG=True, ALLOWED_HOSTS=[])
def test_under_debug_with_no_allowed_hosts_a_localhost_page_is_answered_here(stack) -> None:
    """Django then allows localhost and its addresses (`make run`'s local settings): so does
    this path, rather than sending every page to the view."""
    app, django = stack
    ProductFactory.create_batch(3)
    status, _, _ = get(app, "/api/products", "limit=2", HTTP_HOST="localhost:8000")
    assert (status, django.calls) == (200, 0)
