"""Page metadata and next/previous links for both paging modes."""

from __future__ import annotations

from typing import Any

from rest_framework.utils.urls import remove_query_param, replace_query_param

from products.api.serializers import ProductOutputSerializer
from products.selectors import KeysetPage, OffsetPage


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
