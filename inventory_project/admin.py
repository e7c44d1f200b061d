"""django-celery-beat's admin, with what it let through refused as bad input, not a 500.

- Periodic tasks: clear messages when a task cannot be sent (`run_tasks`), a form that
  refuses arguments that could never be sent (`PeriodicTaskForm`), and actions that need the
  permission to change tasks (upstream offers them to anyone who may view the list).
- Crontabs: the form shown again with its errors no longer crashes describing the schedule.
- API tokens: a key is shown once, to whoever creates it, and after that only its first
  characters (DRF's admin listed every key to anyone who may view tokens). Tokens are not
  edited, and only a superuser manages the token of a user with rights the editor lacks.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR, TO_FIELD_VAR
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.core.validators import ProhibitNullCharactersValidator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.html import format_html
from django_celery_beat import admin as beat_admin
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from kombu.exceptions import OperationalError as KombuOperationalError
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import Token, TokenProxy


class PeriodicTaskForm(beat_admin.PeriodicTaskForm):
    """django-celery-beat's form, refusing on their fields what it stored or crashed on.

    - Arguments that are JSON but not a list (positional) or an object (keyword, headers) were
      stored, and made "Run selected tasks" and the worker fail; headers were not checked at
      all. JSON nested too deeply for Python's parser was a RecursionError (a 500).
    - A task name the "custom" field refused (too long, a NUL character) was a KeyError in the
      form's clean (a 500), and a NUL in the registered task's name reached PostgreSQL.
    """

    _SHAPES = {
        "args": (list, "a JSON list"),
        "kwargs": (dict, "a JSON object"),
        "headers": (dict, "a JSON object"),
    }

    def clean_regtask(self) -> Any:
        value = self.cleaned_data.get("regtask")
        ProhibitNullCharactersValidator()(value)
        return value

    def clean_headers(self) -> Any:
        return self._clean_json("headers")

    def _clean_json(self, field: str) -> Any:
        value = self.cleaned_data[field]
        expected, named = self._SHAPES[field]
        try:
            loaded = json.loads(value)  # empty is not JSON: the base refused it too
        except RecursionError as exc:
            raise forms.ValidationError("Unable to parse JSON: nested too deeply.") from exc
        except ValueError as exc:
            raise forms.ValidationError(f"Unable to parse JSON: {exc}") from exc
        if not isinstance(loaded, expected):
            raise forms.ValidationError(f"Must be {named}.")
        return value

    def clean(self) -> Any:
        if "task" in self._errors:
            return self.cleaned_data  # the field's own error says why; the base would KeyError
        return super().clean()


class BrokerAwarePeriodicTaskAdmin(PeriodicTaskAdmin):
    """'Run selected tasks' answered a 500 page when RabbitMQ could not be reached, and when a
    task's stored arguments did not fit it (celery checks them as it sends). Such tasks are now
    named in a message, and none of the selection is sent.

    Upstream's actions declare no permission, so a user who may only view periodic tasks could
    switch off the daily sync or send its tasks at will: each action here needs `change`.
    """

    form = PeriodicTaskForm

    @admin.action(
        description=PeriodicTaskAdmin.enable_tasks.short_description, permissions=["change"]
    )
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().enable_tasks(request, queryset)

    @admin.action(
        description=PeriodicTaskAdmin.disable_tasks.short_description, permissions=["change"]
    )
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().disable_tasks(request, queryset)

    @admin.action(
        description=PeriodicTaskAdmin.toggle_tasks.short_description, permissions=["change"]
    )
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().toggle_tasks(request, queryset)

    @admin.action(description=PeriodicTaskAdmin.run_tasks.short_description, permissions=["change"])
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self.celery_app.loader.import_default_modules()
        unfit = [f"{entry.name}: {why}" for entry in queryset if (why := self._unfit(entry))]
        if unfit:
            self.message_user(
                request,
                "No task was sent: the stored arguments do not fit the task. " + "; ".join(unfit),
                level=messages.ERROR,
            )
            return
        try:
            super().run_tasks(request, queryset)
        except KombuOperationalError as exc:
            self.message_user(
                request,
                f"Not every task was sent: the message broker could not be reached ({exc}).",
                level=messages.ERROR,
            )

    def _unfit(self, entry: PeriodicTask) -> str | None:
        """Why celery would refuse to send this entry's task with its stored arguments."""
        try:
            # As django-celery-beat reads them to send them, an unknown task's too: before it
            # looks the tasks up (a 500 for arguments stored before the form refused them).
            args, kwargs = json.loads(entry.args), json.loads(entry.kwargs)
        except (ValueError, RecursionError):
            return "the arguments are not JSON"
        task: Any = self.celery_app.tasks.get(entry.task)
        if task is None:
            return None  # django-celery-beat names an unknown task itself
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            return "the positional arguments must be a JSON list, the keyword ones an object"
        # What apply_async checks them with, when the task asks for it (typing, the default).
        check = getattr(task, "__header__", None) if getattr(task, "typing", False) else None
        if check is not None:
            try:
                check(*args, **kwargs)
            except TypeError as exc:
                return str(exc)
        return None


class CrontabScheduleAdmin(beat_admin.CrontabScheduleAdmin):
    """The schedule's description no longer crashes on values celery cannot parse.

    The form checks each field, and shows itself again with the errors, describing the
    schedule as it was typed: celery's parser raised on `-1` or `1,,2` (a ParseException the
    model's `human_readable` does not catch), a 500 instead of the errors.
    """

    @admin.display(description="human readable")
    def human_readable(self, obj: CrontabSchedule) -> str:
        try:
            return str(obj.human_readable)
        except Exception:
            return "(not a valid schedule)"


class KeyHidingTokenAdmin(TokenAdmin):
    """DRF's token admin, but keys are credentials: the list and searches never show one
    (and no admin may filter by one: `admin_site.SECRET_FIELDS`).

    A new key is shown once, in the message after it is created; a lost key is replaced by
    deleting the token and adding another. Keys are still stored in clear (DRF's model).

    - No token page answers as a popup: a popup hands its opener the object's primary key,
      which is the key (saving a token's page with `_popup=1` answered it whole).
    - A token is never edited: its user does not change, so a token made for one user never
      becomes another's (the change page shows it, read only).
    - A user who is not a superuser may add (or delete, to replace) only the token of a user
      whose rights are theirs too: not a superuser's, nor one of a user with a permission they
      lack. The add form offers only those users, and the save checks again.
    """

    list_display = ("key_start", "user", "created")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # A popup's rows carry the value it hands back to its opener, the key here (the token's
        # primary key), in each link: nothing picks a token in a popup.
        return _popup_refused(request) or super().changelist_view(request, extra_context)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return _popup_refused(request) or super().changeform_view(
            request, object_id, form_url, extra_context
        )

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return _popup_refused(request) or super().delete_view(request, object_id, extra_context)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or _may_manage_token_of(request.user, obj.user))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            kwargs["queryset"] = _users_within_rights_of(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: TokenProxy, form: Any, change: bool) -> None:
        if not _may_manage_token_of(request.user, obj.user):
            raise PermissionDenied
        super().save_model(request, obj, form, change)

    @admin.display(description="key")
    def key_start(self, token: TokenProxy) -> str:
        return f"{token.key[:KEY_SHOWN]}..."

    def response_add(
        self, request: HttpRequest, obj: TokenProxy, post_url_continue: str | None = None
    ) -> HttpResponse:
        self.message_user(
            request,
            format_html(
                "The key of {}'s new token is <code>{}</code>. Copy it now: it is not shown again.",
                obj.user,
                obj.key,
            ),
            level=messages.WARNING,
        )
        return super().response_add(request, obj, post_url_continue)


# Enough to tell tokens apart in the list, far too little to guess the rest.
KEY_SHOWN = 6


def _popup_refused(request: HttpRequest) -> HttpResponse | None:
    """A 400 for a token page asked for as a popup (or for a popup's field), else None."""
    if any(
        name in query
        for name in (IS_POPUP_VAR, TO_FIELD_VAR)
        for query in (request.GET, request.POST)
    ):
        return HttpResponseBadRequest(
            "Token pages do not open in a popup.\n", content_type="text/plain"
        )
    return None


def _users_within_rights_of(editor: Any) -> QuerySet[Any]:
    """The users whose token `editor` may manage: anyone for a superuser; otherwise users who
    are not superusers and hold no permission (of their own or a group's) that `editor` lacks.
    A token acts with its user's rights, so managing one is holding them."""
    users = get_user_model().objects.all()
    if editor.is_superuser:
        return users
    theirs = Permission.objects.filter(Q(user=editor) | Q(group__user=editor))
    lacked = Permission.objects.exclude(pk__in=theirs.values("pk"))
    return (
        users.filter(is_superuser=False)
        .exclude(user_permissions__in=lacked)
        .exclude(groups__permissions__in=lacked)
    )


def _may_manage_token_of(editor: Any, user: Any) -> bool:
    return bool(editor.is_superuser) or _users_within_rights_of(editor).filter(pk=user.pk).exists()


def _token_str(token: Token) -> str:
    return f"token of {token.user}"


# A token's str() is its key, and the admin shows str() in titles, breadcrumbs, messages, the
# delete pages (a user's too: the token is deleted with it) and stores it in the history
# (LogEntry.object_repr). Nothing else here calls it: the API and DRF's commands use `.key`.
Token.__str__ = _token_str  # type: ignore[method-assign,assignment]


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, BrokerAwarePeriodicTaskAdmin)
admin.site.unregister(CrontabSchedule)
admin.site.register(CrontabSchedule, CrontabScheduleAdmin)
admin.site.unregister(TokenProxy)
admin.site.register(TokenProxy, KeyHidingTokenAdmin)
