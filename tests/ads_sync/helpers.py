"""Shared checks for the ads_sync integration tests (real worker, real sandbox)."""

from __future__ import annotations

import csv
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import close_old_connections

from ads_sync import selectors, services
from ads_sync.models import CampaignDayMetric, SyncDay, SyncRun
from ads_sync.sandbox import data
from tests.workers import running_worker


def group_raising(error: BaseException) -> Callable[..., SimpleNamespace]:
    """A stand-in for `tasks.group` whose fan-out raises `error` as it is sent."""

    def group(*signatures: object) -> SimpleNamespace:
        def apply_async() -> None:
            raise error

        return SimpleNamespace(apply_async=apply_async)

    return group


def wait_for_run(run_id: int, timeout_s: float = 120.0) -> SyncRun:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = SyncRun.objects.get(pk=run_id)
        if run.finished_at is not None:
            return run
        time.sleep(0.1)
    close_old_connections()
    raise AssertionError(f"run {run_id} did not finish: {SyncRun.objects.get(pk=run_id).__dict__}")


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def expected_rows(customer_id: str, day: dt.date) -> list[tuple[Any, ...]]:
    return [
        (r.campaign_id, r.campaign_name, r.impressions, r.clicks, r.cost_micros, r.conversions)
        for r in data.rows_for(customer_id, day)
    ]


def orm_rows(customer_id: str, day: dt.date) -> list[tuple[Any, ...]]:
    return [
        (
            m.campaign_id,
            m.campaign_name,
            m.impressions,
            m.clicks,
            m.cost_micros,
            float(m.conversions),
        )
        for m in CampaignDayMetric.objects.filter(customer_id=customer_id, date=day).order_by(
            "campaign_id"
        )
    ]


def csv_lines(path: Path) -> list[dict[str, str]]:
    """A CSV file's lines, by its header's names."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def csv_rows(output_dir: Path, customer_id: str, day: dt.date) -> list[tuple[Any, ...]]:
    path = selectors.day_csv_path(output_dir=output_dir, customer_id=customer_id, day=day)
    return [
        (
            int(line["campaign_id"]),
            line["campaign_name"],
            int(line["impressions"]),
            int(line["clicks"]),
            int(line["cost_micros"]),
            float(line["conversions"]),
        )
        for line in csv_lines(path)
    ]


def fetched_days(calls: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """(customer, date) -> successful campaign queries the sandbox served."""
    return Counter(
        (c["customer_id"], c["date"])
        for c in calls
        if c.get("query") == "campaign" and c["outcome"] == "ok"
    )


@pytest.fixture(scope="module")
def sync_worker() -> Iterator[object]:
    """A real in-process Celery worker for a whole module: the per-test worker's shutdown costs
    seconds each time, and these tests need one in almost every case."""
    with running_worker() as worker:
        yield worker


def assert_complete(customers: tuple[str, ...], output_dir: Path, days: int) -> None:
    """Every day of every account's window is done, with the sandbox's rows in the ORM and CSV.

    The windows are those every planning of the test used: its accounts' days as of the test's
    start (conftest.py, `_accounts_days_from_the_test_start`)."""
    windows = selectors.sync_windows(customer_ids=list(customers), days=days)
    for window in windows:
        for day in days_between(window.start, window.end):
            expected = expected_rows(window.customer_id, day)
            assert orm_rows(window.customer_id, day) == expected, (window.customer_id, day)
            assert csv_rows(output_dir, window.customer_id, day) == expected
    assert SyncDay.objects.exclude(state=SyncDay.State.DONE).count() == 0
    assert SyncDay.objects.count() == len(customers) * days


def daily_quota_from_the_first_fetch(ads_sandbox: Any) -> None:
    """The sandbox answers the first campaign fetch with a daily quota error; the accounts are
    looked up beforehand, so the quota hits the fetches and not the planning's lookups."""
    for customer_id in ads_sandbox.customers:
        services.account_ensure(customer_id=customer_id)
    ads_sandbox.configure(fail_first={"daily_quota": 1})
