"""The project's admin: its site (inventory_project/admin_site.py) and Periodic tasks."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import OperationalError as KombuOperationalError

from inventory_project import tasks
from inventory_project.admin_site import NUL_REFUSED

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    get_user_model().objects.create_superuser("boss", "", "pw")
    client.login(username="boss", password="pw")
    client.raise_request_exception = False  # a 500 is an answer to look at here
    return client


@pytest.mark.parametrize(
    "url",
    [
        # A filter on a text column, in our admins and in Django's and django-celery-beat's.
        "/admin/products/product/?name=%00",
        "/admin/ads_sync/syncday/?customer_id=%00",
        "/admin/auth/user/?username=%00",
        "/admin/django_celery_beat/periodictask/?name=%00",
        # An object id that is text (AdsAccount's customer id).
        "/admin/ads_sync/adsaccount/%00/change/",
        # In a parameter's name.
        "/admin/products/product/?%00=1",
    ],
)
def test_an_address_with_a_nul_character_is_a_400_that_says_so(admin_client, url) -> None:
    response = admin_client.get(url)

    assert response.status_code == 400
    assert response.content.decode() == NUL_REFUSED


def test_the_nul_check_leaves_other_addresses_alone(admin_client) -> None:
    assert admin_client.get("/admin/products/product/?name=x").status_code == 200
    assert admin_client.get("/admin/ads_sync/adsaccount/x/change/").status_code == 302  # gone


RUNS = "/admin/ads_sync/syncrun/"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        # OverflowError building the first date
        (RUNS, "started_at__year=99999999999999999999"),
        # ValueError building the end of the year, the month or the day
        (RUNS, "started_at__year=9999"),
        (RUNS, "started_at__year=9999&started_at__month=12"),
        (
            "/admin/ads_sync/syncrun/",
            "started_at__year=9999&started_at__month=12&started_at__day=31",
        ),
        # A date column, not a timestamp
        ("/admin/ads_sync/syncday/", "date__year=9999&date__month=12"),
    ],
)
def test_a_date_hierarchy_year_without_an_end_is_a_bad_lookup_not_a_500(
    admin_client, path, query
) -> None:
    response = admin_client.get(f"{path}?{query}")

    # As Django answers any filter value it cannot use: back to the list with ?e=1.
    assert response.status_code == 302
    assert response["Location"] == f"{path}?e=1"


def test_a_date_hierarchy_year_that_has_an_end_still_filters(admin_client) -> None:
    response = admin_client.get("/admin/ads_sync/syncday/?date__year=9998&date__month=12")

    assert response.status_code == 200


def test_running_a_periodic_task_while_the_broker_is_away_is_a_message_not_a_500(
    admin_client, monkeypatch
) -> None:
    client = admin_client
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
