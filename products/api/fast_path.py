"""Serve cached product reads ahead of the framework.

Two layers, both keyed only through products/cache.py:

- `CachedReadsApp` wraps the WSGI application (inventory_project/wsgi.py). A cache hit for an
  anonymous JSON read is answered there, before Django builds a request: no middleware, URL
  resolution, DRF or PostgreSQL. It sends the headers Django's security middleware would.
- `ProductCacheMiddleware` sits after the security and X-Frame-Options middlewares, whose
  headers its answers get, and ahead of sessions and auth. It answers hits for requests that
  did not come through the WSGI layer (the test client, runserver) and, on a miss,
  lets the normal DRF view answer and stores a cacheable 200 under the key that was current
  *before* the view read the database (products/cache.py explains why that makes late stores
  harmless). It also makes concurrent misses of one key wait for a single loader.

Everything else (a write, an authenticated or browsable-API request) falls through untouched,
except that a successful product update leaves its response as the product's cached detail
(`cache.detail_write_through`), so the reads after a write need not go to PostgreSQL.
Anonymous reads are rate limited here by client IP on the same django-ratelimit counter the
DRF throttle uses; over the limit, the request falls through and the normal path answers 429.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from django.conf import settings
from django.core import signals
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotModified
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH, CSRF_TOKEN_LENGTH
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer

from products import cache, selectors
from products.api.errors import (
    ServiceUnavailable,
    database_unavailable,
    error_body,
    log_database_unavailable,
    unavailable_detail,
)
from products.api.serializers import ListQuerySerializer, SearchQuerySerializer
from products.api.throttling import READ_GROUP, count_once
from products.api.views import (
    NOT_MODIFIED_KEEPS,
    ProductAPIView,
    etag_version,
    if_none_match_fails,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

# As Django's route matches it: ASCII digits (`\d` takes other scripts' too), and `\Z` (`$`
# also matches before a final newline, `/api/products/1%0A`).
DETAIL = re.compile(r"^/api/products/([0-9]{1,18})/?\Z")
PAGES = {"/api/products": "list", "/api/products/": "list"}
PAGES.update({"/api/products/search": "search", "/api/products/search/": "search"})
STORED_HEADERS = ("Content-Type", "ETag", "Vary", "Allow")
LOOKUP_ENVIRON_KEY = "products.cache_lookup"
# The query parameters each page reads.
QUERY_NAMES = {
    "list": frozenset(ListQuerySerializer().fields),
    "search": frozenset(SearchQuerySerializer().fields),
}
# A page answered but not stored (see _lookup): a miss with nowhere to store it.
NOT_STORED = cache.Lookup(entry=None, slot=None)
# The numbers' one spelling a page is stored under (or empty). The views also take others
# (leading zeros and spaces, `100.000`), each of which was an entry of its own.
_INTEGER = re.compile(r"(?:0|[1-9][0-9]*)?\Z")
_PRICE = re.compile(r"(?:(?:0|[1-9][0-9]*)(?:\.[0-9]{1,2})?)?\Z")
STORED_SPELLINGS = {
    "page": _INTEGER,
    "limit": _INTEGER,
    "after_id": _INTEGER,
    "min_price": _PRICE,
    "max_price": _PRICE,
}


def _lookup(path: str, query_string: str, host: str, scheme: str) -> cache.Lookup | None:
    if too_many_fields(query_string):
        return None  # Django refuses it with a 400 as soon as the view reads the query
    match = DETAIL.match(path)
    if match:
        return cache.detail_lookup(int(match[1]))
    if path not in PAGES:
        return None
    # Raw non-ASCII bytes (a server that passes them on): WSGI hands them over as Latin-1, so
    # they would share the key of their percent-encoded mojibake.
    if not query_string.isascii():
        return None
    # Pages carry absolute next/previous links: the host and scheme are part of the query.
    try:
        params = parse_qsl(query_string, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        # Not UTF-8: the view refuses it. Decoded with replacement, it would share the key of
        # a query for a real U+FFFD.
        return None
    ours = [name for name, _ in params if name in QUERY_NAMES[PAGES[path]]]
    if len(ours) > len(set(ours)):
        # The view refuses it (400); an entry stored for it before that may not answer it.
        return None
    if len(ours) < len(params):
        # A parameter the view does not read (`cb=<random>`): answered, never stored. Each such
        # query was an entry of its own, so a client within its rate limit could fill Redis
        # (20 KB per 100-byte request), and at maxmemory every write failed, the rate-limit
        # counters' too. A lookup with nowhere to store is a miss for every layer.
        return NOT_STORED
    for name, value in params:
        spelling = STORED_SPELLINGS.get(name)
        if spelling is not None and not spelling.match(value):
            # `limit=0100`, `limit=%20100`, ...: the same page under ever more keys.
            return NOT_STORED
    return cache.page_lookup(path, host=host, scheme=scheme, params=params)


def too_many_fields(query_string: str) -> bool:
    """Whether Django's QueryDict refuses this query string (DATA_UPLOAD_MAX_NUMBER_FIELDS),
    counting fields as parse_qsl does."""
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    return bool(query_string) and limit is not None and 1 + query_string.count("&") > limit


def anonymous_json_get(meta: dict[str, Any], query_string: str) -> bool:
    """GETs without credentials that DRF would answer in compact JSON, at a plain path.

    Anything else is left to Django: an Accept header that DRF answers otherwise (the browsable
    API, `indent`, a 406), a `format` parameter however encoded, a session cookie or a CSRF
    cookie Django would replace, a script prefix, an If-Match (the view answers 412 if it fails).
    """
    if meta.get("REQUEST_METHOD") != "GET" or "HTTP_AUTHORIZATION" in meta:
        return False
    if "HTTP_IF_MATCH" in meta:
        return False
    if common_middleware_acts():
        return False
    if not answered_in_compact_json(meta.get("HTTP_ACCEPT", "*/*")):
        return False
    if ("format" in query_string or "%" in query_string) and _names_format(query_string):
        return False
    if meta.get("HTTP_COOKIE") and not cookies_left_alone(meta["HTTP_COOKIE"]):
        return False
    return not _script_prefixed(meta)


class _AcceptOnly:
    """What DRF's content negotiation reads of a request without a `format` parameter."""

    query_params: dict[str, str] = {}

    def __init__(self, accept: str) -> None:
        self.headers = {"accept": accept}


@functools.lru_cache(maxsize=256)
def answered_in_compact_json(accept: str) -> bool:
    """Whether DRF's content negotiation answers this Accept header with the JSON renderer and
    a plain `application/json` (no `indent`), as it would for the product views.

    Clients send few distinct Accept headers; the bounded cache keeps negotiation off the path.
    """
    renderers = ProductAPIView().get_renderers()
    try:
        renderer, media_type = DefaultContentNegotiation().select_renderer(
            _AcceptOnly(accept),  # type: ignore[arg-type]
            renderers,
        )
    except NotAcceptable:
        return False
    return isinstance(renderer, JSONRenderer) and media_type == "application/json"


def _names_format(query_string: str) -> bool:
    """Whether a parameter decodes to DRF's `format` (its URL_FORMAT_OVERRIDE)."""
    return any(name == "format" for name, _ in parse_qsl(query_string, keep_blank_values=True))


def cookies_left_alone(header: str) -> bool:
    """No session cookie, and no CSRF cookie that CsrfViewMiddleware would replace."""
    cookies = parse_cookie(header)
    if settings.SESSION_COOKIE_NAME in cookies:
        return False
    token = cookies.get(settings.CSRF_COOKIE_NAME)
    return token is None or (
        len(token) in (CSRF_SECRET_LENGTH, CSRF_TOKEN_LENGTH)
        and all(char in CSRF_ALLOWED_CHARS for char in token)
    )


def common_middleware_acts() -> bool:
    """Whether CommonMiddleware may answer or redirect instead of the view (settings this
    project leaves at their defaults: a 403 for DISALLOWED_USER_AGENTS, PREPEND_WWW)."""
    return bool(settings.DISALLOWED_USER_AGENTS) or bool(settings.PREPEND_WWW)


def _script_prefixed(meta: dict[str, Any]) -> bool:
    """Whether Django would put a script prefix in the page's links (get_script_name)."""
    if settings.FORCE_SCRIPT_NAME is not None:
        return True
    return any(meta.get(name) for name in ("SCRIPT_URL", "REDIRECT_URL", "SCRIPT_NAME"))


def _over_read_limit(request: Any) -> bool:
    if not settings.RATELIMIT_ENABLE:
        return False
    usage = count_once(request, group=READ_GROUP, rate=settings.RATELIMIT_READS)
    return usage is not None and bool(usage["should_limit"])


def over_view_limit(request: Any, view: Any) -> bool:
    """Whether the view's own throttles refuse this request (its stand-in), as DRF runs them.

    The WSGI paths run this after every check that sends a request to the view, so the view
    counts those itself; a request handed on after it (over the limit, a page past the end, a
    product gone) is not counted again: the throttle marks the environ (`throttling.count_once`).
    """
    return not all(throttle.allow_request(request, view) for throttle in view.get_throttles())


class EnvironRequest:
    """Just enough of an anonymous GET for django-ratelimit's counter, our client key and the
    views' throttle."""

    method = "GET"
    user = None

    def __init__(self, environ: dict[str, Any]) -> None:
        self.META = environ


class CachedReadsApp:
    """WSGI wrapper: answer cache hits before Django sees the request."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        query_string = environ.get("QUERY_STRING", "")
        if not cache.enabled() or not anonymous_json_get(environ, query_string):
            return self.app(environ, start_response)
        secure = is_secure(environ)
        if settings.SECURE_SSL_REDIRECT and not secure:
            return self.app(environ, start_response)  # Django redirects it
        host = allowed_host(environ)
        if host is None:
            return self.app(environ, start_response)  # Django answers 400
        lookup = _lookup(
            environ.get("PATH_INFO", ""), query_string, host, "https" if secure else "http"
        )
        if lookup is None:
            return self.app(environ, start_response)
        entry = lookup.entry
        if entry is None or _over_read_limit(EnvironRequest(environ)):
            environ[LOOKUP_ENVIRON_KEY] = lookup
            return self.app(environ, start_response)
        status, headers, body = answer_entry(environ, entry)
        start_response(STATUS_LINES[status], [*headers, *security_headers(secure)])
        return [body]


def in_request_cycle(sender: type, environ: dict[str, Any], answer: Callable[[], T]) -> T:
    """`answer()` between Django's request_started and request_finished signals, as Django's
    handler runs a view: stale database connections are closed before, and returned after."""
    signals.request_started.send(sender=sender, environ=environ)
    try:
        return answer()
    finally:
        signals.request_finished.send(sender=sender)


STATUS_LINES = {200: "200 OK", 304: "304 Not Modified"}


def answer_entry(
    meta: dict[str, Any], entry: cache.Entry
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A cached answer as Django sends it (security headers apart): a 304 when If-None-Match
    names its ETag, with what the 200 would send of NOT_MODIFIED_KEEPS, else a 200 with the
    entry; each with the Content-Length that CommonMiddleware gives Django's answers."""
    etag = entry.etag
    if etag and "HTTP_IF_NONE_MATCH" in meta:
        request = HttpRequest()
        request.META = meta
        if if_none_match_fails(request, etag):
            kept = [
                (name, value) for name, value in entry.headers.items() if name in NOT_MODIFIED_KEEPS
            ]
            return 304, [*kept, ("Content-Length", "0")], b""
    return 200, [*entry.headers.items(), ("Content-Length", str(len(entry.body)))], entry.body


def is_secure(environ: dict[str, Any]) -> bool:
    """What `HttpRequest.is_secure()` would say, from the WSGI environ."""
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        header, value = proxy
        forwarded = environ.get(header)
        if forwarded is not None:
            return str(forwarded).split(",", 1)[0].strip() == value
    return environ.get("wsgi.url_scheme") == "https"


def allowed_host(environ: dict[str, Any]) -> str | None:
    """The host as `HttpRequest.get_host()` reads it, if ALLOWED_HOSTS allows it (else Django
    would answer 400)."""
    host = _raw_host(environ)
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return host if domain and validate_host(domain, allowed) else None


def _raw_host(environ: dict[str, Any]) -> str:
    """`HttpRequest._get_raw_host()`: a Host header that is present counts, even empty."""
    if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ:
        return str(environ["HTTP_X_FORWARDED_HOST"])
    if "HTTP_HOST" in environ:
        return str(environ["HTTP_HOST"])
    host = str(environ.get("SERVER_NAME", ""))
    port = str(environ.get("SERVER_PORT", ""))
    if settings.USE_X_FORWARDED_PORT and "HTTP_X_FORWARDED_PORT" in environ:  # get_port()
        port = str(environ["HTTP_X_FORWARDED_PORT"])
    return host if port == ("443" if is_secure(environ) else "80") else f"{host}:{port}"


def security_headers(secure: bool) -> list[tuple[str, str]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to every response."""
    headers = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        # As SecurityMiddleware writes it: a list, or a comma-separated string, joined by ",".
        values = policy.split(",") if isinstance(policy, str) else policy
        headers.append(("Referrer-Policy", ",".join(value.strip() for value in values)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        coop = str(settings.SECURE_CROSS_ORIGIN_OPENER_POLICY)
        headers.append(("Cross-Origin-Opener-Policy", coop))
    headers.append(("X-Frame-Options", str(settings.X_FRAME_OPTIONS).upper()))
    if secure and settings.SECURE_HSTS_SECONDS:
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        headers.append(("Strict-Transport-Security", hsts))
    return headers


class ProductCacheMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        lookup = self._lookup(request)
        if lookup is None:
            response = self.get_response(request)
            if request.method in ("PUT", "PATCH") and response.status_code == 200:
                _write_through(request, response)
            return response
        if lookup.entry is not None:
            return _hit(request, lookup.entry) or self.get_response(request)
        entry, lease = cache.claim(lookup)
        if entry is not None:
            return _hit(request, entry) or self.get_response(request)
        try:
            response = self.get_response(request)
            stored = _storable(response)
            if stored is not None:
                cache.store(lookup, stored, lease)
                lease = None  # released with the store
            return response
        finally:
            if lease is not None:
                cache.release(lookup, lease)

    @staticmethod
    def _lookup(request: HttpRequest) -> cache.Lookup | None:
        query_string = request.META.get("QUERY_STRING", "")
        if not cache.enabled() or not anonymous_json_get(request.META, query_string):
            return None
        # The WSGI layer looked already and missed (or the client is over its limit).
        looked: cache.Lookup | None = request.META.pop(LOOKUP_ENVIRON_KEY, None)
        if looked is not None:
            return looked
        return _lookup(
            request.path_info, query_string, request.get_host(), request.scheme or "http"
        )


def _hit(request: HttpRequest, entry: cache.Entry) -> HttpResponseBase | None:
    """The cached answer, or None when the client is over its rate limit (normal path: 429)."""
    if _over_read_limit(request):
        return None
    status, headers, body = answer_entry(request.META, entry)
    response = HttpResponseNotModified() if status == 304 else HttpResponse(body)
    for name, value in headers:
        response[name] = value
    return response


def _write_through(request: HttpRequest, response: HttpResponseBase) -> None:
    """A product update answered 200 with the product: what the next GET would answer too."""
    match = DETAIL.match(request.path_info)
    if match is None:
        return
    entry = _storable(response)  # only the representation a plain GET gets
    if entry is not None:
        keep_as_detail(int(match[1]), entry)


def keep_as_detail(product_id: int, entry: cache.Entry) -> None:
    """Keep a 200 answer to an update of this product as its cached detail.

    Best effort: the write is committed and invalidated by now, so trouble here (PostgreSQL
    failing over, say) must not turn its answer into an error.
    """
    if not cache.enabled():
        return
    version = etag_version(entry.etag, product_id)
    if version is None:
        return
    # A token-authenticated write did not look for a session; store what the GET would send.
    entry = cache.Entry(headers=vary_on_cookie(entry.headers), body=entry.body)
    try:
        cache.detail_write_through(
            product_id,
            entry,
            is_current=lambda: selectors.product_version(product_id=product_id) == version,
        )
    except Exception as exc:
        if database_unavailable(exc):  # the outage's line, once a minute, not a traceback
            log_database_unavailable(logger, exc)
        else:
            logger.warning("write-through of product %s skipped", product_id, exc_info=True)


def unavailable(
    headers: dict[str, str], exc: Exception
) -> tuple[str, list[tuple[str, str]], bytes]:
    """The view's 503 for the database error `exc` (errors.ServiceUnavailable, with its
    Retry-After), sent with `headers`, those the view sends with its JSON. The fast paths answer
    it themselves: the view would first wait out the connection pool's timeout again."""
    body = JSONRenderer().render(
        error_body(ServiceUnavailable.default_code, unavailable_detail(exc))
    )
    retry_after = ("Retry-After", str(ServiceUnavailable.wait))
    return "503 Service Unavailable", [*headers.items(), retry_after], body


def view_json_headers(view: Any) -> dict[str, str]:
    """What a DRF view sends with a JSON answer of its own: Content-Type, Allow, Vary."""
    return {"Content-Type": "application/json", **view.default_response_headers}


def vary_on_cookie(headers: dict[str, str]) -> dict[str, str]:
    """The headers with Cookie in Vary, as an anonymous GET answers them: SessionMiddleware
    adds it once DRF's session authentication has looked for a session."""
    vary = [name.strip() for name in headers.get("Vary", "").split(",") if name.strip()]
    if "cookie" not in {name.lower() for name in vary}:
        vary.append("Cookie")
    return {**headers, "Vary": ", ".join(vary)}


def _storable(response: HttpResponseBase) -> cache.Entry | None:
    if response.status_code != 200 or response.streaming:
        return None
    # What DRF negotiated, not the Content-Type: `indent=4` is answered as `application/json`.
    if getattr(response, "accepted_media_type", None) != "application/json":
        return None
    headers = {name: response[name] for name in STORED_HEADERS if response.has_header(name)}
    return cache.Entry(headers=headers, body=response.content)  # type: ignore[attr-defined]
