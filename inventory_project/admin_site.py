"""The admin site, with hand-edited addresses and forms answered as bad input, not a 500.

Django 5.2's admin answers a 500 for input no page of it sends, typed into an address or a
tampered form. This site refuses it, for every admin registered on it (ours, Django's auth and
DRF's tokens, django-celery-beat's):

- **A NUL character** (`%00`) in the address, a query parameter's name or value: PostgreSQL
  text cannot hold one, and psycopg refuses to send it (`/admin/auth/user/?username=%00`,
  `/admin/ads_sync/adsaccount/%00/change/`). A 400 that says so, ahead of the view and of its
  login check. (Form fields refuse a NUL themselves: Django's ProhibitNullCharactersValidator.)
- **A form body that is not UTF-8.** Django decodes it with replacement characters, so
  `name=%FF%FE` was stored as two U+FFFD, which the API refuses. A 400 naming the fields.
- **A change list filter the database cannot run**: a lookup on a field with a value it cannot
  take (`?name__regex=(`, `?stock_level__range=1`, `?created_at__year=10000`,
  `?stock_level__in=<20 digits>`), or a date hierarchy year with no end (year 9999, a 20-digit
  year). Django lets any lookup on a model's own fields through, and the query fails when the
  page counts its rows. These are treated as the bad lookups they are: Django then redirects to
  `?e=1`, as it does for a filter value it can tell is wrong, and the error is logged as a
  warning. Only what a filter's values can cause is caught: a missing table or a refused
  permission (also ProgrammingErrors) and a lost connection stay server errors.
- **An action on ids that are not ids** (`_selected_action=abc`): a 400 naming the value.
- **A filter on a credential** (`SECRET_FIELDS`: API token keys, password hashes), from any
  admin (`/admin/auth/user/?auth_token__key__startswith=8d`): Django allows a list to be
  filtered by its own fields and a related object's primary key, and "1 result" against
  "0 results" gave a whole key away a character at a time. Refused as Django refuses a lookup it
  does not allow (a 400).

`register` gives every admin class these checks (`GuardedAdmin`, ahead of the class's own
methods in its MRO) and its change list class `ChangeListGuard`.
`inventory_project.apps.AdminConfig` (in INSTALLED_APPS in place of `django.contrib.admin`)
makes `admin.site` an `AdminSite`, so every app's registrations go through it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views import main
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import DataError, ProgrammingError, router, transaction
from django.db.models import Model, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from rest_framework.exceptions import ValidationError as APIValidationError

from products.api.serializers import ensure_utf8

View = TypeVar("View", bound=Callable[..., Any])
NUL = "\x00"
NUL_REFUSED = (
    "This address holds a NUL character (%00): nothing stored here can contain one, so it"
    " names no object and filters nothing.\n"
)
# What a filter the database cannot run raises while the change list counts its rows: the
# database's refusal of a value (DataError: an invalid regular expression), psycopg's (a number
# too large for the column), Django's (a year outside Python's dates, a range with one bound).
BAD_LOOKUP = (DataError, ValueError, OverflowError, IndexError)
# ProgrammingErrors that a lookup causes: psycopg's own (no SQLSTATE: a range of three values
# has three parameters for two placeholders), and a function the database lacks (a lookup of
# an extension that is not installed, `__unaccent`). A missing table or a refused permission
# are ProgrammingErrors too, and stay server errors.
LOOKUP_SQLSTATES = {None, "42883"}  # undefined_function

logger = logging.getLogger(__name__)


class AdminSite(admin.AdminSite):
    def admin_view(self, view: View, cacheable: bool = False) -> View:
        inner = super().admin_view(view, cacheable)

        @functools.wraps(inner)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            refused = _refusal(request)
            if refused is not None:
                return _bad_request(refused)
            return inner(request, *args, **kwargs)

        return cast(View, checked)

    def register(
        self,
        model_or_iterable: Any,
        admin_class: type[admin.ModelAdmin] | None = None,
        **options: Any,
    ) -> None:
        super().register(model_or_iterable, _guarded(admin_class or admin.ModelAdmin), **options)


def _refusal(request: HttpRequest) -> str | None:
    """Why this request is refused before the view, if it is."""
    if NUL in request.path or any(
        NUL in name or any(NUL in value for value in values) for name, values in request.GET.lists()
    ):
        return NUL_REFUSED
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        try:
            ensure_utf8(request.body)
        except APIValidationError as exc:
            names = ", ".join(sorted(exc.detail))  # type: ignore[arg-type]
            return f"Not valid UTF-8: {names}. Forms are sent as UTF-8.\n"
    return None


def _bad_request(message: str) -> HttpResponse:
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


class ChangeListGuard(main.ChangeList):
    """A change list whose filters the database cannot run are bad lookups (see the module)."""

    def get_filters(self, request: HttpRequest) -> Any:
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:
            hierarchy = f"{self.date_hierarchy}__" if self.date_hierarchy else None
            if hierarchy is None or not any(name.startswith(hierarchy) for name in request.GET):
                raise  # not the date hierarchy's year: a bug, not a bad address
            raise _bad_lookup(request, exc) from exc

    def get_results(self, request: HttpRequest) -> None:
        # In a savepoint: the products admin's list save re-renders the list inside its own
        # transaction, which a failed count would otherwise leave unusable.
        try:
            with transaction.atomic(using=router.db_for_read(self.model)):
                super().get_results(request)
        except BAD_LOOKUP as exc:
            raise _bad_lookup(request, exc) from exc
        except ProgrammingError as exc:
            if getattr(exc.__cause__, "sqlstate", None) not in LOOKUP_SQLSTATES:
                raise
            raise _bad_lookup(request, exc) from exc


def _bad_lookup(request: HttpRequest, exc: Exception) -> IncorrectLookupParameters:
    logger.warning(
        "admin: a filter the database cannot run: %s", request.get_full_path(), exc_info=exc
    )
    return IncorrectLookupParameters(exc)


# (app label, model, field) of the values no admin may filter by, whoever may view them.
SECRET_FIELDS = {("authtoken", "token", "key"), ("auth", "user", "password")}


def reaches_secret(model: type[Model], lookup: str) -> bool:
    """Whether a change list filter `lookup` (`auth_token__key__startswith`) compares a secret:
    a field of SECRET_FIELDS, or a relation whose primary key is one (`auth_token=...`)."""

    def secret(on: type[Model], name: str) -> bool:
        concrete = on._meta.concrete_model or on  # a proxy's (TokenProxy) fields are its model's
        return (concrete._meta.app_label, concrete._meta.model_name, name) in SECRET_FIELDS

    related = False  # whether `model` was reached through a relation
    for part in lookup.split(LOOKUP_SEP):
        if part == "pk":
            part = model._meta.pk.name
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            break  # a lookup (`startswith`) or a transform: it compares what came before
        if secret(model, field.name):
            return True
        if not field.is_relation or field.related_model is None:
            return False
        model, related = field.related_model, True
    return related and secret(model, model._meta.pk.name)


class GuardedAdmin(admin.ModelAdmin):
    """What `AdminSite.register` adds to every admin class."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if reaches_secret(self.model, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[main.ChangeList]:
        return _guarded_changelist(super().get_changelist(request, **kwargs))

    def response_action(
        self, request: HttpRequest, queryset: QuerySet[Any], *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        pk = self.model._meta.pk
        assert pk is not None
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            try:
                pk.to_python(value)
            except ValidationError:
                return _bad_request(f"Not an id of this list: {value[:100]!r}.\n")
        return super().response_action(request, queryset, *args, **kwargs)


def _guarded(admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    return _with_first(GuardedAdmin, admin_class)


def _guarded_changelist(changelist: type[main.ChangeList]) -> type[main.ChangeList]:
    return _with_first(ChangeListGuard, changelist)


_Class = TypeVar("_Class", bound=type)
_made: dict[tuple[type, type], type] = {}


def _with_first(guard: type, cls: _Class) -> _Class:
    """`cls` with `guard` first in its MRO: one class per pair, named as `cls`.

    `isinstance` holds, `type(...) is cls` does not, and the class cannot be pickled by name
    (nothing pickles admin classes). Admin and change list classes are fixed per admin, so the
    pairs are few.
    """
    if issubclass(cls, guard):
        return cls
    made = _made.get((guard, cls))
    if made is None:
        attrs = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        made = _made[guard, cls] = type(cls.__name__, (guard, cls), attrs)
    return cast(_Class, made)
