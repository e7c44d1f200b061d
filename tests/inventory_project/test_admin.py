"""The project's admin pages: Periodic tasks (django-celery-beat)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import OperationalError as KombuOperationalError

from inventory_project import tasks

pytestmark = pytest.mark.django_db


def test_running_a_periodic_task_while_the_broker_is_away_is_a_message_not_a_500(
    client, monkeypatch
) -> None:
    get_user_model().objects.create_superuser("boss", "", "pw")
    client.login(username="boss", password="pw")
    call_command("ensure_periodic_tasks")
    entry = PeriodicTask.objects.get(task=tasks.clear_expired_sessions.name)

    def refused(*args: object, **kwargs: object) -> None:
        raise KombuOperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(tasks.clear_expired_sessions, "apply_async", refused)
    response = client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "run_tasks", "_selected_action": [entry.pk]},
        follow=True,
    )

    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert any("message broker could not be reached" in m for m in shown), shown
