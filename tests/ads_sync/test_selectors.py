from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from django.utils import timezone

from ads_sync import history, selectors, services
from ads_sync.models import AdsAccount, SyncDay, SyncRun

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
YESTERDAY = dt.date(2025, 2, 28)
CUSTOMERS = ["1111111111", "2222222222"]


@pytest.fixture(autouse=True)
def _window_settings(settings) -> None:
    settings.ADS_SYNC_HISTORY_DAYS = 30
    settings.ADS_SYNC_LOOKBACK_DAYS = 3


def _windows(**kwargs: object) -> list[selectors.Window]:
    return selectors.sync_windows(customer_ids=CUSTOMERS, now=NOW, **kwargs)  # type: ignore[arg-type]


def _mark_done(customer_id: str, days: list[dt.date], run: SyncRun | None = None) -> None:
    for day in days:
        SyncDay.objects.update_or_create(
            customer_id=customer_id,
            date=day,
            defaults={"state": SyncDay.State.DONE, "run": run},
        )


def _range(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def test_the_window_ends_yesterday_in_the_accounts_time_zone() -> None:
    AdsAccount.objects.create(
        customer_id=CUSTOMERS[0], time_zone="Pacific/Auckland", currency_code="NZD"
    )
    AdsAccount.objects.create(
        customer_id=CUSTOMERS[1], time_zone="America/Los_Angeles", currency_code="USD"
    )
    late_evening_utc = dt.datetime(2025, 3, 1, 23, 30, tzinfo=dt.UTC)  # Mar 2 in Auckland
    windows = selectors.sync_windows(customer_ids=CUSTOMERS, now=late_evening_utc)
    assert [w.end for w in windows] == [dt.date(2025, 3, 1), dt.date(2025, 2, 28)]
    assert [(w.end - w.start).days + 1 for w in windows] == [30, 30]


def test_with_an_empty_ledger_every_day_of_every_account_is_missing() -> None:
    missing = selectors.missing_days(windows=_windows(), now=NOW)
    assert len(missing) == 2 * 30
    assert len(set(missing)) == len(missing)
    assert missing[0][1] == YESTERDAY


def test_done_days_are_not_missing_except_the_lookback_days() -> None:
    start = YESTERDAY - dt.timedelta(days=29)
    for customer_id in CUSTOMERS:
        _mark_done(customer_id, _range(start, YESTERDAY))
    missing = selectors.missing_days(windows=_windows(), now=NOW)
    lookback = set(_range(YESTERDAY - dt.timedelta(days=2), YESTERDAY))
    assert sorted(missing) == sorted((c, d) for c in CUSTOMERS for d in lookback)


def test_a_range_ending_before_the_lookback_has_nothing_missing_once_done() -> None:
    start, end = dt.date(2025, 2, 1), dt.date(2025, 2, 10)
    for customer_id in CUSTOMERS:
        _mark_done(customer_id, _range(start, end))
    windows = _windows(start=start, end=end)
    assert selectors.missing_days(windows=windows, now=NOW) == []
    assert len(selectors.missing_days(windows=windows, force=True, now=NOW)) == 20


def test_failed_and_deferred_days_are_missing_again() -> None:
    day = dt.date(2025, 2, 5)
    SyncDay.objects.create(customer_id=CUSTOMERS[0], date=day, state=SyncDay.State.FAILED)
    SyncDay.objects.create(customer_id=CUSTOMERS[1], date=day, state=SyncDay.State.DEFERRED)
    windows = _windows(start=day, end=day)
    assert sorted(selectors.missing_days(windows=windows, now=NOW)) == [
        (CUSTOMERS[0], day),
        (CUSTOMERS[1], day),
    ]


def _backed_off_day(customer_id: str, day: dt.date) -> None:
    """A day failed three times, waiting out its backoff until an hour after NOW."""
    SyncDay.objects.create(
        customer_id=customer_id,
        date=day,
        state=SyncDay.State.FAILED,
        failures=3,
        retry_after=NOW + dt.timedelta(hours=1),
    )


def test_the_daily_detection_leaves_a_failed_day_alone_until_its_retry_after() -> None:
    day = dt.date(2025, 2, 5)
    _backed_off_day(CUSTOMERS[0], day)
    windows = _windows(start=day, end=day)
    assert selectors.missing_days(windows=windows, backoff=True, now=NOW) == [(CUSTOMERS[1], day)]
    assert selectors.backed_off_days(windows=windows, now=NOW) == 1
    later = NOW + dt.timedelta(hours=2)
    assert len(selectors.missing_days(windows=windows, backoff=True, now=later)) == 2
    assert selectors.backed_off_days(windows=windows, now=later) == 0
    # A backfill asked for by hand, or a forced one, does not wait.
    assert len(selectors.missing_days(windows=windows, now=NOW)) == 2
    assert len(selectors.missing_days(windows=windows, backoff=True, force=True, now=NOW)) == 2


def test_only_the_failed_days_inside_the_windows_are_counted_as_backed_off() -> None:
    """The run's note ("N failed day(s) wait out their backoff") counts the days it left out:
    an older failed day, outside its window, is not one of them."""
    day = dt.date(2025, 2, 5)
    for failed in (day, day - dt.timedelta(days=1)):
        _backed_off_day(CUSTOMERS[0], failed)
    assert selectors.backed_off_days(windows=_windows(start=day, end=day), now=NOW) == 1


def test_a_failed_day_of_an_account_left_out_of_the_windows_is_not_counted_as_backed_off() -> None:
    """An account whose lookup failed has no window in the plan: its failed days on the same
    dates are none of the days the plan left out."""
    day = dt.date(2025, 2, 5)
    _backed_off_day(CUSTOMERS[1], day)
    windows = selectors.sync_windows(customer_ids=CUSTOMERS[:1], start=day, end=day, now=NOW)
    assert selectors.backed_off_days(windows=windows, now=NOW) == 0


def test_with_no_window_no_failed_day_is_counted_as_backed_off() -> None:
    """Every account lookup failed: the plan left no day out, whatever waits in the ledger."""
    _backed_off_day(CUSTOMERS[0], dt.date(2025, 2, 5))
    assert selectors.backed_off_days(windows=[], now=NOW) == 0


def test_the_daily_detection_plans_a_deferred_day_whatever_retry_after_its_failures_left() -> None:
    """A failed day planned again by a backfill keeps its retry_after; deferred by a daily quota
    there, it is no failure to wait out."""
    day = dt.date(2025, 2, 5)
    SyncDay.objects.create(
        customer_id=CUSTOMERS[0],
        date=day,
        state=SyncDay.State.DEFERRED,
        failures=3,
        retry_after=NOW + dt.timedelta(days=4),
    )
    windows = _windows(start=day, end=day)
    assert len(selectors.missing_days(windows=windows, backoff=True, now=NOW)) == 2
    assert selectors.backed_off_days(windows=windows, now=NOW) == 0


@pytest.mark.parametrize("state", [SyncDay.State.PENDING, SyncDay.State.RUNNING])
def test_days_in_flight_in_an_unfinished_run_are_not_planned_twice(state: str) -> None:
    day = dt.date(2025, 2, 5)
    run = SyncRun.objects.create(trigger="beat", output_dir="/tmp/x", planned=1)
    SyncDay.objects.create(customer_id=CUSTOMERS[0], date=day, state=state, run=run)
    windows = _windows(start=day, end=day)
    assert selectors.missing_days(windows=windows, now=timezone.now()) == [(CUSTOMERS[1], day)]


def test_a_pending_day_of_a_finished_run_is_not_in_flight() -> None:
    """No task of a finished run will settle the day: waiting 12 hours for it gains nothing."""
    day = dt.date(2025, 2, 5)
    run = SyncRun.objects.create(
        trigger="beat", output_dir="/tmp/x", planned=1, failed=1, finished_at=timezone.now()
    )
    SyncDay.objects.create(customer_id=CUSTOMERS[0], date=day, state=SyncDay.State.PENDING, run=run)
    windows = _windows(start=day, end=day)
    assert len(selectors.missing_days(windows=windows, now=timezone.now())) == 2


def test_a_pending_day_whose_run_was_deleted_is_not_in_flight() -> None:
    day = dt.date(2025, 2, 5)
    SyncDay.objects.create(customer_id=CUSTOMERS[0], date=day, state=SyncDay.State.PENDING)
    windows = _windows(start=day, end=day)
    assert len(selectors.missing_days(windows=windows, now=timezone.now())) == 2


def test_a_stale_in_flight_day_is_taken_over() -> None:
    day = dt.date(2025, 2, 5)
    run = SyncRun.objects.create(trigger="beat", output_dir="/tmp/x", planned=1)
    SyncDay.objects.create(customer_id=CUSTOMERS[0], date=day, state=SyncDay.State.RUNNING, run=run)
    later = timezone.now() + selectors.IN_FLIGHT_STALE_AFTER + dt.timedelta(minutes=1)
    windows = _windows(start=day, end=day)
    assert len(selectors.missing_days(windows=windows, now=later)) == 2


def test_missing_days_is_one_query_for_two_years(settings, django_assert_num_queries) -> None:
    settings.ADS_SYNC_HISTORY_DAYS = 730
    windows = _windows()
    with django_assert_num_queries(1):
        missing = selectors.missing_days(windows=windows, now=NOW)
    assert len(missing) == 2 * 730


def test_done_days_whose_csv_is_gone_are_listed(tmp_path: Path) -> None:
    days = [dt.date(2025, 2, 1), dt.date(2025, 2, 2)]
    _mark_done(CUSTOMERS[0], days)
    services.day_csv_write(customer_id=CUSTOMERS[0], day=days[0], output_dir=tmp_path)
    windows = _windows(start=days[0], end=days[1])
    gone = selectors.done_days_needing_csv(windows=windows, output_dir=tmp_path, exclude=set())
    assert gone == [(CUSTOMERS[0], days[1])]


def test_done_days_whose_csv_is_older_than_their_last_fetch_are_listed(tmp_path: Path) -> None:
    """A day fetched again into another --output-dir leaves this folder's file behind."""
    days = [dt.date(2025, 2, 1), dt.date(2025, 2, 2)]
    _mark_done(CUSTOMERS[0], days)
    fetched = timezone.now()
    SyncDay.objects.filter(customer_id=CUSTOMERS[0]).update(fetched_at=fetched)
    for day in days:
        services.day_csv_write(customer_id=CUSTOMERS[0], day=day, output_dir=tmp_path)
    behind = (fetched - dt.timedelta(minutes=5)).timestamp()
    path = selectors.day_csv_path(output_dir=tmp_path, customer_id=CUSTOMERS[0], day=days[0])
    os.utime(path, (behind, behind))
    windows = _windows(start=days[0], end=days[1])
    stale = selectors.done_days_needing_csv(windows=windows, output_dir=tmp_path, exclude=set())
    assert stale == [(CUSTOMERS[0], days[0])]


def test_a_day_file_a_clock_tick_older_than_its_fetch_is_not_rewritten(tmp_path: Path) -> None:
    """The file system's clock may lag the process's: the file the fetch itself wrote can look
    a little older than the fetch, and was rewritten at every plan."""
    day = dt.date(2025, 2, 1)
    _mark_done(CUSTOMERS[0], [day])
    fetched = timezone.now()
    SyncDay.objects.filter(customer_id=CUSTOMERS[0]).update(fetched_at=fetched)
    path = services.day_csv_write(customer_id=CUSTOMERS[0], day=day, output_dir=tmp_path)
    tick = (fetched - dt.timedelta(milliseconds=500)).timestamp()
    os.utime(path, (tick, tick))
    windows = _windows(start=day, end=day)
    stale = selectors.done_days_needing_csv(windows=windows, output_dir=tmp_path, exclude=set())
    assert stale == []


@pytest.mark.parametrize(
    "customer_id", ["../../../tmp/x", "1234567890\n", " 1234567890", "123-456-7890", "123456789"]
)
def test_a_day_file_is_never_named_after_a_customer_id_that_is_not_ten_digits(
    tmp_path: Path, customer_id
) -> None:
    """The id names the file's folder: `../` put it outside the CSV folder, a newline in its
    name."""
    with pytest.raises(ValueError, match="ten digits"):
        selectors.day_csv_path(output_dir=tmp_path, customer_id=customer_id, day=YESTERDAY)


def test_a_day_file_is_in_its_accounts_folder(tmp_path: Path) -> None:
    path = selectors.day_csv_path(output_dir=tmp_path, customer_id=CUSTOMERS[0], day=YESTERDAY)
    assert path == tmp_path / CUSTOMERS[0] / "2025-02-28.csv"


def test_of_the_days_asked_only_the_done_ones_whose_file_is_gone_are_listed(
    tmp_path: Path,
) -> None:
    """The ledger is read by customer and by date apart: a pair not asked for comes back too."""
    first, second = dt.date(2025, 2, 1), dt.date(2025, 2, 2)
    _mark_done(CUSTOMERS[0], [first, second])
    _mark_done(CUSTOMERS[1], [second])
    services.day_csv_write(customer_id=CUSTOMERS[0], day=first, output_dir=tmp_path)
    asked = [(CUSTOMERS[0], first), (CUSTOMERS[1], second)]
    gone = selectors.done_days_needing_csv_of(days=asked, output_dir=tmp_path)
    assert gone == [(CUSTOMERS[1], second)]


def test_a_done_day_outside_the_windows_is_not_listed_whatever_its_file(tmp_path: Path) -> None:
    """A backfill of February rewrites no file of January's, gone or not."""
    inside, outside = dt.date(2025, 2, 1), dt.date(2025, 1, 31)
    _mark_done(CUSTOMERS[0], [inside, outside])
    windows = _windows(start=inside, end=inside)
    gone = selectors.done_days_needing_csv(windows=windows, output_dir=tmp_path, exclude=set())
    assert gone == [(CUSTOMERS[0], inside)]


def test_a_day_not_done_is_not_listed_for_a_rewrite_from_the_database(tmp_path: Path) -> None:
    """A failed or pending day has no rows to write: its file comes with its fetch."""
    day = dt.date(2025, 2, 1)
    SyncDay.objects.create(customer_id=CUSTOMERS[0], date=day, state=SyncDay.State.FAILED)
    SyncDay.objects.create(customer_id=CUSTOMERS[1], date=day, state=SyncDay.State.PENDING)
    windows = _windows(start=day, end=day)
    asked = [(customer_id, day) for customer_id in CUSTOMERS]
    gone = selectors.done_days_needing_csv(windows=windows, output_dir=tmp_path, exclude=set())
    assert gone == []
    assert selectors.done_days_needing_csv_of(days=asked, output_dir=tmp_path) == []


def test_a_runs_latency_is_the_percentiles_of_its_done_days_durations() -> None:
    run = SyncRun.objects.create(trigger="backfill", output_dir="/tmp/x", planned=22, done=21)
    for n in range(1, 21):
        SyncDay.objects.create(
            customer_id=CUSTOMERS[0],
            date=YESTERDAY - dt.timedelta(days=n),
            state=SyncDay.State.DONE,
            duration_ms=n * 10,
            run=run,
        )
    # Neither a day without a duration nor a failed one counts.
    SyncDay.objects.create(
        customer_id=CUSTOMERS[1], date=YESTERDAY, state=SyncDay.State.DONE, run=run
    )
    SyncDay.objects.create(
        customer_id=CUSTOMERS[1],
        date=YESTERDAY - dt.timedelta(days=1),
        state=SyncDay.State.FAILED,
        duration_ms=99_000,
        run=run,
    )
    latency = selectors.run_latency(run_id=run.pk)
    assert (latency.p50_ms, latency.p95_ms) == (pytest.approx(105.0), pytest.approx(190.5))


def test_a_runs_latency_counts_only_its_own_days() -> None:
    """backfill_ads prints the run's p50/p95: the days another run fetched are not its."""
    run = SyncRun.objects.create(trigger="backfill", output_dir="/tmp/x", planned=1, done=1)
    other = SyncRun.objects.create(trigger="beat", output_dir="/tmp/x", planned=1, done=1)
    SyncDay.objects.create(
        customer_id=CUSTOMERS[0], date=YESTERDAY, state=SyncDay.State.DONE, duration_ms=40, run=run
    )
    SyncDay.objects.create(
        customer_id=CUSTOMERS[1],
        date=YESTERDAY,
        state=SyncDay.State.DONE,
        duration_ms=9_000,
        run=other,
    )
    latency = selectors.run_latency(run_id=run.pk)
    assert (latency.p50_ms, latency.p95_ms) == (40.0, 40.0)


def test_a_runs_failures_are_its_own_failed_days() -> None:
    """What backfill_ads lists as the run's failures: not its done days, nor another run's."""
    run = SyncRun.objects.create(trigger="backfill", output_dir="/tmp/x", planned=2)
    other = SyncRun.objects.create(trigger="backfill", output_dir="/tmp/x", planned=1)
    failed = SyncDay.objects.create(
        customer_id=CUSTOMERS[0], date=YESTERDAY, state=SyncDay.State.FAILED, run=run
    )
    SyncDay.objects.create(
        customer_id=CUSTOMERS[1], date=YESTERDAY, state=SyncDay.State.DONE, run=run
    )
    SyncDay.objects.create(
        customer_id=CUSTOMERS[0], date=dt.date(2025, 2, 1), state=SyncDay.State.FAILED, run=other
    )
    assert selectors.run_failures(run_id=run.pk) == [failed]


def test_a_runs_failures_are_listed_by_account_then_date() -> None:
    """backfill_ads prints the first 20 of them: an account's failed dates together, oldest
    first, whatever order they failed in."""
    run = SyncRun.objects.create(trigger="backfill", output_dir="/tmp/x", planned=3)
    early, late = dt.date(2025, 2, 1), dt.date(2025, 2, 2)
    for customer_id, day in [(CUSTOMERS[1], early), (CUSTOMERS[0], late), (CUSTOMERS[0], early)]:
        SyncDay.objects.create(
            customer_id=customer_id, date=day, state=SyncDay.State.FAILED, run=run
        )
    assert [(f.customer_id, f.date) for f in selectors.run_failures(run_id=run.pk)] == [
        (CUSTOMERS[0], early),
        (CUSTOMERS[0], late),
        (CUSTOMERS[1], early),
    ]


@pytest.mark.parametrize(
    ("now", "time_zone"),
    [
        # Set on Feb 28 (the most the settings took that day), read on Mar 1: three days fewer.
        (dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC), "UTC"),
        # The most the settings take on Mar 31, for an account still on Mar 30.
        (dt.datetime(2029, 3, 31, 3, 0, tzinfo=dt.UTC), "America/Los_Angeles"),
    ],
    ids=["a-later-day", "west-of-utc"],
)
def test_no_window_starts_before_the_earliest_day_google_ads_serves(
    settings, now: dt.datetime, time_zone: str
) -> None:
    """A history the settings took (as many days as 37 months held on the day the process
    started) planned days Google Ads refuses, and `backfill_ads --start` too, at every detection:
    37 months are 1122 to 1126 days, and an account west of UTC is a day behind."""
    settings_day = now.date() - dt.timedelta(days=1 if time_zone == "UTC" else 0)
    settings.ADS_SYNC_HISTORY_DAYS = history.days_served(settings_day)
    AdsAccount.objects.create(customer_id=CUSTOMERS[0], time_zone=time_zone, currency_code="USD")
    (window,) = selectors.sync_windows(customer_ids=CUSTOMERS[:1], now=now)
    assert window.start >= history.earliest_day(now.date())


def test_the_settings_bound_is_the_most_days_37_months_hold_on_any_day() -> None:
    """Over the Gregorian calendar's 400-year cycle, leap days and month ends included."""
    first = dt.date(2000, 1, 1)
    served = {history.days_served(first + dt.timedelta(days=n)) for n in range(146_097)}
    assert max(served) == history.DAYS_SERVED_MOST
