"""Page metadata and next/previous links for both paging modes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.utils.encoding import escape_uri_path
from rest_framework.utils.urls import remove_query_param, replace_query_param

from products.api.serializers import ProductOutputSerializer
from products.selectors import KeysetPage, OffsetPage

# What a URI's query may hold as it is (RFC 3986's pchar, "/" and "?"); "%" too, to keep the
# client's own escapes.
_QUERY_SAFE = "/?:@!$&'()*+,;=~%"


def page_url(*, scheme: str, host: str, path: str, query_string: str) -> str:
    """The absolute URL a page was asked for, its query's bytes as the client sent them.

    WSGI hands the query over as Latin-1 text. Django's build_absolute_uri quotes that text as
    UTF-8, so a query sent with unquoted UTF-8 bytes would get links to another search: each
    byte of `è` quoted as the character it is in Latin-1 (`%C3%83%C2%A8`).
    """
    query = quote(query_string.encode("latin-1"), safe=_QUERY_SAFE)
    return f"{scheme}://{host}{escape_uri_path(path)}" + (f"?{query}" if query else "")


def offset_page_data(url: str, page: OffsetPage) -> dict[str, Any]:
    """The page as the API answers it; `url` is the absolute URL it was asked for."""
    next_url = replace_query_param(url, "page", page.page + 1) if page.has_next else None
    previous_url = None
    if page.has_previous:
        previous_url = (
            replace_query_param(url, "page", page.page - 1)
            if page.page > 2
            else remove_query_param(url, "page")
        )
    return {
        "count": page.count,
        "page": page.page,
        "limit": page.limit,
        "total_pages": page.total_pages,
        "after_id": None,
        "next": next_url,
        "previous": previous_url,
        "results": ProductOutputSerializer(page.products, many=True).data,
    }


def keyset_page_data(url: str, page: KeysetPage) -> dict[str, Any]:
    next_url = None
    if page.next_after_id is not None:
        next_url = replace_query_param(url, "after_id", page.next_after_id)
    return {
        "count": None,
        "page": None,
        "limit": page.limit,
        "total_pages": None,
        "after_id": page.after_id,
        "next": next_url,
        "previous": None,
        "results": ProductOutputSerializer(page.products, many=True).data,
    }
