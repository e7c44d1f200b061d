"""Deterministic sandbox data: the same (customer, date) always yields the same rows."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

DEFAULT_CUSTOMERS = ("1234567890", "2345678901")
_TIME_ZONES = ("America/New_York", "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles")
_CURRENCIES = ("USD", "EUR", "JPY", "GBP")
_NAMES = ("Brand", "Generic", "Competitors", "Remarketing", "Shopping", "Video", "Display")
# Roughly one day in eight has no rows at all: a valid, empty answer.
EMPTY_DAY_SHARE = 0.125


@dataclass(frozen=True)
class SandboxRow:
    campaign_id: int
    campaign_name: str
    impressions: int
    clicks: int
    cost_micros: int
    conversions: float


@dataclass(frozen=True)
class SandboxAccount:
    customer_id: str
    time_zone: str
    currency_code: str
    descriptive_name: str


def account(customer_id: str) -> SandboxAccount:
    rng = random.Random(f"account:{customer_id}")  # noqa: S311 - reproducible test data
    return SandboxAccount(
        customer_id=customer_id,
        time_zone=rng.choice(_TIME_ZONES),
        currency_code=rng.choice(_CURRENCIES),
        descriptive_name=f"Sandbox account {customer_id}",
    )


def _campaigns(customer_id: str) -> list[tuple[int, str]]:
    rng = random.Random(f"campaigns:{customer_id}")  # noqa: S311 - reproducible test data
    count = rng.randint(2, 5)
    names = rng.sample(_NAMES, count)
    base = int(customer_id[-4:]) * 1000 if customer_id[-4:].isdigit() else 1000
    return [(base + index + 1, f"{name} #{index + 1}") for index, name in enumerate(names)]


def is_empty_day(customer_id: str, day: dt.date) -> bool:
    return random.Random(f"empty:{customer_id}:{day.isoformat()}").random() < EMPTY_DAY_SHARE  # noqa: S311 - reproducible test data


def rows_for(customer_id: str, day: dt.date) -> list[SandboxRow]:
    """The campaign rows the sandbox serves for one account and day, ordered by campaign id."""
    if is_empty_day(customer_id, day):
        return []
    rng = random.Random(f"rows:{customer_id}:{day.isoformat()}")  # noqa: S311 - reproducible test data
    rows = []
    for campaign_id, name in _campaigns(customer_id):
        if rng.random() < 0.2:  # a paused campaign serves no row that day
            continue
        impressions = rng.randint(50, 20_000)
        clicks = rng.randint(0, max(1, impressions // 12))
        cost_micros = clicks * rng.randint(50_000, 3_000_000)
        conversions = round(clicks * rng.random() * 0.1, 2)
        rows.append(SandboxRow(campaign_id, name, impressions, clicks, cost_micros, conversions))
    return rows


def first_empty_day(customer_id: str, start: dt.date) -> dt.date:
    day = start
    while not is_empty_day(customer_id, day):
        day += dt.timedelta(days=1)
    return day


def first_full_day(customer_id: str, start: dt.date) -> dt.date:
    day = start
    while not rows_for(customer_id, day):
        day += dt.timedelta(days=1)
    return day
