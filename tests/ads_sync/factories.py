"""Builders for ads_sync tests (the sandbox fixture is in conftest.py, from the client work)."""

from __future__ import annotations

import datetime as dt

from ads_sync.integrations.google_ads import CampaignDay


def campaign_day(
    *,
    customer_id: str = "1111111111",
    day: dt.date = dt.date(2025, 1, 10),
    campaign_id: int = 1,
    impressions: int = 100,
    clicks: int = 10,
    cost_micros: int = 1_234_567,
    conversions: float = 1.5,
    name: str | None = None,
) -> CampaignDay:
    return CampaignDay(
        customer_id=customer_id,
        date=day,
        campaign_id=campaign_id,
        campaign_name=name or f"Campaign {campaign_id}",
        impressions=impressions,
        clicks=clicks,
        cost_micros=cost_micros,
        conversions=conversions,
    )
