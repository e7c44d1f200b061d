"""DRF's content negotiation, with a clear answer for an unknown `format`."""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.exceptions import NotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's, except that a `format` no renderer has names the formats there are.

    DRF raises a bare Http404 for it: `?format=xml` on a product that exists was answered
    "Not found.", as if the product were missing. It stays a 404 (no such representation).
    """

    def filter_renderers(
        self, renderers: Iterable[BaseRenderer], format: str
    ) -> list[BaseRenderer]:
        renderers = list(renderers)
        found = [renderer for renderer in renderers if renderer.format == format]
        if not found:
            known = ", ".join(sorted({str(renderer.format) for renderer in renderers}))
            raise NotFound(f"There is no format {format!r} here; use one of: {known}.")
        return found
