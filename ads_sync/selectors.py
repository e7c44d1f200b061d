"""Reads for the Google Ads sync: which days are missing, which CSV files are gone, run figures."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import Q

from ads_sync.history import earliest_day
from ads_sync.integrations import google_ads
from ads_sync.models import AdsAccount, SyncDay

# A pending/running day of an unfinished run is in flight and not planned again, unless it has
# not moved for this long (its message was lost): then the next detection takes it over.
IN_FLIGHT_STALE_AFTER = dt.timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Window:
    """The dates to consider for one account, and where its lookback (re-fetch) part starts."""

    customer_id: str
    start: dt.date
    end: dt.date
    lookback_from: dt.date


def account_yesterday(*, account: AdsAccount | None, now: dt.datetime | None = None) -> dt.date:
    """Yesterday in the account's time zone (UTC when the account is not known yet)."""
    zone = ZoneInfo(account.time_zone) if account else dt.UTC
    current = now or dt.datetime.now(dt.UTC)
    return current.astimezone(zone).date() - dt.timedelta(days=1)


def sync_windows(
    *,
    customer_ids: list[str],
    start: dt.date | None = None,
    end: dt.date | None = None,
    days: int | None = None,
    now: dt.datetime | None = None,
) -> list[Window]:
    """Each account's window: [today - ADS_SYNC_HISTORY_DAYS, yesterday] in its time zone, or
    the last `days` days, or an explicit [start, end] clipped to yesterday."""
    accounts = AdsAccount.objects.in_bulk(customer_ids)
    now = now or dt.datetime.now(dt.UTC)
    utc_today = now.astimezone(dt.UTC).date()
    windows = []
    for customer_id in customer_ids:
        yesterday = account_yesterday(account=accounts.get(customer_id), now=now)
        history = days if days is not None else settings.ADS_SYNC_HISTORY_DAYS
        # Never before the day Google Ads serves from, on the account's date or on UTC's
        # (`backfill_ads --start`'s), whichever is later: 37 months are 1122 to 1126 days, and an
        # account west of UTC counts its days back from a day earlier.
        earliest = earliest_day(max(yesterday + dt.timedelta(days=1), utc_today))
        w_start = start or max(yesterday - dt.timedelta(days=history - 1), earliest)
        w_end = min(end or yesterday, yesterday)
        lookback_from = yesterday - dt.timedelta(days=settings.ADS_SYNC_LOOKBACK_DAYS - 1)
        windows.append(Window(customer_id, w_start, w_end, lookback_from))
    return windows


_MISSING_SQL = """
WITH windows AS (
    SELECT *
    FROM unnest(%(cids)s::text[], %(starts)s::date[], %(ends)s::date[], %(lookbacks)s::date[])
         AS w(customer_id, start_date, end_date, lookback_from)
), days AS (
    SELECT w.customer_id, d::date AS date, w.lookback_from
    FROM windows w
    CROSS JOIN LATERAL generate_series(w.start_date, w.end_date, interval '1 day') AS d
)
SELECT days.customer_id, days.date
FROM days
LEFT JOIN ads_sync_syncday s
       ON s.customer_id = days.customer_id AND s.date = days.date
LEFT JOIN ads_sync_syncrun r ON r.id = s.run_id
WHERE NOT COALESCE(
        s.state IN ('pending', 'running') AND r.id IS NOT NULL AND r.finished_at IS NULL
        AND s.updated_at > %(stale_before)s, false)
  AND (%(force)s OR s.id IS NULL OR s.state <> 'done' OR days.date >= days.lookback_from)
  AND NOT COALESCE(
        %(backoff)s AND s.state = 'failed' AND s.retry_after > %(now)s, false)
ORDER BY days.date DESC, days.customer_id
"""


def missing_days(
    *,
    windows: list[Window],
    force: bool = False,
    backoff: bool = False,
    now: dt.datetime | None = None,
) -> list[tuple[str, dt.date]]:
    """(customer_id, date) pairs to fetch, newest first, in one set-based query.

    Missing means: no `done` ledger entry, or inside the lookback days (Google revises recent
    conversions), or anything in the windows with `force`. Days already in flight in an
    unfinished run are left to that run. With `backoff` (the daily detection), a failed day
    whose `retry_after` is still ahead is left out too.
    """
    if not windows:
        return []
    current = now or dt.datetime.now(dt.UTC)
    params: dict[str, Any] = {
        "cids": [w.customer_id for w in windows],
        "starts": [w.start for w in windows],
        "ends": [w.end for w in windows],
        "lookbacks": [w.lookback_from for w in windows],
        "stale_before": current - IN_FLIGHT_STALE_AFTER,
        "force": force,
        "backoff": backoff and not force,
        "now": current,
    }
    with connection.cursor() as cursor:
        cursor.execute(_MISSING_SQL, params)
        return [(customer_id, day) for customer_id, day in cursor.fetchall()]


def _in_windows(windows: list[Window]) -> Q:
    """Ledger entries inside the windows (none for no window)."""
    condition = Q(pk__in=[])
    for window in windows:
        condition |= Q(customer_id=window.customer_id, date__range=(window.start, window.end))
    return condition


def backed_off_days(*, windows: list[Window], now: dt.datetime | None = None) -> int:
    """How many failed days of the windows the daily detection waits on (`retry_after` ahead)."""
    current = now or dt.datetime.now(dt.UTC)
    return SyncDay.objects.filter(
        _in_windows(windows), state=SyncDay.State.FAILED, retry_after__gt=current
    ).count()


def day_csv_path(*, output_dir: str | Path, customer_id: str, day: dt.date) -> Path:
    """The day's file in `output_dir`; ValueError for a customer id that is not ten digits (as
    the ledger keys it): it names the folder, and "../x" or a newline made another one."""
    if google_ads.normalize_customer_id(customer_id) != customer_id:
        raise ValueError(f"a customer id's folder is named by its ten digits: {customer_id!r}")
    return Path(output_dir) / customer_id / f"{day.isoformat()}.csv"


def totals_csv_path(*, output_dir: str | Path) -> Path:
    return Path(output_dir) / "ads_daily_totals.csv"


# A day file written by the fetch itself is a few milliseconds younger than its fetched_at
# (taken before the write); the file system's clock may lag the process's by a tick.
CSV_CLOCK_SLACK = dt.timedelta(seconds=1)


def done_days_needing_csv(
    *, windows: list[Window], output_dir: str | Path, exclude: set[tuple[str, dt.date]]
) -> list[tuple[str, dt.date]]:
    """Done days whose CSV file is gone, or older than the day's last fetch (written into
    another `--output-dir`): rewritten from the database, no API call needed."""
    result = []
    for window in windows:
        done = SyncDay.objects.filter(
            customer_id=window.customer_id,
            date__range=(window.start, window.end),
            state=SyncDay.State.DONE,
        ).values_list("date", "fetched_at")
        for day, fetched_at in done:
            key = (window.customer_id, day)
            if key not in exclude and _csv_outdated(output_dir, key, fetched_at):
                result.append(key)
    return result


def done_days_needing_csv_of(
    *, days: Iterable[tuple[str, dt.date]], output_dir: str | Path
) -> list[tuple[str, dt.date]]:
    """Of these days, the done ones whose CSV file is gone from `output_dir` or older than the
    day's last fetch (another run fetched them into its own folder)."""
    wanted = set(days)
    done = SyncDay.objects.filter(
        customer_id__in={c for c, _ in wanted},
        date__in={d for _, d in wanted},
        state=SyncDay.State.DONE,
    ).values_list("customer_id", "date", "fetched_at")
    return sorted(
        (customer_id, day)
        for customer_id, day, fetched_at in done
        if (customer_id, day) in wanted
        and _csv_outdated(output_dir, (customer_id, day), fetched_at)
    )


def _csv_outdated(
    output_dir: str | Path, key: tuple[str, dt.date], fetched_at: dt.datetime | None
) -> bool:
    """The day's file in `output_dir` is gone, or older than the day's last fetch."""
    customer_id, day = key
    path = day_csv_path(output_dir=output_dir, customer_id=customer_id, day=day)
    try:
        written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    except (FileNotFoundError, NotADirectoryError):
        return True
    return fetched_at is not None and written < fetched_at - CSV_CLOCK_SLACK


@dataclass(frozen=True, slots=True)
class RunLatency:
    p50_ms: float | None
    p95_ms: float | None


def run_latency(*, run_id: int) -> RunLatency:
    """Per-date latency percentiles of the days this run fetched."""
    durations = sorted(
        int(ms or 0)
        for ms in SyncDay.objects.filter(
            run_id=run_id, state=SyncDay.State.DONE, duration_ms__isnull=False
        ).values_list("duration_ms", flat=True)
    )
    if not durations:
        return RunLatency(None, None)
    if len(durations) == 1:
        return RunLatency(float(durations[0]), float(durations[0]))
    cuts = statistics.quantiles(durations, n=100, method="inclusive")
    return RunLatency(cuts[49], cuts[94])


def run_failures(*, run_id: int) -> list[SyncDay]:
    return list(
        SyncDay.objects.filter(run_id=run_id, state=SyncDay.State.FAILED).order_by(
            "customer_id", "date"
        )
    )
