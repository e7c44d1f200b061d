"""django-celery-beat's Periodic tasks admin, with clear messages when a task cannot be sent."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import OperationalError as KombuOperationalError


class BrokerAwarePeriodicTaskAdmin(PeriodicTaskAdmin):
    """'Run selected tasks' answered a 500 page when RabbitMQ could not be reached, and when a
    task's stored arguments did not fit it (celery checks them as it sends). Such tasks are now
    named in a message, and none of the selection is sent."""

    @admin.action(description=PeriodicTaskAdmin.run_tasks.short_description)
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
        task: Any = self.celery_app.tasks.get(entry.task)
        if task is None:
            return None  # django-celery-beat names an unknown task itself
        try:
            args, kwargs = json.loads(entry.args or "[]"), json.loads(entry.kwargs or "{}")
        except ValueError:
            return "the arguments are not JSON"
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            return "the positional arguments must be a JSON list, the keyword ones an object"
        check = getattr(task, "__header__", None)  # what apply_async checks them with
        if check is not None:
            try:
                check(*args, **kwargs)
            except TypeError as exc:
                return str(exc)
        return None


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, BrokerAwarePeriodicTaskAdmin)
