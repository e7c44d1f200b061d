"""The only production module that talks to Google Ads.

CONTRACT (shared by the client work and the sync work; the client issue fills in the bodies):
everything the rest of the code needs from Google Ads is the names below.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CampaignDay:
    """One campaign's metrics for one day of one account, as the API reported them."""

    customer_id: str
    date: dt.date
    campaign_id: int
    campaign_name: str
    impressions: int
    clicks: int
    cost_micros: int
    conversions: float


@dataclass(frozen=True, slots=True)
class AccountInfo:
    customer_id: str
    time_zone: str
    currency_code: str


class AdsError(Exception):
    """Base class of every failure fetch_data raises after its own retries are spent."""

    request_id: str | None = None


class TransientAdsError(AdsError):
    """Retries exhausted on deadline/unavailable/internal/short quota errors; try another day."""


class PermanentAdsError(AdsError):
    """Retrying will not help (bad customer id, permission denied, invalid query)."""


class CredentialsError(PermanentAdsError):
    """The refresh token is revoked or the OAuth client is wrong: a person must renew it."""


class DailyQuotaExhausted(AdsError):
    """The account's daily quota is gone: stop the run, defer the remaining dates."""

    retry_after_s: float = 0.0


def fetch_data(customer_id: str, day: dt.date) -> list[CampaignDay]:
    """Return one account's campaign rows for one day (an empty list for a day with none)."""
    raise NotImplementedError("filled in by the Google Ads client issue")


def get_account(customer_id: str) -> AccountInfo:
    """Return the account's time zone and currency (one query per account, cached)."""
    raise NotImplementedError("filled in by the Google Ads client issue")
