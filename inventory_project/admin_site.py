"""The admin site, and its change list, with addresses no stored row can match refused.

Django 5.2's admin answers a 500 for two kinds of hand-edited address:

- **A NUL character** (`%00`) in a filter's value or an object's id: PostgreSQL text cannot
  hold one, and psycopg refuses to send it. The site refuses such a request with a 400 that
  says so, before any admin view runs (`/admin/auth/user/?username=%00`,
  `/admin/ads_sync/adsaccount/%00/change/`).
- **A date hierarchy year that has no end** within Python's dates: a 20-digit year
  (OverflowError) and year 9999, whose next year or month cannot be built (ValueError). Django
  catches only the ValueError of the first date. `ChangeList` treats both as the bad lookups
  they are: Django redirects to `?e=1`, as it does for a filter value it cannot use.

`inventory_project.apps.AdminConfig` (in INSTALLED_APPS in place of `django.contrib.admin`)
makes `admin.site` an `AdminSite`, so every app's registrations, Django's own admins
included, are served through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views import main
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

View = TypeVar("View", bound=Callable[..., Any])
NUL = "\x00"
NUL_REFUSED = (
    "This address holds a NUL character (%00): nothing stored here can contain one, so it"
    " names no object and filters nothing.\n"
)


class AdminSite(admin.AdminSite):
    def admin_view(self, view: View, cacheable: bool = False) -> View:
        inner = super().admin_view(view, cacheable)

        @functools.wraps(inner)
        def refusing_nul(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if _holds_nul(request):
                return HttpResponseBadRequest(NUL_REFUSED, content_type="text/plain; charset=utf-8")
            return inner(request, *args, **kwargs)

        return cast(View, refusing_nul)


def _holds_nul(request: HttpRequest) -> bool:
    # The path as decoded (object ids), and each query parameter's name and values.
    if NUL in request.path:
        return True
    return any(
        NUL in name or any(NUL in value for value in values) for name, values in request.GET.lists()
    )


class ChangeList(main.ChangeList):
    """Django's, with a date hierarchy year it cannot turn into a range refused as a bad lookup."""

    def get_filters(self, request: HttpRequest) -> Any:
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc
