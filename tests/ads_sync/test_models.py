from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError
from django.utils import timezone

from ads_sync.models import CampaignDayMetric, SyncDay

pytestmark = pytest.mark.django_db


def _metric(**overrides: object) -> CampaignDayMetric:
    fields: dict[str, object] = {
        "customer_id": "1111111111",
        "date": dt.date(2025, 1, 1),
        "campaign_id": 7,
        "campaign_name": "c",
        "impressions": 1,
        "clicks": 1,
        "cost_micros": 1,
        "conversions": Decimal("0"),
        "currency_code": "EUR",
        "fetched_at": timezone.now(),
    }
    fields.update(overrides)
    return CampaignDayMetric(**fields)


def test_a_campaign_day_is_unique_on_customer_campaign_and_date() -> None:
    _metric().save()
    with pytest.raises(IntegrityError):
        _metric(campaign_name="again").save()


def test_negative_metrics_are_refused_by_the_database() -> None:
    with pytest.raises(IntegrityError):
        _metric(clicks=-1).save()


def test_the_ledger_holds_one_entry_per_customer_and_date() -> None:
    SyncDay.objects.create(customer_id="1", date=dt.date(2025, 1, 1))
    with pytest.raises(IntegrityError):
        SyncDay.objects.create(customer_id="1", date=dt.date(2025, 1, 1))
