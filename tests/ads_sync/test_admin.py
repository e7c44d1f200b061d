"""The sync's records in the admin (ads_sync/admin.py): read only, with the columns, filters and
searches an operator follows a sync by. `admin_client` is pytest-django's (a superuser), as in
test_csp."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ads_sync.models import AdsAccount, CampaignDayMetric, SyncDay, SyncRun

pytestmark = pytest.mark.django_db

DAY = dt.date(2025, 1, 10)


def _run(**fields: object) -> SyncRun:
    return SyncRun.objects.create(trigger=SyncRun.Trigger.BACKFILL, output_dir="/tmp", **fields)


def _day(customer_id: str = "1111111111", **fields: object) -> SyncDay:
    return SyncDay.objects.create(customer_id=customer_id, date=DAY, **fields)


def _metric(campaign_id: int = 1, name: str = "Spring sale") -> CampaignDayMetric:
    return CampaignDayMetric.objects.create(
        customer_id="1111111111",
        date=DAY,
        campaign_id=campaign_id,
        campaign_name=name,
        impressions=100,
        clicks=10,
        cost_micros=1_234_567,
        conversions=Decimal("1.5"),
        currency_code="EUR",
        fetched_at=timezone.now(),
    )


def _account() -> AdsAccount:
    return AdsAccount.objects.create(
        customer_id="1111111111", time_zone="Europe/Paris", currency_code="EUR"
    )


RECORDS = {
    "syncrun": _run,
    "syncday": _day,
    "campaigndaymetric": _metric,
    "adsaccount": _account,
}


@pytest.mark.parametrize("model", RECORDS)
def test_no_sync_record_can_be_added_in_the_admin(admin_client, model) -> None:
    """The sync writes them: one added by hand would read as fetched from Google Ads."""
    assert admin_client.get(f"/admin/ads_sync/{model}/add/").status_code == 403


@pytest.mark.parametrize("model", RECORDS)
def test_a_sync_record_cannot_be_changed_in_the_admin(admin_client, model) -> None:
    record = RECORDS[model]()
    url = f"/admin/ads_sync/{model}/{record.pk}/change/"

    page = admin_client.get(url)
    response = admin_client.post(url, {"_save": "Save"})

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()  # shown read only
    assert response.status_code == 403


@pytest.mark.parametrize("model", RECORDS)
def test_a_sync_record_cannot_be_deleted_in_the_admin(admin_client, model) -> None:
    record = RECORDS[model]()
    listed = admin_client.get(f"/admin/ads_sync/{model}/")

    response = admin_client.post(f"/admin/ads_sync/{model}/{record.pk}/delete/", {"post": "yes"})

    assert 'value="delete_selected"' not in listed.content.decode()
    assert response.status_code == 403
    assert type(record).objects.filter(pk=record.pk).exists()


@pytest.mark.parametrize(
    ("model", "columns"),
    [
        ("syncrun", ["trigger", "failed", "deferred", "finished_at", "elapsed_s"]),
        ("syncday", ["state", "failures", "retry_after", "run", "last_error"]),
        ("campaigndaymetric", ["campaign_name", "cost_micros", "currency_code"]),
        ("adsaccount", ["time_zone", "currency_code"]),
    ],
)
def test_each_list_shows_what_an_operator_follows_a_sync_by(admin_client, model, columns) -> None:
    RECORDS[model]()

    page = admin_client.get(f"/admin/ads_sync/{model}/").content.decode()

    for column in columns:
        assert f"column-{column}" in page, column


@pytest.mark.parametrize(
    ("model", "choices"),
    [
        # Runs not finished (still running, or stopped dead), by what started them.
        ("syncrun", ["?finished_at__isempty=1", "?trigger__exact=beat"]),
        ("syncday", ["?state__exact=failed", "?customer_id=1111111111"]),
        ("campaigndaymetric", ["?customer_id=1111111111"]),
    ],
)
def test_a_list_offers_its_filters(admin_client, model, choices) -> None:
    RECORDS[model]()

    page = admin_client.get(f"/admin/ads_sync/{model}/").content.decode()

    for choice in choices:
        assert f'href="{choice}"' in page, choice


def test_sync_days_are_found_by_their_error(admin_client) -> None:
    _day("1111111111", state=SyncDay.State.FAILED, last_error="PERMISSION_DENIED for 111")
    _day("2222222222", state=SyncDay.State.DONE)

    page = admin_client.get("/admin/ads_sync/syncday/?q=permission_denied").content.decode()

    assert "1 result" in page
    assert "1111111111" in page


def test_sync_days_are_found_by_their_customer(admin_client) -> None:
    _day("1111111111")
    _day("2222222222")

    page = admin_client.get("/admin/ads_sync/syncday/?q=2222222222").content.decode()

    assert "1 result" in page
    assert "2222222222" in page


@pytest.mark.parametrize("query", ["12", "spring"])
def test_a_campaign_is_found_by_its_whole_id_or_its_name(admin_client, query) -> None:
    """A search for campaign 12 is not also one for campaigns 120 and 312."""
    _metric(12, "Spring sale")
    _metric(120, "Winter boots")

    page = admin_client.get(f"/admin/ads_sync/campaigndaymetric/?q={query}").content.decode()

    assert "Spring sale" in page
    assert "Winter boots" not in page


def test_the_sync_day_list_reads_each_day_s_run_in_the_same_query(admin_client) -> None:
    """One query per row otherwise, for the run column: a backfill's days are thousands."""
    for customer_id in ("1111111111", "2222222222", "3333333333"):
        _day(customer_id, run=_run())

    with CaptureQueriesContext(connection) as queries:
        admin_client.get("/admin/ads_sync/syncday/")

    assert not [q for q in queries if q["sql"].startswith('SELECT "ads_sync_syncrun"')]
