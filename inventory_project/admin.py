"""django-celery-beat's Periodic tasks admin, with a clear message when the broker is away."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import OperationalError as KombuOperationalError


class BrokerAwarePeriodicTaskAdmin(PeriodicTaskAdmin):
    """'Run selected tasks' answered a 500 page when RabbitMQ could not be reached."""

    @admin.action(description=PeriodicTaskAdmin.run_tasks.short_description)
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        try:
            super().run_tasks(request, queryset)
        except KombuOperationalError as exc:
            self.message_user(
                request,
                f"Not every task was sent: the message broker could not be reached ({exc}).",
                level=messages.ERROR,
            )


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, BrokerAwarePeriodicTaskAdmin)
