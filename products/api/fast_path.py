"""Serve cached product reads ahead of the framework.

A cache hit is answered here, right after the security middleware: no session, CSRF, auth,
URL resolution or DRF work, and no PostgreSQL. Everything else (a miss, a write, an
authenticated or browsable-API request) falls through to the normal DRF view; on the way back
a cacheable 200 is stored under the key that was current *before* the view read the database
(see products/cache.py for why that makes late stores harmless).

Only anonymous JSON reads take the fast path, so rate limiting them here by client IP (the same
django-ratelimit counter the DRF throttle uses) is exact; over the limit, the request falls
through and the normal path answers 429.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotModified
from django_ratelimit.core import get_usage

from products import cache
from products.api.throttling import READ_GROUP, client_key
from products.api.views import if_none_match_fails

_DETAIL = re.compile(r"^/api/products/(\d{1,18})/?$")
_PAGES = {"/api/products": "list", "/api/products/": "list"}
_PAGES.update({"/api/products/search": "search", "/api/products/search/": "search"})
STORED_HEADERS = ("Content-Type", "ETag", "Vary", "Allow")


class ProductCacheMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        lookup = self._lookup(request) if _eligible(request) else None
        if lookup is None:
            return self.get_response(request)
        if lookup.entry is not None:
            return _hit(request, lookup.entry) or self.get_response(request)
        entry, leader = cache.claim(lookup)
        if entry is not None:
            return _hit(request, entry) or self.get_response(request)
        try:
            response = self.get_response(request)
            stored = _storable(response)
            if stored is not None:
                cache.store(lookup, stored)
            return response
        finally:
            if leader:
                cache.release(lookup)

    @staticmethod
    def _lookup(request: HttpRequest) -> cache.Lookup | None:
        path = request.path_info
        match = _DETAIL.match(path)
        if match:
            return cache.detail_lookup(int(match[1]))
        kind = _PAGES.get(path)
        if kind is None:
            return None
        # Pages carry absolute next/previous links: the host and scheme are part of the query.
        params = {
            "_host": request.get_host(),
            "_scheme": request.scheme,
            **{key: ",".join(values) for key, values in request.GET.lists()},
        }
        return cache.page_lookup(kind, params)


def _eligible(request: HttpRequest) -> bool:
    """Anonymous GETs that DRF would answer in JSON."""
    if request.method != "GET" or not cache.enabled():
        return False
    if "HTTP_AUTHORIZATION" in request.META or settings.SESSION_COOKIE_NAME in request.COOKIES:
        return False
    if "format" in request.GET:
        return False
    accept = request.META.get("HTTP_ACCEPT", "*/*")
    return "text/html" not in accept


def _hit(request: HttpRequest, entry: cache.Entry) -> HttpResponseBase | None:
    """The cached answer, or None when the client is over its rate limit (normal path: 429)."""
    if settings.RATELIMIT_ENABLE:
        usage = get_usage(
            request,
            group=READ_GROUP,
            key=client_key,
            rate=settings.RATELIMIT_READS,
            increment=True,
        )
        if usage is not None and usage["should_limit"]:
            return None
    etag = entry.etag
    if etag and if_none_match_fails(request, etag):
        response: HttpResponseBase = HttpResponseNotModified()
        response["ETag"] = etag
        return response
    response = HttpResponse(entry.body)
    for name, value in entry.headers.items():
        response[name] = value
    return response


def _storable(response: HttpResponseBase) -> cache.Entry | None:
    if response.status_code != 200 or response.streaming:
        return None
    if not response.get("Content-Type", "").startswith("application/json"):
        return None
    headers = {name: response[name] for name in STORED_HEADERS if response.has_header(name)}
    return cache.Entry(headers=headers, body=response.content)  # type: ignore[attr-defined]
