"""Answer product list and search pages ahead of the framework.

`ProductPagesApp` wraps the WSGI application (inventory_project/wsgi.py), below
`fast_path.CachedReadsApp`: it answers what the cache did not, the list and search pages an
anonymous client asks for in JSON, when the cache is off or missed. It does what
`ProductListView` and `ProductSearchView` do, with the same parts: the same query serializers
and UTF-8 check, the view's throttle, the same page functions (`views.list_page`,
`views.search_page`: the selectors, the page metadata and the output serializer), the same
renderer, the ETag and If-None-Match handling of the view's `finalize_response`, and the headers
the view and Django's middleware send. On a cache miss it stores the page as the middleware
would, as the one loader of its key.

What it leaves out is the generic machinery around those parts (Django's and DRF's request
objects, the middlewares, URL resolution, authentication of a request that carries no
credentials, content negotiation): most of a page's CPU apart from PostgreSQL.

Everything else falls through to Django untouched, and so does every request that would not
get a 200 or a 304: invalid parameters, a page past the end, a client over its rate limit. The
views answer those with the usual errors, so errors have one implementation. One error is
answered here: the database unavailable, a 503 in the view's shape, since the view would first
wait out the connection pool's timeout again. Nothing is written here but the rate-limit
counter (counted once per request, whoever looks: `throttling.count_once`) and the cache entry.
`PRODUCT_FAST_READS=false` switches the path off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils.cache import set_response_etag
from rest_framework.renderers import JSONRenderer

from products import cache
from products.api import errors, fast_path
from products.api.pagination import page_url
from products.api.serializers import ListQuerySerializer, SearchQuerySerializer
from products.api.views import (
    PageFunction,
    ProductAPIView,
    ProductListView,
    ProductSearchView,
    list_page,
    query_serializer,
    search_page,
)

logger = logging.getLogger(__name__)

Answer = tuple[str, list[tuple[str, str]], bytes]


class _Page:
    """One kind of page: its view (read only: throttles, response headers), query and page."""

    def __init__(
        self,
        view: ProductAPIView,
        serializer_class: type[ListQuerySerializer],
        page_function: PageFunction,
    ) -> None:
        view.setup(HttpRequest())
        self.view = view
        self.serializer_class = serializer_class
        self.page_function = page_function


class ProductPagesApp:
    """WSGI wrapper: anonymous JSON list and search pages, without Django's request cycle."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.pages = {
            "list": _Page(ProductListView(), ListQuerySerializer, list_page),
            "search": _Page(ProductSearchView(), SearchQuerySerializer, search_page),
        }
        self.renderer = JSONRenderer()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        eligible = self._eligible(environ)
        if eligible is None:
            return self.app(environ, start_response)
        page, host = eligible
        lookup: cache.Lookup | None = environ.get(fast_path.LOOKUP_ENVIRON_KEY)
        if cache.enabled() and (lookup is None or lookup.entry is not None):
            # The cache layer did not look (the view refuses the query), or it found the page
            # for a client over its rate limit (the view answers 429).
            return self.app(environ, start_response)
        answer = fast_path.in_request_cycle(
            self.__class__, environ, lambda: self._answer(environ, page, host, lookup)
        )
        if answer is None:
            return self.app(environ, start_response)
        status, headers, content = answer
        headers.extend(fast_path.security_headers(fast_path.is_secure(environ)))
        start_response(status, headers)
        return [content]

    def _eligible(self, environ: dict[str, Any]) -> tuple[_Page, str] | None:
        """The page and the host its links name, if this is a request this path answers."""
        if not settings.PRODUCT_FAST_READS:
            return None
        kind = fast_path.PAGES.get(environ.get("PATH_INFO", ""))
        query_string = environ.get("QUERY_STRING", "")
        if kind is None or not fast_path.anonymous_json_get(environ, query_string):
            return None
        if settings.SECURE_SSL_REDIRECT and not fast_path.is_secure(environ):
            return None  # Django redirects it
        host = fast_path.allowed_host(environ)
        if host is None:
            return None  # Django answers 400
        return self.pages[kind], host

    def _answer(
        self, environ: dict[str, Any], page: _Page, host: str, lookup: cache.Lookup | None
    ) -> Answer | None:
        """The 200 or 304 the view would send, or None to let the view answer."""
        query_string = environ.get("QUERY_STRING", "")
        try:
            # As the view validates `request.query_params` (Django's QueryDict of the raw query).
            params = QueryDict(query_string.encode("latin-1"))
            serializer = query_serializer(page.serializer_class, params, query_string)
            request = fast_path.EnvironRequest(environ)
            if not serializer.is_valid() or fast_path.over_view_limit(request, page.view):
                return None
        except Exception:
            return None  # the view answers, and logs what it has to
        lease = None
        if lookup is not None:
            entry, lease = cache.claim(lookup)
            if entry is not None:  # another reader loaded it meanwhile
                return _from_entry(environ, entry)
        try:
            loaded = self._load(environ, page, host, serializer.validated_data)
            if not isinstance(loaded, cache.Entry):
                return loaded
            if lookup is not None:
                cache.store(lookup, loaded, lease)
                lease = None  # released with the store
            return _from_entry(environ, loaded)
        finally:
            if lookup is not None and lease is not None:
                cache.release(lookup, lease)

    def _load(
        self, environ: dict[str, Any], page: _Page, host: str, query: dict[str, Any]
    ) -> cache.Entry | Answer | None:
        """The page, to store and send; or the 503 to send; or None: the view answers."""
        url = page_url(
            scheme="https" if fast_path.is_secure(environ) else "http",
            host=host,
            path=environ["PATH_INFO"],
            query_string=environ.get("QUERY_STRING", ""),
        )
        try:
            content = self.renderer.render(page.page_function(query, url))
        except (OperationalError, InterfaceError) as exc:
            # Answered here as the view answers it: the view would first wait for a
            # connection as long again.
            errors.log_database_unavailable(logger, exc)
            status, headers, body = fast_path.unavailable(_headers(page.view), exc)
            return status, [*headers, ("Content-Length", str(len(body)))], body
        except Exception:
            return None  # a page past the end (404): the view answers
        return _entry(page.view, content)


def _entry(view: ProductAPIView, content: bytes) -> cache.Entry:
    """The page with the headers the view and the middleware send with it."""
    response = HttpResponse(content)
    set_response_etag(response)  # as the view's finalize_response
    return cache.Entry(headers={**_headers(view), "ETag": response["ETag"]}, body=content)


def _headers(view: ProductAPIView) -> dict[str, str]:
    """What the view and the middleware send with any JSON answer of it."""
    return fast_path.vary_on_cookie(fast_path.view_json_headers(view))


def _from_entry(environ: dict[str, Any], entry: cache.Entry) -> Answer:
    status, headers, body = fast_path.answer_entry(environ, entry)
    return fast_path.STATUS_LINES[status], headers, body
