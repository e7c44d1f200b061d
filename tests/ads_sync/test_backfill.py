"""backfill_ads end to end: the real command, a real Celery worker, the sandbox API."""

from __future__ import annotations

import copy
import datetime as dt
import errno
import io
import os
import pickle
import pty
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import group as celery_group
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.db.models import F, QuerySet
from kombu.exceptions import OperationalError as KombuOperationalError

from ads_sync import broker, history, locks, selectors, services, tasks
from ads_sync.integrations import google_ads
from ads_sync.management.commands import backfill_ads
from ads_sync.models import AdsAccount, CampaignDayMetric, SyncDay, SyncRun
from inventory_project.celery import app as celery_app
from tests.clocks import FakeClock
from tests.database import other_connection, wait_until_session_ended
from tests.processes import manage, run

from .helpers import (
    csv_lines,
    csv_rows,
    daily_quota_from_the_first_fetch,
    days_between,
    expected_rows,
    fetched_days,
    group_raising,
    orm_rows,
    sync_worker,  # noqa: F401 (a fixture)
    wait_for_run,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _backfill(*args: str) -> tuple[str, SyncRun]:
    out = io.StringIO()
    call_command("backfill_ads", *args, stdout=out)
    text = out.getvalue()
    run = SyncRun.objects.order_by("-pk").first()
    assert run is not None
    return text, run


# tasks.group whose fan-out the broker refuses.
_unpublishable = group_raising(KombuOperationalError("[Errno 111] Connection refused"))


def _summary_figure(text: str, label: str) -> int:
    match = re.search(rf"^\s+{label}\s+(\d+)", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


@pytest.mark.usefixtures("sync_worker")
def test_a_60_day_backfill_writes_exactly_the_sandbox_rows_to_the_orm_and_csv(
    ads_sandbox, tmp_path: Path
) -> None:
    text, run = _backfill("--days", "60", "--output-dir", str(tmp_path))

    windows = selectors.sync_windows(customer_ids=list(ads_sandbox.customers), days=60)
    expected_total = 0
    for window in windows:
        for day in days_between(window.start, window.end):
            expected = expected_rows(window.customer_id, day)
            expected_total += len(expected)
            assert orm_rows(window.customer_id, day) == expected
            assert csv_rows(tmp_path, window.customer_id, day) == expected
    assert CampaignDayMetric.objects.count() == expected_total
    assert SyncDay.objects.filter(state=SyncDay.State.DONE).count() == 120
    assert (run.planned, run.done, run.rows) == (120, 120, expected_total)
    assert selectors.totals_csv_path(output_dir=tmp_path).exists()
    # The summary reports the run as the database holds it, how long it took included.
    summary = text[text.index(f"Summary of run {run.pk} (backfill), {run.range_start} .. ") :]
    for label, figure in [
        ("dates planned", 120),
        ("fetched", 120),
        ("failed", 0),
        ("deferred", 0),
        ("rows written", expected_total),
        ("API calls", len(ads_sandbox.calls())),
    ]:
        assert _summary_figure(summary, label) == figure, label
    assert (run.elapsed_s or 0) > 0
    assert f"\n  elapsed          {run.elapsed_s:.1f} s\n" in summary
    latency = selectors.run_latency(run_id=run.pk)
    assert None not in (latency.p50_ms, latency.p95_ms)
    assert f"per-date latency p50 {latency.p50_ms:.0f} ms, p95 {latency.p95_ms:.0f} ms" in summary


@pytest.mark.usefixtures("sync_worker")
def test_a_rerun_before_the_lookback_window_makes_no_api_call(ads_sandbox, tmp_path: Path) -> None:
    end = dt.date.today() - dt.timedelta(days=10)
    start = end - dt.timedelta(days=4)
    _backfill("--start", str(start), "--end", str(end), "--output-dir", str(tmp_path))
    ads_sandbox.reset()

    text, run = _backfill("--start", str(start), "--end", str(end), "--output-dir", str(tmp_path))

    assert ads_sandbox.calls() == []
    assert (run.planned, run.api_calls) == (0, 0)
    assert _summary_figure(text, "skipped") == 10


@pytest.mark.usefixtures("sync_worker")
def test_a_rerun_over_the_last_days_refetches_only_the_lookback_days(
    ads_sandbox, tmp_path: Path, settings
) -> None:
    settings.ADS_SYNC_LOOKBACK_DAYS = 3
    _backfill("--days", "6", "--output-dir", str(tmp_path))
    ads_sandbox.reset()

    _backfill("--days", "6", "--output-dir", str(tmp_path))

    fetched = fetched_days(ads_sandbox.calls())
    assert sum(fetched.values()) == len(ads_sandbox.customers) * 3
    assert len(ads_sandbox.calls()) == len(ads_sandbox.customers) * 3


@pytest.mark.usefixtures("sync_worker")
def test_a_removed_csv_of_a_done_day_is_rewritten_without_an_api_call(
    ads_sandbox, tmp_path: Path
) -> None:
    end = dt.date.today() - dt.timedelta(days=10)
    _backfill("--start", str(end), "--end", str(end), "--output-dir", str(tmp_path))
    customer = ads_sandbox.customers[0]
    path = selectors.day_csv_path(output_dir=tmp_path, customer_id=customer, day=end)
    path.unlink()
    ads_sandbox.reset()

    _, run = _backfill("--start", str(end), "--end", str(end), "--output-dir", str(tmp_path))

    assert ads_sandbox.calls() == []
    assert run.csv_rewritten == 1
    assert csv_rows(tmp_path, customer, end) == expected_rows(customer, end)


@pytest.mark.usefixtures("sync_worker")
def test_a_failed_date_makes_the_exit_status_non_zero_and_is_named(
    ads_sandbox, tmp_path: Path
) -> None:
    day = dt.date.today() - dt.timedelta(days=10)
    _backfill("--start", str(day), "--end", str(day), "--output-dir", str(tmp_path))
    ads_sandbox.reset()
    ads_sandbox.configure(fail_first={"internal": 50})
    out = io.StringIO()

    with pytest.raises(CommandError) as excinfo:
        call_command(
            "backfill_ads",
            "--start",
            str(day),
            "--end",
            str(day),
            "--force",
            "--output-dir",
            str(tmp_path),
            stdout=out,
        )

    assert excinfo.value.returncode == 1
    assert "2 date(s) failed" in str(excinfo.value)
    assert f"{ads_sandbox.customers[0]} {day}:" in out.getvalue()
    assert SyncDay.objects.filter(state=SyncDay.State.FAILED).count() == 2


_PROGRESS = re.compile(
    r"^\[[#.]{30}\] (\d+)/(\d+) done \d+ failed \d+ deferred \d+ \| rows \d+ \| "
    r"([\d.]+) dates/s \| ETA (\S+)$"
)


@pytest.mark.usefixtures("sync_worker")
def test_off_a_terminal_progress_comes_as_whole_lines_ending_with_the_last(
    ads_sandbox, tmp_path: Path
) -> None:
    """For a log file or a pipe: no carriage returns, a line at once and then one every
    PLAIN_EVERY_S, and the finished count last, at the rate the run had."""
    ads_sandbox.configure(latency_s=1.0)  # the wait's first poll comes before the last day
    started = time.monotonic()
    text, run = _backfill("--days", "3", "--customer", "1234567890", "--output-dir", str(tmp_path))
    took = time.monotonic() - started

    assert "\r" not in text
    lines = [found for line in text.splitlines() if (found := _PROGRESS.match(line))]
    assert 2 <= len(lines) <= 2 + int(took / backfill_ads.PLAIN_EVERY_S), text
    assert int(lines[0][1]) < run.planned
    settled, planned, rate, eta = lines[-1].groups()
    assert (int(settled), int(planned), eta) == (run.planned, run.planned, "0m00s")
    # Counted from the wait's start, after the planning: at least the whole command's rate.
    assert float(rate) >= round(run.planned / took, 1)


_BAR_EMPTY, _BAR_FULL = "[" + "." * 30 + "]", "[" + "#" * 30 + "]"


@pytest.mark.parametrize(
    ("planned", "settled", "elapsed", "line"),
    [
        (
            730,
            0,
            0.0,
            f"{_BAR_EMPTY} 0/730 done 0 failed 0 deferred 0 | rows 0 | 0.0 dates/s | ETA ?",
        ),
        (
            730,
            73,
            36.5,
            "[###...........................] 73/730 done 70 failed 2 deferred 1 | rows 9 | "
            "2.0 dates/s | ETA 5m28s",
        ),
        # Two years of one account at a date every 10 s: hours.
        (
            730,
            3,
            30.0,
            f"{_BAR_EMPTY} 3/730 done 0 failed 2 deferred 1 | rows 9 | 0.1 dates/s | ETA 2h01m10s",
        ),
        (
            730,
            730,
            400.0,
            f"{_BAR_FULL} 730/730 done 727 failed 2 deferred 1 | rows 9 | 1.8 dates/s | ETA 0m00s",
        ),
        # Every date was done already, or in flight in another run: nothing left, not "ETA ?".
        (
            0,
            0,
            0.5,
            f"{_BAR_FULL} 0/0 done 0 failed 0 deferred 0 | rows 0 | 0.0 dates/s | ETA 0m00s",
        ),
    ],
)
def test_the_progress_line_fills_its_bar_and_counts_the_eta_from_the_runs_rate(
    planned: int, settled: int, elapsed: float, line: str
) -> None:
    failed, deferred = (2, 1) if settled else (0, 0)
    run = SyncRun(
        planned=planned,
        done=settled - failed - deferred,
        failed=failed,
        deferred=deferred,
        rows=9 if settled else 0,
    )
    assert backfill_ads.Command._progress_line(run, elapsed) == line


@pytest.mark.usefixtures("sync_worker")
def test_a_summary_of_more_than_20_failed_dates_names_20_and_counts_the_rest(
    ads_sandbox, tmp_path: Path
) -> None:
    customer_id = ads_sandbox.customers[0]
    services.account_ensure(customer_id=customer_id)  # the fault is for the fetches
    ads_sandbox.configure(fail_first={"permission_denied": 1})  # each date fails at once
    out = io.StringIO()

    with pytest.raises(CommandError, match=r"21 date\(s\) failed"):
        call_command(
            "backfill_ads",
            *("--days", "21", "--customer", customer_id, "--output-dir", str(tmp_path)),
            stdout=out,
        )

    named = re.findall(rf"^  {customer_id} \d{{4}}-\d\d-\d\d: ", out.getvalue(), re.MULTILINE)
    assert len(named) == 20
    assert "  ... and 1 more (admin: Sync days, failed)" in out.getvalue()


@pytest.mark.parametrize(
    ("command", "status"),
    [
        # 2 was also backfill_ads' "no worker or broker": a script retried a typo.
        (["backfill_ads", "--start", "2025-02-30"], backfill_ads.USAGE),
        (["export_ads_csv", "--end", "nope"], 2),
    ],
)
def test_a_date_that_is_not_one_is_a_usage_error_not_a_traceback(command, status) -> None:
    result = run(sys.executable, "manage.py", *command, status=status)
    assert "not a date (YYYY-MM-DD)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.usefixtures("sync_worker")
def test_a_relative_output_dir_is_the_commands_not_the_workers(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    day = dt.date.today() - dt.timedelta(days=10)
    _, run = _backfill("--start", str(day), "--end", str(day), "--output-dir", "relative")
    assert run.output_dir == str(tmp_path / "relative")
    customer = ads_sandbox.customers[0]
    assert csv_rows(tmp_path / "relative", customer, day) == expected_rows(customer, day)


@pytest.mark.usefixtures("sync_worker")
def test_an_output_dir_longer_than_500_characters_is_kept_whole(
    ads_sandbox, tmp_path: Path
) -> None:
    long_dir = tmp_path.joinpath(*["d" * 200] * 3)  # a valid path of over 600 characters
    day = dt.date.today() - dt.timedelta(days=10)
    _, run = _backfill("--start", str(day), "--end", str(day), "--output-dir", str(long_dir))
    assert run.output_dir == str(long_dir)
    customer = ads_sandbox.customers[0]
    assert csv_rows(long_dir, customer, day) == expected_rows(customer, day)


def test_no_wait_exits_1_when_an_account_could_not_be_looked_up(
    ads_sandbox, tmp_path: Path
) -> None:
    customer = ads_sandbox.customers[0]
    ads_sandbox.configure(denied_customers=[customer])
    out = io.StringIO()
    with pytest.raises(CommandError, match="could not be looked up") as refused:
        call_command(
            "backfill_ads",
            *("--days", "1", "--customer", customer, "--output-dir", str(tmp_path), "--no-wait"),
            stdout=out,
        )
    assert refused.value.returncode == 1
    run = SyncRun.objects.get()
    assert out.getvalue().splitlines()[-1] == str(run.pk)  # still said, for scripts


def test_no_account_that_can_be_looked_up_exits_1_naming_them(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """Its run plans no day and has no range: it ends at once, and the wait with it."""
    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    ads_sandbox.configure(denied_customers=["9876543210"])
    with pytest.raises(CommandError) as excinfo:
        call_command(
            "backfill_ads",
            *("--days", "2", "--customer", "9876543210", "--output-dir", str(tmp_path)),
            stdout=io.StringIO(),
        )
    assert excinfo.value.returncode == 1
    assert "could not be looked up and were not synced: 9876543210" in str(excinfo.value)
    assert SyncRun.objects.get().range_start is None


def test_an_output_dir_that_cannot_be_written_is_refused_before_planning(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CommandError, match="cannot write CSV files") as refused:
        call_command(
            "backfill_ads",
            *("--days", "2", "--customer", "1234567890", "--output-dir", str(blocker / "out")),
        )
    assert refused.value.returncode == backfill_ads.CANT_CREATE
    assert not SyncRun.objects.exists()


def test_an_output_dir_that_exists_but_may_not_be_written_is_refused_before_planning(
    tmp_path: Path,
) -> None:
    """A folder the command may not write in (a read-only mount, another user's): the write
    check finds it before any planning. Root writes anywhere, so as root the command runs
    without the capabilities that override file permissions (util-linux's setpriv)."""
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    command = [sys.executable, "manage.py", "backfill_ads", "--days", "2"]
    command += ["--customer", "1234567890", "--output-dir", str(folder)]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    result = run(*command, status=backfill_ads.CANT_CREATE)
    assert f"cannot write CSV files in {folder}: [Errno 13] Permission denied" in result.stderr
    assert not SyncRun.objects.exists()
    assert list(folder.iterdir()) == []


def test_without_output_dir_the_settings_folder_is_the_one_written(
    tmp_path: Path, settings
) -> None:
    """Told by the folder refused: the one of ADS_SYNC_OUTPUT_DIR, here one that cannot be
    made, so that nothing is planned."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings.ADS_SYNC_OUTPUT_DIR = blocker / "out"
    with pytest.raises(CommandError, match=f"cannot write CSV files in {blocker / 'out'}:"):
        call_command("backfill_ads", "--days", "2", "--customer", "1234567890")
    assert not SyncRun.objects.exists()


@pytest.mark.usefixtures("sync_worker")
def test_a_csv_rewrite_that_fails_after_planning_leaves_no_day_without_its_task(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    done_day = dt.date.today() - dt.timedelta(days=10)
    _backfill("--start", str(done_day), "--end", str(done_day), "--output-dir", str(tmp_path))
    customer = ads_sandbox.customers[0]
    selectors.day_csv_path(output_dir=tmp_path, customer_id=customer, day=done_day).unlink()
    new_day = done_day - dt.timedelta(days=1)
    write = services.day_csv_write

    def failing_for_the_done_day(*, customer_id: str, day: dt.date, output_dir) -> Path:
        if day == done_day:
            raise OSError("No space left on device")
        return write(customer_id=customer_id, day=day, output_dir=output_dir)

    # Only this process's: the worker writes the new days' files as usual.
    monkeypatch.setattr(services, "day_csv_write", failing_for_the_done_day)
    plan = tasks.run_start(
        trigger=SyncRun.Trigger.BACKFILL, start=new_day, end=done_day, output_dir=tmp_path
    )
    assert plan is not None
    assert plan.run.planned == len(ads_sandbox.customers)  # the new day, for every account
    run = wait_for_run(plan.run.pk)
    assert run.done == run.planned
    assert run.csv_rewritten == 0  # the file it could not write is not counted as rewritten
    assert "1 CSV file(s) could not be rewritten" in run.notes
    assert "No space left" in run.notes


def test_bad_arguments_are_refused_with_a_message() -> None:
    with pytest.raises(CommandError, match="after --end"):
        call_command("backfill_ads", "--start", "2025-02-02", "--end", "2025-02-01")
    with pytest.raises(CommandError, match="not a date"):
        call_command("backfill_ads", "--start", "2025-13-01")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--customer", "12345"], "ten digits"),
        (["--days", "1000000"], "--days 1000000 reaches back before"),
        (["--start", "2099-01-01", "--end", "2099-01-05"], "in the future"),
        (["--days", "2", "--start", "2025-01-01"], "use either --days or --start/--end"),
        (["--days", "2", "--end", "2025-01-05"], "use either --days or --start/--end"),
        (["--days", "0"], "--days must be at least 1"),
        (["--start", "1999-12-31", "--end", "2000-01-05"], "--start 1999-12-31 is before"),
        (["--end", "2025-01-05", "--customer", "1234567890"], "--end needs --start"),
    ],
)
def test_arguments_that_cannot_name_a_day_or_an_account_are_refused(args, message) -> None:
    with pytest.raises(CommandError, match=message) as refused:
        call_command("backfill_ads", *args)
    assert refused.value.returncode == backfill_ads.USAGE  # 1 was also "a date failed"


def _earliest() -> dt.date:
    return history.earliest_day(dt.datetime.now(dt.UTC).date())


@pytest.mark.parametrize(
    "args",
    [
        lambda: ["--start", _earliest().isoformat()],
        lambda: ["--days", str(history.days_served(dt.datetime.now(dt.UTC).date()))],
    ],
    ids=["start", "days"],
)
def test_a_range_reaching_back_to_the_earliest_day_is_taken(settings, args) -> None:
    """The earliest day Google Ads serves by day may be asked for, by --start or by --days: with
    no customer configured, the missing customer is all that the command refuses."""
    settings.GOOGLE_ADS_CUSTOMER_IDS = []
    with pytest.raises(CommandError, match="set GOOGLE_ADS_CUSTOMER_IDS or pass --customer"):
        call_command("backfill_ads", *args())


@pytest.mark.parametrize(
    "args",
    [
        lambda: ["--start", (_earliest() - dt.timedelta(days=1)).isoformat()],
        lambda: ["--start", "2020-01-01", "--end", "2020-01-31", "--customer", "1234567890"],
        lambda: ["--days", str(history.days_served(dt.datetime.now(dt.UTC).date()) + 1)],
    ],
    ids=["the-day-before", "years-ago", "days"],
)
def test_a_range_reaching_back_past_googles_37_months_of_daily_data_is_refused(args) -> None:
    """Google Ads (v24 on) refuses a day older than 37 months with
    REQUESTED_DATE_GRANULARITY_NOT_SUPPORTED. Such a range was planned back to 2000-01-01: each
    of its old days cost an API call and failed, and the command exited 1 for them."""
    with pytest.raises(CommandError, match="Google Ads serves days of the last 37 months") as no:
        call_command("backfill_ads", *args())
    assert no.value.returncode == backfill_ads.USAGE


@pytest.mark.parametrize(
    ("today", "earliest"),
    [
        (dt.date(2026, 12, 8), dt.date(2023, 11, 9)),
        (dt.date(2027, 1, 31), dt.date(2024, 1, 1)),  # 2023-12-31, and the day after
        (dt.date(2027, 3, 31), dt.date(2024, 3, 1)),  # no 2024-02-31: its month's last day
        (dt.date(2026, 3, 29), dt.date(2023, 3, 1)),  # no 2023-02-29 either
    ],
)
def test_the_earliest_day_is_the_day_after_the_same_date_37_months_back(today, earliest) -> None:
    assert history.earliest_day(today) == earliest


def test_no_customer_given_or_configured_is_refused_naming_both_ways(settings) -> None:
    settings.GOOGLE_ADS_CUSTOMER_IDS = []
    with pytest.raises(CommandError, match="set GOOGLE_ADS_CUSTOMER_IDS or pass --customer") as no:
        call_command("backfill_ads", "--days", "1")
    assert no.value.returncode == backfill_ads.USAGE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--end", "2025-01-05"], "--end needs --start"),
        (["--days", "1", "--output-dir", "-"], "--output-dir '-' is not a folder"),
    ],
)
def test_a_mistake_in_the_arguments_typed_is_named_before_a_missing_customer(
    settings, args, message
) -> None:
    """With no customer configured, `--end D` was refused for the customer first: once one was
    set, the same command line was refused again, for the --start it lacked."""
    settings.GOOGLE_ADS_CUSTOMER_IDS = []
    with pytest.raises(CommandError, match=message) as refused:
        call_command("backfill_ads", *args)
    assert refused.value.returncode == backfill_ads.USAGE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "abc"], "error: argument --days: invalid int value: 'abc'"),  # argparse's
        (["--days", "0"], "CommandError: --days must be at least 1"),  # the command's own
    ],
)
def test_an_argument_error_on_the_command_line_is_one_line_exiting_64(args, message) -> None:
    result = manage("backfill_ads", *args)
    _, stderr = result.communicate(timeout=120)
    assert result.returncode == backfill_ads.USAGE
    assert message in stderr
    assert "Traceback" not in stderr


@pytest.mark.usefixtures("sync_worker")
def test_an_account_that_cannot_be_looked_up_makes_the_exit_status_non_zero(
    ads_sandbox, tmp_path: Path
) -> None:
    denied, synced = "9876543210", ads_sandbox.customers[0]
    ads_sandbox.configure(denied_customers=[denied])
    out = io.StringIO()

    with pytest.raises(CommandError) as excinfo:
        call_command(
            "backfill_ads",
            *("--days", "2", "--customer", "987-654-3210", "--customer", synced),
            *("--output-dir", str(tmp_path)),
            stdout=out,
        )

    assert excinfo.value.returncode == 1
    assert f"could not be looked up and were not synced: {denied}" in str(excinfo.value)
    run = SyncRun.objects.get()
    assert (run.planned, run.done) == (2, 2)
    assert f"{denied}: account lookup failed" in out.getvalue()


@pytest.mark.usefixtures("sync_worker")
def test_an_account_given_twice_is_counted_once(ads_sandbox, tmp_path: Path) -> None:
    text, run = _backfill(
        *("--days", "1", "--customer", "123-456-7890", "--customer", "1234567890"),
        *("--output-dir", str(tmp_path)),
    )
    assert f"run {run.pk}: 1 date(s) planned for 1 account(s)" in text
    assert (run.planned, run.done) == (1, 1)


@pytest.mark.usefixtures("sync_worker")
def test_a_broker_that_refuses_the_fan_out_is_a_clear_error(
    ads_sandbox, tmp_path: Path, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(tasks, "group", _unpublishable)
    with pytest.raises(CommandError, match="the broker could not take the tasks") as excinfo:
        call_command("backfill_ads", "--days", "2", "--output-dir", str(tmp_path))
    assert excinfo.value.returncode == 2
    # Said in full by the log line and the command's message: no traceback before them.
    (logged,) = [r for r in caplog.records if "fan-out failed" in r.getMessage()]
    assert not logged.exc_info
    assert SyncDay.objects.filter(state=SyncDay.State.FAILED).count() == 4


@pytest.mark.usefixtures("sync_worker")
def test_dates_deferred_by_a_daily_quota_make_the_exit_status_4(
    ads_sandbox, tmp_path: Path
) -> None:
    daily_quota_from_the_first_fetch(ads_sandbox)
    out = io.StringIO()

    with pytest.raises(CommandError, match="deferred to a later run") as deferred:
        call_command("backfill_ads", *("--days", "3", "--output-dir", str(tmp_path)), stdout=out)

    assert deferred.value.returncode == 4
    run = SyncRun.objects.get()
    assert run.failed == 0
    assert run.deferred > 0
    assert f"{run.deferred} date(s) deferred" in str(deferred.value)
    assert _summary_figure(out.getvalue(), "deferred") == run.deferred


@pytest.mark.usefixtures("sync_worker")
def test_the_summary_of_deferred_dates_says_which_the_next_gap_detection_fetches(
    ads_sandbox, tmp_path: Path
) -> None:
    """It said "the next gap detection runs them", which it does not for dates before
    ADS_SYNC_HISTORY_DAYS or accounts not in GOOGLE_ADS_CUSTOMER_IDS."""
    daily_quota_from_the_first_fetch(ads_sandbox)
    out = io.StringIO()

    with pytest.raises(CommandError, match="deferred to a later run"):
        call_command("backfill_ads", *("--days", "3", "--output-dir", str(tmp_path)), stdout=out)

    assert (
        "deferred dates wait for the daily quota (the next gap detection fetches those of "
        "GOOGLE_ADS_CUSTOMER_IDS within ADS_SYNC_HISTORY_DAYS; backfill_ads fetches any)"
    ) in out.getvalue()


@pytest.mark.usefixtures("sync_worker")
def test_ctrl_c_while_waiting_names_the_run_that_goes_on_and_exits_130(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    ads_sandbox.configure(latency_s=0.2)

    def interrupt(run: SyncRun, elapsed: float) -> str:
        raise KeyboardInterrupt  # at the wait's first progress line

    monkeypatch.setattr(backfill_ads.Command, "_progress_line", staticmethod(interrupt))
    with pytest.raises(CommandError) as stopped:
        call_command(
            "backfill_ads", *("--days", "2", "--output-dir", str(tmp_path)), stdout=io.StringIO()
        )
    monkeypatch.undo()

    assert stopped.value.returncode == 130
    run = SyncRun.objects.get()
    assert f"run {run.pk} goes on in the workers" in str(stopped.value)
    assert wait_for_run(run.pk).done == run.planned  # the workers did finish it


def test_ctrl_c_while_waiting_for_another_runs_dates_is_the_same_clear_error(
    tmp_path: Path, monkeypatch
) -> None:
    def interrupted(self: Any, run: SyncRun, customers: list[str]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    monkeypatch.setattr(backfill_ads.Command, "_wait_for_other_runs", interrupted)
    with pytest.raises(CommandError, match="stopped waiting; run") as stopped:
        call_command("backfill_ads", *_one_day_of_one_account(tmp_path), stdout=io.StringIO())
    assert stopped.value.returncode == 130


@pytest.mark.usefixtures("sync_worker")
def test_ctrl_c_while_waiting_for_another_runs_dates_still_shows_its_own_finished_runs_summary(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """Its own run is over by then: what it fetched and what failed are said before it stops."""

    def interrupted(self: Any, run: SyncRun, customers: list[str]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(backfill_ads.Command, "_wait_for_other_runs", interrupted)
    out = io.StringIO()
    with pytest.raises(CommandError, match="stopped waiting; run"):
        call_command("backfill_ads", *_one_day_of_one_account(tmp_path), stdout=out)

    run = SyncRun.objects.get()
    assert f"Summary of run {run.pk} (backfill)" in out.getvalue()
    assert _summary_figure(out.getvalue(), "fetched") == run.done == 1


def test_ctrl_c_while_planning_is_a_clear_error_exiting_130(tmp_path: Path, monkeypatch) -> None:
    def interrupt(**kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    monkeypatch.setattr(tasks, "run_start", interrupt)
    with pytest.raises(CommandError, match="interrupted while planning") as stopped:
        call_command(
            "backfill_ads",
            *("--days", "1", "--customer", "1234567890", "--output-dir", str(tmp_path)),
        )
    assert stopped.value.returncode == 130


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_while_planning_stops_like_ctrl_c(
    tmp_path: Path, monkeypatch, signum: signal.Signals
) -> None:
    """They ended the process mid-fan-out: its days stayed pending, in flight for 12 hours."""
    caught: list[int] = []
    guard = signal.signal(signum, lambda sig, frame: caught.append(sig))  # this test's own

    def signalled(**kwargs: object) -> None:
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler interrupts this

    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    monkeypatch.setattr(tasks, "run_start", signalled)
    try:
        with pytest.raises(CommandError, match="interrupted while planning") as stopped:
            call_command(
                "backfill_ads",
                *("--days", "1", "--customer", "1234567890", "--output-dir", str(tmp_path)),
            )
        assert signal.getsignal(signum) is not None
        assert caught == []  # the command's handler took it, then put this test's back
        os.kill(os.getpid(), signum)
        assert caught == [signum]
    finally:
        signal.signal(signum, guard)
    assert stopped.value.returncode == 128 + signum  # as the shell reports it: SIGTERM 143


def _on_a_terminal(*args: str) -> tuple[str, CommandError | None]:
    """What the command shows on a terminal (a pty; its line ends read as "\n"), and the error
    it ended with, if any."""
    main, replica = pty.openpty()
    received: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the command's side is closed, and all it wrote was read
                return
            if not data:
                return
            received.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    error = None
    try:
        with open(replica, "w", encoding="utf-8") as terminal:
            try:
                call_command("backfill_ads", *args, stdout=terminal)
            except CommandError as exc:
                error = exc
    finally:
        reader.join(timeout=30)
        os.close(main)
    return b"".join(received).decode().replace("\r\n", "\n"), error


@pytest.mark.usefixtures("sync_worker")
def test_on_a_terminal_the_progress_is_one_line_redrawn_and_the_summary_starts_a_line(
    ads_sandbox, tmp_path: Path
) -> None:
    ads_sandbox.configure(latency_s=0.3)  # a few redraws
    text, error = _on_a_terminal("--days", "2", "--output-dir", str(tmp_path))

    assert error is None
    before = text[: text.index("Summary of run")]
    progress = before[before.index("\r[") :]
    assert progress.endswith("\n")  # not "... ETA 0m00sSummary of run"
    assert progress.count("\n") == 1  # redrawn in place, not a line per poll


@pytest.mark.usefixtures("sync_worker")
def test_on_a_terminal_ctrl_c_while_waiting_ends_the_progress_line_first(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """The error that follows goes to standard error, on the same terminal: it began on the
    progress line."""
    ads_sandbox.configure(latency_s=0.5)
    lines = iter(["[progress]"])

    def progress_then_interrupt(run: SyncRun, elapsed: float) -> str:
        line = next(lines, None)
        if line is None:
            raise KeyboardInterrupt  # at the wait's second progress line
        return line

    monkeypatch.setattr(
        backfill_ads.Command, "_progress_line", staticmethod(progress_then_interrupt)
    )
    text, error = _on_a_terminal("--days", "2", "--output-dir", str(tmp_path))
    monkeypatch.undo()

    assert error is not None
    assert error.returncode == 130
    assert text.endswith("\r[progress]\n")
    wait_for_run(SyncRun.objects.get().pk)  # its finish must not run into the teardown


@pytest.mark.usefixtures("sync_worker", "lost_fan_out")
def test_on_a_terminal_lost_tasks_sent_again_are_said_on_a_line_of_their_own(
    ads_sandbox, tmp_path: Path
) -> None:
    text, error = _on_a_terminal(*_one_day_of_one_account(tmp_path))

    assert error is None
    said = text.index("1 date(s) had no task left")
    line = text[text.rindex("\n", 0, said) + 1 : said]
    assert line == f"run(s) {SyncRun.objects.get().pk}: "  # not after the progress line


def _backfill_in_a_thread(*args: str, **options: Any) -> list[BaseException]:
    """`backfill_ads` called in a thread that is not the main one (a scheduler's job): what it
    raised, if anything."""
    raised: list[BaseException] = []

    def backfill() -> None:
        try:
            call_command("backfill_ads", *args, **options)
        except BaseException as exc:
            raised.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=backfill)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    return raised


def test_run_in_a_thread_that_is_not_the_main_one_it_sets_no_signal_handler(
    tmp_path: Path, monkeypatch
) -> None:
    """Only the main thread may set one (signal.signal raises ValueError elsewhere): the
    command called from a thread (call_command in a scheduler's job) stops only on Ctrl-C's
    KeyboardInterrupt, and leaves the process's handlers as they were."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def interrupt(**kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    monkeypatch.setattr(tasks, "run_start", interrupt)
    raised = _backfill_in_a_thread(*_one_day_of_one_account(tmp_path))

    assert len(raised) == 1
    assert isinstance(raised[0], CommandError), raised
    assert raised[0].returncode == 130
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


@pytest.mark.usefixtures("sync_worker")
def test_run_in_a_thread_that_is_not_the_main_one_it_ends_as_in_the_main_one(
    ads_sandbox, tmp_path: Path
) -> None:
    """A backfill that goes well sets no signal handler on its way out either."""
    out = io.StringIO()
    raised = _backfill_in_a_thread(*_one_day_of_one_account(tmp_path), stdout=out)

    assert raised == []
    assert _summary_figure(out.getvalue(), "fetched") == 1


@pytest.mark.usefixtures("sync_worker")
def test_the_wait_goes_on_with_a_new_session_after_postgresql_ended_its_own(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """A restart ends the command's session: the broken connection is closed and the next poll
    opens another, instead of failing on the closed one at every poll, for good."""
    ads_sandbox.configure(latency_s=0.5)  # the wait polls while the day is fetched
    read = backfill_ads.Command._read
    ended: list[int] = []
    missed = [0]

    def ending_the_session_once(self: backfill_ads.Command, poll: Any) -> Any:
        if not ended:
            connection.ensure_connection()
            ended.append(connection.connection.info.backend_pid)
            with other_connection() as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", ended)
            wait_until_session_ended(ended[0])
        value = read(self, poll)
        missed[0] += value is None
        assert missed[0] < 10, "the wait did not reconnect"
        return value

    monkeypatch.setattr(backfill_ads.Command, "_read", ending_the_session_once)
    err = io.StringIO()
    call_command(
        "backfill_ads", *_one_day_of_one_account(tmp_path), stdout=io.StringIO(), stderr=err
    )

    assert err.getvalue().count("the database is unreachable") == 1
    assert missed[0] == 1
    assert SyncRun.objects.get().done == 1


@pytest.mark.usefixtures("sync_worker")
def test_the_wait_outlasts_a_database_restart(ads_sandbox, tmp_path: Path, monkeypatch) -> None:
    """It crashed with a traceback (exit 1, 'a date failed') while the workers went on."""
    real, fetch_data = SyncRun.refresh_from_db, google_ads.fetch_data
    # Two outages, a read between them, while the run waits for its fetches: each is said once.
    fails, outages_over = iter([True, True, False, True]), threading.Event()

    def flaky(self: SyncRun, *args: Any, **kwargs: Any) -> None:
        fail = next(fails, None)
        if fail is None:
            outages_over.set()
        if fail:
            raise OperationalError("the connection is closed")
        real(self, *args, **kwargs)

    def held_fetch(*args: Any, **kwargs: Any) -> Any:
        outages_over.wait(timeout=60)
        return fetch_data(*args, **kwargs)

    monkeypatch.setattr(SyncRun, "refresh_from_db", flaky)
    monkeypatch.setattr(google_ads, "fetch_data", held_fetch)
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "backfill_ads", *("--days", "2", "--output-dir", str(tmp_path)), stdout=out, stderr=err
    )
    assert err.getvalue().count("the database is unreachable") == 2
    run = SyncRun.objects.get()
    assert _summary_figure(out.getvalue(), "fetched") == run.done == run.planned > 0


@pytest.fixture
def fetches_held_until_a_backfill_waits_for_them(monkeypatch) -> Iterator[None]:
    """The module's worker fetches no day until a backfill waits for the dates another run is
    fetching (60 s at most): that run is still in flight when the next backfill plans, however
    slow the machine. It was a sandbox latency of 0.3 s a fetch, about 1 s for the run: a test
    thread held up that long between the two backfills found the dates done, not in flight."""
    waiting = threading.Event()
    fetch_data = google_ads.fetch_data
    wait_for_other_runs = backfill_ads.Command._wait_for_other_runs

    def held_fetch(*args: Any, **kwargs: Any) -> Any:
        waiting.wait(timeout=60)
        return fetch_data(*args, **kwargs)

    def waits(self: backfill_ads.Command, *args: Any, **kwargs: Any) -> Any:
        waiting.set()
        return wait_for_other_runs(self, *args, **kwargs)

    monkeypatch.setattr(google_ads, "fetch_data", held_fetch)
    monkeypatch.setattr(backfill_ads.Command, "_wait_for_other_runs", waits)
    try:
        yield
    finally:
        waiting.set()  # a test that failed before its second backfill


@pytest.mark.usefixtures("sync_worker", "fetches_held_until_a_backfill_waits_for_them")
def test_a_backfill_waits_for_its_dates_that_another_run_is_fetching(
    ads_sandbox, tmp_path: Path
) -> None:
    """It exited 0 at once, 'skipped', while the other run was still fetching them: a script's
    `backfill_ads && export_ads_csv` exported part of the range."""
    _, first = _backfill("--days", "3", "--output-dir", str(tmp_path), "--no-wait")
    text, second = _backfill("--days", "3", "--output-dir", str(tmp_path))

    assert second.planned == 0
    assert "waiting for 6 date(s) of this range that run(s)" in text
    assert "of those: 6 done, 0 failed, 0 deferred, 0 still in flight" in text
    assert set(SyncDay.objects.values_list("state", flat=True)) == {SyncDay.State.DONE}
    wait_for_run(first.pk)  # its finish, after its days, must not run into the teardown


@pytest.mark.usefixtures("sync_worker", "fetches_held_until_a_backfill_waits_for_them")
def test_the_dates_it_waited_for_have_their_files_in_its_own_folder_too(
    ads_sandbox, tmp_path: Path
) -> None:
    """It exited 0 with none of their day files in its --output-dir, and a totals file without
    their lines: the other run wrote them into its own folder only."""
    theirs, ours = tmp_path / "daily", tmp_path / "export"
    _, first = _backfill("--days", "3", "--output-dir", str(theirs), "--no-wait")
    text, run = _backfill("--days", "3", "--output-dir", str(ours))

    assert run.planned == 0
    assert "of those: 6 done" in text
    days = list(SyncDay.objects.filter(state=SyncDay.State.DONE))
    assert len(days) == 6
    for day in days:
        assert csv_rows(ours, day.customer_id, day.date) == expected_rows(day.customer_id, day.date)
    totals = csv_lines(selectors.totals_csv_path(output_dir=ours))
    lines = {(line["customer_id"], line["date"]) for line in totals}
    assert lines == {(day.customer_id, day.date.isoformat()) for day in days}
    assert sum(fetched_days(ads_sandbox.calls()).values()) == 6  # written, not fetched again
    wait_for_run(first.pk)  # its finish, after its days, must not run into the teardown


@pytest.mark.usefixtures("sync_worker", "fetches_held_until_a_backfill_waits_for_them")
def test_the_summary_counts_the_files_of_the_dates_it_waited_for_and_their_time(
    ads_sandbox, tmp_path: Path
) -> None:
    """The summary was printed before their files were written ("csv rewritten 0" for a run
    that ended with 6), and the run's time ended before the writing."""
    theirs, ours = tmp_path / "daily", tmp_path / "export"
    _, first = _backfill("--days", "3", "--output-dir", str(theirs), "--no-wait")
    text, run = _backfill("--days", "3", "--output-dir", str(ours))

    assert text.index("of those: 6 done") < text.index(f"Summary of run {run.pk}")
    assert _summary_figure(text, "csv rewritten") == run.csv_rewritten == 6
    written = max(
        selectors.day_csv_path(output_dir=ours, customer_id=day.customer_id, day=day.date)
        .stat()
        .st_mtime
        for day in SyncDay.objects.all()
    )
    assert run.finished_at is not None
    assert run.finished_at.timestamp() >= written
    began = run.planning_started_at or run.started_at
    assert run.elapsed_s == pytest.approx((run.finished_at - began).total_seconds())
    wait_for_run(first.pk)  # its finish, after its days, must not run into the teardown


@pytest.mark.usefixtures("sync_worker", "fetches_held_until_a_backfill_waits_for_them")
def test_a_file_of_the_dates_it_waited_for_that_cannot_be_written_exits_73_naming_it(
    ads_sandbox, tmp_path: Path
) -> None:
    """It exited 0, the range said complete, with the files missing: only the run's notes, in
    the admin, said so."""
    theirs, ours = tmp_path / "daily", tmp_path / "export"
    _, first = _backfill("--days", "3", "--output-dir", str(theirs), "--no-wait")
    blocked = ads_sandbox.customers[0]
    account_dir = selectors.day_csv_path(
        output_dir=ours, customer_id=blocked, day=dt.date.today()
    ).parent
    account_dir.parent.mkdir()
    account_dir.write_text("")  # the account's folder is a file: no day file goes in it

    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("backfill_ads", "--days", "3", "--output-dir", str(ours), stdout=out)

    assert refused.value.returncode == backfill_ads.CANT_CREATE
    message = str(refused.value)
    assert message.startswith(
        f"3 day file(s) fetched by another run could not be written into {ours}, first: {blocked} "
    )
    assert f"File exists: '{account_dir}'" in message
    assert _summary_figure(out.getvalue(), "csv rewritten") == 3  # the other account's
    wait_for_run(first.pk)  # its finish, after its days, must not run into the teardown


@pytest.mark.usefixtures("sync_worker", "fetches_held_until_a_backfill_waits_for_them")
def test_a_totals_file_that_cannot_be_rebuilt_with_the_dates_it_waited_for_exits_73_naming_it(
    ads_sandbox, tmp_path: Path
) -> None:
    """It said so on stderr and exited 0: README says the range is complete when it exits 0,
    with this folder's totals file rebuilt with the dates another run fetched."""
    theirs, ours = tmp_path / "daily", tmp_path / "export"
    _, first = _backfill("--days", "3", "--output-dir", str(theirs), "--no-wait")
    totals = selectors.totals_csv_path(output_dir=ours)
    totals.mkdir(parents=True)  # no file can be renamed over it

    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("backfill_ads", "--days", "3", "--output-dir", str(ours), stdout=out)

    assert refused.value.returncode == backfill_ads.CANT_CREATE
    assert f"the totals file in {ours} could not be rebuilt: " in str(refused.value)
    assert "Is a directory" in str(refused.value)
    assert f"-> '{totals}'" in str(refused.value)  # the rename over it
    assert _summary_figure(out.getvalue(), "csv rewritten") == 6  # the day files are written
    wait_for_run(first.pk)  # its finish, after its days, must not run into the teardown


@pytest.mark.parametrize(
    ("fault", "status", "problem", "of_those"),
    [
        ("permission_denied", 1, "1 date(s) fetched by another run failed", "1 failed, 0 deferred"),
        (
            "daily_quota",
            4,
            "1 date(s) deferred to a later run, not fetched yet",
            "0 failed, 1 deferred",
        ),
    ],
    ids=["failed", "deferred"],
)
@pytest.mark.usefixtures("sync_worker", "fetches_held_until_a_backfill_waits_for_them")
def test_a_date_it_waited_for_that_the_other_run_failed_or_deferred_is_named_in_its_exit(
    ads_sandbox, tmp_path: Path, fault: str, status: int, problem: str, of_those: str
) -> None:
    services.account_ensure(customer_id="1234567890")  # the fault is for the fetch
    ads_sandbox.configure(fail_first={fault: 1})
    _, first = _backfill(*_one_day_of_one_account(tmp_path), "--no-wait")
    out = io.StringIO()

    with pytest.raises(CommandError) as stopped:
        call_command("backfill_ads", *_one_day_of_one_account(tmp_path), stdout=out)

    assert stopped.value.returncode == status
    assert str(stopped.value) == problem  # its count, and nothing of what did not happen
    assert f"of those: 0 done, {of_those}, 0 still in flight" in out.getvalue()
    wait_for_run(first.pk)


@pytest.mark.usefixtures("sync_worker", "fetches_held_until_a_backfill_waits_for_them")
def test_the_wait_for_another_runs_dates_outlasts_a_database_restart(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    _, first = _backfill(*_one_day_of_one_account(tmp_path), "--no-wait")
    outages: list[OperationalError] = []
    wait_for_other_runs = backfill_ads.Command._wait_for_other_runs  # the fixture's

    def waits(self: backfill_ads.Command, *args: Any, **kwargs: Any) -> Any:
        outages.extend([OperationalError("the connection is closed")] * 2)
        return wait_for_other_runs(self, *args, **kwargs)

    aggregate = QuerySet.aggregate

    def flaky(self: QuerySet[Any], *args: Any, **kwargs: Any) -> Any:
        if outages and threading.current_thread() is threading.main_thread():  # not the worker
            raise outages.pop()
        return aggregate(self, *args, **kwargs)

    monkeypatch.setattr(backfill_ads.Command, "_wait_for_other_runs", waits)
    monkeypatch.setattr(QuerySet, "aggregate", flaky)
    out, err = io.StringIO(), io.StringIO()
    call_command("backfill_ads", *_one_day_of_one_account(tmp_path), stdout=out, stderr=err)

    assert err.getvalue().count("the database is unreachable") == 1
    assert "of those: 1 done, 0 failed, 0 deferred, 0 still in flight" in out.getvalue()
    wait_for_run(first.pk)


@pytest.mark.usefixtures("sync_worker")
def test_a_totals_file_its_run_could_not_write_but_the_rebuild_did_is_not_said_unwritten(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """It exited 0, the file written by the rebuild that follows a wait for another run's
    dates, and its summary still said "the totals file ... could not be written": the note of
    the run's own write, as it finished."""
    write = services.totals_csv_write
    failed: list[str | Path] = []

    def failing_once(*, output_dir: str | Path) -> Path:
        if not failed:  # the worker's, as the run finishes
            failed.append(output_dir)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(output_dir=output_dir)

    def their_date_done(self: Any, run: SyncRun, customers: list[str]) -> Any:
        # Another run fetched a date of this range: the command rebuilds the totals file.
        day = SyncDay.objects.get(run=run)
        return backfill_ads._Elsewhere(runs=[run.pk + 1], done=((day.customer_id, day.date),))

    monkeypatch.setattr(services, "totals_csv_write", failing_once)
    monkeypatch.setattr(backfill_ads.Command, "_wait_for_other_runs", their_date_done)
    text, run = _backfill(*_one_day_of_one_account(tmp_path))

    assert failed == [str(tmp_path)]
    assert selectors.totals_csv_path(output_dir=tmp_path).is_file()
    assert "could not be written" not in text
    assert "could not be written" not in run.notes  # nor in the admin
    assert run.totals_error == ""


@pytest.mark.usefixtures("sync_worker")
def test_a_totals_file_a_run_with_nothing_to_fetch_cannot_write_is_named_and_exits_73(
    ads_sandbox, tmp_path: Path
) -> None:
    """A run whose dates were all done finished as it was planned, and its totals file, which
    could not be written, was only logged: the command exited 0."""
    day = str(dt.date.today() - dt.timedelta(days=10))  # before the lookback window
    args = ("--start", day, "--end", day, "--customer", "1234567890", "--output-dir", str(tmp_path))
    _backfill(*args)
    totals = selectors.totals_csv_path(output_dir=tmp_path)
    totals.unlink()
    totals.mkdir()
    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("backfill_ads", *args, stdout=out)

    assert refused.value.returncode == backfill_ads.CANT_CREATE
    assert f"the totals file in {tmp_path} could not be written: " in str(refused.value)
    assert "Is a directory" in str(refused.value)
    assert SyncRun.objects.order_by("-pk").values_list("planned", flat=True)[0] == 0
    assert f"the totals file in {tmp_path} could not be written" in out.getvalue()


@pytest.mark.usefixtures("sync_worker")
def test_a_totals_file_its_own_run_cannot_write_is_named_and_exits_73(
    ads_sandbox, tmp_path: Path
) -> None:
    """The worker that finished the run logged it, and the command said nothing and exited 0:
    `backfill_ads && cp ads_daily_totals.csv` copied the file of an earlier run."""
    totals = selectors.totals_csv_path(output_dir=tmp_path)
    totals.mkdir()
    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("backfill_ads", *_one_day_of_one_account(tmp_path), stdout=out)

    assert refused.value.returncode == backfill_ads.CANT_CREATE
    assert f"the totals file in {tmp_path} could not be written: " in str(refused.value)
    assert "Is a directory" in str(refused.value)
    assert f"-> '{totals}'" in str(refused.value)  # the rename over it
    run = SyncRun.objects.get()
    assert (run.done, run.failed) == (1, 0)  # the day is fetched and its file written
    assert f"the totals file in {tmp_path} could not be written" in out.getvalue()  # notes


@pytest.mark.usefixtures("sync_worker")
def test_a_failed_date_and_a_totals_file_that_cannot_be_written_exit_1_naming_both(
    ads_sandbox, tmp_path: Path
) -> None:
    """73 says the folder is all a retry needs mended: with a date failed too, the run is worth
    a retry as it is, as for any failed date."""
    services.account_ensure(customer_id="1234567890")  # the fault is for the fetch
    ads_sandbox.configure(fail_first={"permission_denied": 1})
    selectors.totals_csv_path(output_dir=tmp_path).mkdir()
    with pytest.raises(CommandError) as refused:
        call_command("backfill_ads", *_one_day_of_one_account(tmp_path), stdout=io.StringIO())

    assert refused.value.returncode == 1
    message = str(refused.value)
    assert message.startswith(f"1 date(s) failed; the totals file in {tmp_path} could not be ")


def _before_each_poll(monkeypatch, step: Callable[[], None]) -> None:
    """Run `step` before each of the command's database reads (its polls)."""
    read = backfill_ads.Command._read

    def stepped(self: backfill_ads.Command, poll: Any) -> Any:
        step()
        return read(self, poll)

    monkeypatch.setattr(backfill_ads.Command, "_read", stepped)


def _settle_one_day(run: SyncRun) -> bool:
    """One of the run's pending days done, as its worker would settle it; False if none is."""
    day = SyncDay.objects.filter(run=run, state=SyncDay.State.PENDING).first()
    if day is None:
        return False
    SyncDay.objects.filter(pk=day.pk).update(state=SyncDay.State.DONE)
    SyncRun.objects.filter(pk=run.pk).update(done=F("done") + 1)
    return True


def _held_by_another_run(customer_id: str, days: int, output_dir: Path) -> SyncRun:
    """Another run, unfinished, holding the account's last `days` days (pending)."""
    services.account_ensure(customer_id=customer_id)  # its time zone names its yesterday
    window = selectors.sync_windows(customer_ids=[customer_id], days=days)[0]
    other = SyncRun.objects.create(trigger="backfill", output_dir=str(output_dir), planned=days)
    for day in days_between(window.start, window.end):
        SyncDay.objects.create(customer_id=customer_id, date=day, run=other)
    return other


@pytest.mark.parametrize("meanwhile", ["nothing", "stall checks", "another run settles days"])
def test_a_date_stranded_in_another_run_exits_4_naming_the_run(
    ads_sandbox, tmp_path: Path, monkeypatch, meanwhile: str
) -> None:
    """With stall checks before the give-up (as with the defaults, 30 s and 660 s), one that
    finds the tasks not lost and sends nothing does not put the give-up off. Nor does another
    run busy with other dates: progress is what the runs holding the range's dates settle."""
    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    monkeypatch.setattr(backfill_ads, "OTHER_RUNS_STALL_S", 0.5)
    if meanwhile == "stall checks":
        monkeypatch.setattr(backfill_ads, "STALL_CHECK_S", 0.1)
        monkeypatch.setattr(backfill_ads, "tasks_lost", lambda queue, run_ids: False)
    customer_id = ads_sandbox.customers[0]
    stranded = _held_by_another_run(customer_id, 1, tmp_path)
    if meanwhile == "another run settles days":
        monkeypatch.setattr(backfill_ads, "POLL_S", 0.02)  # the wait's polls 0.1 s apart
        busy = SyncRun.objects.create(trigger="backfill", output_dir=str(tmp_path), planned=1000)
        polls = [0]

        def busy_elsewhere() -> None:
            polls[0] += 1
            assert polls[0] < 100, "still waiting for the stranded run"
            SyncRun.objects.filter(pk=busy.pk).update(done=F("done") + 1)

        _before_each_poll(monkeypatch, busy_elsewhere)

    out = io.StringIO()
    with pytest.raises(CommandError) as stopped:
        call_command(
            "backfill_ads",
            *("--days", "1", "--customer", customer_id, "--output-dir", str(tmp_path)),
            stdout=out,
        )
    assert stopped.value.returncode == 4
    # First: no count of deferred dates, nor of dates not complete, where there are none.
    assert str(stopped.value).startswith(f"1 date(s) still in flight in run(s) {stranded.pk}, ")
    assert "of those: 0 done, 0 failed, 0 deferred, 1 still in flight" in out.getvalue()


@pytest.mark.usefixtures("sync_worker")
def test_dates_other_runs_hold_for_other_accounts_or_days_are_not_waited_for(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(backfill_ads, "OTHER_RUNS_STALL_S", 0.5)  # a wait on them: exit 4
    ours, theirs = ads_sandbox.customers[:2]
    services.account_ensure(customer_id=ours)  # its time zone names its yesterday
    end = selectors.sync_windows(customer_ids=[ours], days=1)[0].end
    other = SyncRun.objects.create(trigger="backfill", output_dir=str(tmp_path), planned=2)
    SyncDay.objects.create(customer_id=theirs, date=end, run=other)
    SyncDay.objects.create(customer_id=ours, date=end - dt.timedelta(days=1), run=other)

    text, run = _backfill("--days", "1", "--customer", ours, "--output-dir", str(tmp_path))

    assert "waiting for" not in text
    assert (run.planned, run.done) == (1, 1)


def test_another_run_that_goes_on_settling_days_is_waited_for_to_its_end(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """Slower in all than OTHER_RUNS_STALL_S, it is not stranded: it settles a day between
    every two polls of the wait."""
    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    monkeypatch.setattr(backfill_ads, "OTHER_RUNS_STALL_S", 0.5)
    monkeypatch.setattr(backfill_ads, "PLAIN_EVERY_S", 0.0)  # a line at every poll
    customer_id = ads_sandbox.customers[0]
    other = _held_by_another_run(customer_id, 3, tmp_path)
    wait_for_other_runs = backfill_ads.Command._wait_for_other_runs
    waiting = threading.Event()

    def waits(self: backfill_ads.Command, *args: Any, **kwargs: Any) -> Any:
        waiting.set()
        return wait_for_other_runs(self, *args, **kwargs)

    def settling_one_day_first() -> None:
        if waiting.is_set():
            _settle_one_day(other)

    monkeypatch.setattr(backfill_ads.Command, "_wait_for_other_runs", waits)
    _before_each_poll(monkeypatch, settling_one_day_first)
    text, run = _backfill("--days", "3", "--customer", customer_id, "--output-dir", str(tmp_path))

    assert run.planned == 0
    assert "waiting for 3 date(s)" in text
    for unsettled in (2, 1):
        line = f"  {unsettled} of them still in flight; those runs last settled a day 0 s ago"
        assert f"\n{line}\n" in text
    assert "of those: 3 done, 0 failed, 0 deferred, 0 still in flight" in text


def _still_clock() -> FakeClock:
    """The command's `time`, moving only when the command sleeps: the stall checks and the
    give-up come at the same polls on any machine, at no cost."""
    return FakeClock(start=0.0, step=0.0)


def test_another_runs_tasks_lost_between_its_progress_are_sent_again_as_often_as_it_takes(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """RESENDS_MAX counts the re-sends since those runs last settled a day, as in the wait for
    this run's own: a broker that loses their tasks now and then, while each re-send is
    fetched, does not end the wait with "lost again after 3 re-sends"."""
    monkeypatch.setattr(backfill_ads, "time", clock := _still_clock())
    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    monkeypatch.setattr(backfill_ads, "tasks_lost", lambda queue, run_ids: True)
    days = backfill_ads.RESENDS_MAX + 2
    other = _held_by_another_run(ads_sandbox.customers[0], days, tmp_path)
    resent: list[float] = []

    def resend_fetched(*, run_ids: list[int]) -> int:
        resent.append(clock.now)
        assert _settle_one_day(other)  # by the next poll
        return 1

    monkeypatch.setattr(tasks, "resend_unsettled", resend_fetched)
    text, run = _backfill(
        "--days", str(days), "--customer", ads_sandbox.customers[0], "--output-dir", str(tmp_path)
    )

    assert run.planned == 0
    assert len(resent) == days
    assert f"of those: {days} done, 0 failed, 0 deferred, 0 still in flight" in text


def test_days_of_another_run_sent_again_are_given_as_long_as_any_from_the_resend(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """The give-up (OTHER_RUNS_STALL_S with no day settled) counts from the re-send, not from
    the runs' last progress before it: the day it sent is fetched 640 s after it, 700 s
    after the wait began, and is waited for."""
    monkeypatch.setattr(backfill_ads, "time", clock := _still_clock())
    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    resent: list[float] = []
    monkeypatch.setattr(backfill_ads, "tasks_lost", lambda queue, run_ids: not resent)
    monkeypatch.setattr(tasks, "resend_unsettled", lambda *, run_ids: resent.append(clock.now) or 1)
    customer_id = ads_sandbox.customers[0]
    other = _held_by_another_run(customer_id, 1, tmp_path)
    fetched_after = backfill_ads.OTHER_RUNS_STALL_S - 20

    def fetched_late() -> None:
        if resent and clock.now >= resent[0] + fetched_after:
            _settle_one_day(other)

    _before_each_poll(monkeypatch, fetched_late)
    text, run = _backfill("--days", "1", "--customer", customer_id, "--output-dir", str(tmp_path))

    assert run.planned == 0
    assert resent[0] + fetched_after > backfill_ads.OTHER_RUNS_STALL_S  # past it from the start
    assert "of those: 1 done, 0 failed, 0 deferred, 0 still in flight" in text


def _one_day_of_one_account(output_dir: Path) -> tuple[str, ...]:
    return ("--days", "1", "--customer", "1234567890", "--output-dir", str(output_dir))


def test_a_planning_lock_held_by_another_planning_exits_3_saying_so(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    with locks.planning_lock() as held:  # another backfill's, or beat's detection
        assert held
        with pytest.raises(CommandError, match="another planning holds the planning lock") as busy:
            call_command("backfill_ads", *_one_day_of_one_account(tmp_path), "--lock-wait", "0")
    assert busy.value.returncode == 3
    assert not SyncRun.objects.exists()


def _exits_2_for_want_of_a_worker(tmp_path: Path) -> str:
    """A one-day backfill into `tmp_path` that ends its wait for want of a worker consuming its
    queue, exiting 2: what it wrote to stderr."""
    err = io.StringIO()
    with pytest.raises(CommandError, match="no Celery worker is consuming queue") as stopped:
        call_command(
            "backfill_ads", *_one_day_of_one_account(tmp_path), stdout=io.StringIO(), stderr=err
        )
    assert stopped.value.returncode == 2
    return err.getvalue()


def test_no_worker_on_the_queue_exits_2_saying_so(tmp_path: Path, monkeypatch) -> None:
    # A queue no worker consumes (the module's worker consumes the test queue).
    monkeypatch.setattr(celery_app.conf, "task_default_queue", f"unconsumed-{uuid.uuid4()}")
    _exits_2_for_want_of_a_worker(tmp_path)


@pytest.mark.parametrize("no_wait", [[], ["--no-wait"]])
def test_a_broker_that_cannot_be_reached_is_named_not_taken_for_a_missing_worker(
    tmp_path: Path, monkeypatch, no_wait: list[str]
) -> None:
    """With --no-wait it was not checked: the run planned, failed to send, and failed its days
    (with --force, days that were done)."""
    monkeypatch.setattr(celery_app.conf, "broker_url", "amqp://guest:guest@127.0.0.1:1//")
    with pytest.raises(CommandError, match="the broker cannot be reached") as stopped:
        call_command("backfill_ads", *_one_day_of_one_account(tmp_path), *no_wait)
    assert stopped.value.returncode == 2
    assert "(amqp://guest:**@127.0.0.1:1//: " in str(stopped.value)  # which broker it tried
    assert "guest:guest" not in str(stopped.value)  # the password is masked
    assert not SyncRun.objects.exists()


def test_a_broker_url_with_a_mistyped_scheme_is_named_exiting_2(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(celery_app.conf, "broker_url", "amqqp://guest:guest@127.0.0.1:5672//")
    with pytest.raises(CommandError, match="the broker cannot be reached") as stopped:
        call_command("backfill_ads", *_one_day_of_one_account(tmp_path))
    assert stopped.value.returncode == 2
    assert "No such transport: amqqp" in str(stopped.value)
    assert not SyncRun.objects.exists()


def test_a_range_not_complete_yet_in_any_accounts_time_zone_exits_4_saying_so(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """It planned nothing and exited 0, naming no reason."""
    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    today = dt.datetime.now(dt.UTC).date()  # not over yet west of UTC, where the sandbox is
    with pytest.raises(CommandError, match="is complete yet") as stopped:
        call_command(
            "backfill_ads",
            *("--start", str(today), "--end", str(today), "--output-dir", str(tmp_path)),
            stdout=io.StringIO(),
        )
    assert stopped.value.returncode == 4


# The module's worker runs what a --no-wait backfill sends: a test that does not wait for its
# run left it running into the next test's teardown, whose flush deadlocked with it (CI).
@pytest.mark.usefixtures("sync_worker")
def test_dates_past_the_accounts_yesterday_are_named_as_not_planned(
    ads_sandbox, tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    text, run = _backfill(
        *("--start", str(today - dt.timedelta(days=3)), "--end", str(today)),
        *("--output-dir", str(tmp_path), "--no-wait"),
    )
    not_complete = "note: not complete yet in the accounts' time zones, so not planned: the dates"
    notes = [line for line in text.splitlines() if line.startswith(not_complete)]
    # Each account after its own yesterday, the latest of them the range's end: from 05:00 to
    # 08:00 UTC (04:00 to 07:00 in summer), Los Angeles' (1234567890) is a day before New
    # York's (2345678901), and is named first.
    assert len(notes) == 1
    assert f" after {run.range_end} for " in notes[0]
    wait_for_run(run.pk)


@pytest.mark.usefixtures("sync_worker")
def test_a_planning_removes_csv_writes_that_a_killed_worker_left_unfinished(
    ads_sandbox, tmp_path: Path
) -> None:
    """A worker killed between the temporary file and its rename left it there for good."""
    folder = tmp_path / ads_sandbox.customers[0]
    folder.mkdir()
    old, recent = folder / ".2026-03-20.csv.2n6l6ut0.tmp", folder / ".2026-03-21.csv.x1.tmp"
    unrelated = [
        folder / "notes.tmp",
        tmp_path / ".ads_daily_totals.csv.keep",
        folder / "a.csv",
        folder / "2026-03-20.csv.2n6l6ut0.tmp",  # not hidden: no temporary file of ours
    ]
    for path in (old, recent, *unrelated):
        path.write_text("customer_id,date\n")
    hours_ago = time.time() - 2 * 3600
    for path in (old, *unrelated):
        os.utime(path, (hours_ago, hours_ago))
    _, run = _backfill("--days", "1", "--output-dir", str(tmp_path), "--no-wait")
    assert not old.exists()
    assert recent.exists()  # a write that may still be going on
    assert all(path.exists() for path in unrelated)
    wait_for_run(run.pk)


@pytest.mark.usefixtures("sync_worker")
def test_an_end_one_accounts_time_zone_has_reached_and_anothers_not_exits_4_naming_it(
    ads_sandbox, tmp_path: Path
) -> None:
    """It compared --end with the latest account's yesterday only, and exited 0 with the other
    account's last date never fetched (Tokyo and Los Angeles, every afternoon UTC)."""
    east, west = ads_sandbox.customers[:2]
    for customer_id, zone in ((east, "Pacific/Kiritimati"), (west, "Pacific/Pago_Pago")):
        AdsAccount.objects.create(customer_id=customer_id, time_zone=zone, currency_code="USD")
    end = selectors.account_yesterday(account=AdsAccount.objects.get(pk=east))
    west_last = selectors.account_yesterday(account=AdsAccount.objects.get(pk=west))
    assert west_last < end  # 25 hours apart
    with pytest.raises(CommandError, match="are not complete yet") as stopped:
        call_command(
            "backfill_ads",
            *("--start", str(end - dt.timedelta(days=3)), "--end", str(end)),
            *("--customer", east, "--customer", west, "--output-dir", str(tmp_path)),
            stdout=io.StringIO(),
        )
    assert stopped.value.returncode == 4
    assert f"the dates after {west_last} for {west} are not complete yet" in str(stopped.value)
    assert SyncDay.objects.filter(customer_id=east, date=end, state="done").exists()
    assert not SyncDay.objects.filter(customer_id=west, date__gt=west_last).exists()


@pytest.mark.usefixtures("sync_worker")
def test_a_range_past_the_accounts_yesterday_fetches_the_rest_and_exits_4(
    ads_sandbox, tmp_path: Path
) -> None:
    """It exited 0: `backfill_ads --end today && export_ads_csv` exported a partial range."""
    today = dt.datetime.now(dt.UTC).date()
    with pytest.raises(CommandError, match="are not complete yet") as stopped:
        call_command(
            "backfill_ads",
            *("--start", str(today - dt.timedelta(days=2)), "--end", str(today)),
            *("--customer", "1234567890", "--output-dir", str(tmp_path)),
            stdout=io.StringIO(),
        )
    assert stopped.value.returncode == 4
    run = SyncRun.objects.get()
    assert (run.failed, run.done) == (0, run.planned)


def test_the_signal_stop_copies_pickles_and_reads_as_its_signal() -> None:
    stop = backfill_ads.SignalInterrupt(signal.SIGTERM)
    for again in (copy.copy(stop), pickle.loads(pickle.dumps(stop))):
        assert (again.signum, str(again)) == (signal.SIGTERM, "SIGTERM")
    assert backfill_ads.interrupted_status(stop) == 143
    assert backfill_ads.interrupted_status(KeyboardInterrupt()) == 130


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lock-wait", "-1"], "not a number of seconds"),  # read as 0
        (["--lock-wait", "nan"], "not a number of seconds"),
        (["--output-dir", ""], "is not a folder"),  # read as the default folder
        (["--output-dir", "-"], "is not a folder"),  # made a folder named "-"
    ],
)
def test_odd_waits_and_folders_are_refused(tmp_path: Path, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError, match=message):
        call_command("backfill_ads", "--days", "1", "--customer", "1234567890", *args)
    assert not (tmp_path / "-").exists()
    assert not SyncRun.objects.exists()


class _LostFanOut:
    """tasks.group whose first `times` fan-outs never reach the broker, as when the queue is
    purged or a broker restarts without its data."""

    def __init__(self, times: int = 1) -> None:
        self.times = times
        self.lost = 0

    def __call__(self, signatures: Any) -> Any:
        if self.lost == self.times:
            return celery_group(signatures)
        self.lost += 1
        return celery_group([])  # nothing sent


@pytest.fixture
def lost_fan_out(monkeypatch) -> _LostFanOut:
    """The next fan-out is lost, and the wait checks for stalls every 0.3 s."""
    monkeypatch.setattr(backfill_ads, "STALL_CHECK_S", 0.3)
    lost = _LostFanOut()
    monkeypatch.setattr(tasks, "group", lost)
    return lost


@pytest.mark.usefixtures("sync_worker", "lost_fan_out")
def test_dates_whose_tasks_were_lost_are_sent_again_and_the_backfill_ends(
    ads_sandbox, tmp_path: Path
) -> None:
    """The days stayed pending with no task anywhere: the backfill waited with no end (a
    worker was consuming the queue), and their run stayed open for 12 hours."""
    text, run = _backfill("--days", "3", "--output-dir", str(tmp_path))

    assert "run(s) " + str(run.pk) + ": 6 date(s) had no task left" in text
    assert (run.planned, run.done, run.finished_at is not None) == (6, 6, True)
    assert len(fetched_days(ads_sandbox.calls())) == 6


@pytest.mark.usefixtures("sync_worker", "lost_fan_out")
def test_a_backfill_sends_again_the_lost_tasks_of_the_run_it_waits_for(
    ads_sandbox, tmp_path: Path
) -> None:
    _, first = _backfill("--days", "3", "--output-dir", str(tmp_path), "--no-wait")
    text, second = _backfill("--days", "3", "--output-dir", str(tmp_path))

    assert second.planned == 0
    assert f"run(s) {first.pk}: 6 date(s) had no task left" in text
    assert "of those: 6 done, 0 failed, 0 deferred, 0 still in flight" in text
    first.refresh_from_db()
    assert (first.done, first.finished_at is not None) == (6, True)


@pytest.mark.usefixtures("sync_worker")
def test_a_task_a_worker_holds_is_not_taken_for_lost(ads_sandbox, tmp_path: Path) -> None:
    queue = celery_app.conf.task_default_queue
    ads_sandbox.configure(latency_s=3.0)
    _, run = _backfill(*_one_day_of_one_account(tmp_path), "--no-wait")
    deadline = time.monotonic() + 10
    while not SyncDay.objects.filter(run=run, state=SyncDay.State.RUNNING).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not backfill_ads.tasks_lost(queue, [run.pk])  # the worker is fetching it
    assert backfill_ads.tasks_lost(queue, [run.pk + 1])  # no task of that run anywhere
    wait_for_run(run.pk)

    # A task of that run the worker holds for later (a retry's countdown) is not lost either.
    tasks.sync_day.apply_async(("1234567890", "2000-01-01", run.pk + 1), countdown=2)
    assert not backfill_ads.tasks_lost(queue, [run.pk + 1])
    deadline = time.monotonic() + 10  # it runs (and skips: no such run), and is gone
    while not backfill_ads.tasks_lost(queue, [run.pk + 1]):
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.usefixtures("sync_worker")
def test_tasks_lost_after_every_resend_end_the_wait_with_exit_4(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """As with a worker that drops the tasks it does not know (one running older code)."""
    monkeypatch.setattr(backfill_ads, "STALL_CHECK_S", 0.2)
    monkeypatch.setattr(tasks, "group", lost := _LostFanOut(times=1 + backfill_ads.RESENDS_MAX))
    with pytest.raises(CommandError) as stopped:
        _backfill(*_one_day_of_one_account(tmp_path))

    assert stopped.value.returncode == 4
    assert f"lost again after {backfill_ads.RESENDS_MAX} re-sends" in str(stopped.value)
    assert "a later plan over them takes them over 12 hours after they last moved" in str(
        stopped.value
    )
    assert lost.lost == 1 + backfill_ads.RESENDS_MAX
    # Its day is sent again by the next backfill's wait, or taken over by a later plan.
    assert SyncDay.objects.get().state == SyncDay.State.PENDING


@pytest.mark.usefixtures("sync_worker")
def test_a_resend_the_broker_refuses_is_said_and_tried_again_at_a_later_stall(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """The broker went away between the check and the resend: the wait goes on, and a later
    stall check sends the days again."""
    monkeypatch.setattr(backfill_ads, "STALL_CHECK_S", 0.3)
    fan_outs = iter([lambda signatures: celery_group([]), _unpublishable])  # lost, refused

    def group(signatures: Any) -> Any:
        return next(fan_outs, celery_group)(signatures)

    monkeypatch.setattr(tasks, "group", group)
    out, err = io.StringIO(), io.StringIO()
    call_command("backfill_ads", *_one_day_of_one_account(tmp_path), stdout=out, stderr=err)

    assert "could not send the lost tasks again ([Errno 111] Connection refused)" in err.getvalue()
    assert "1 date(s) had no task left" in out.getvalue()
    run = SyncRun.objects.get()
    assert (run.done, run.finished_at is not None) == (1, True)


def test_lost_tasks_are_sent_again_only_when_seen_lost_at_two_checks_in_a_row(
    monkeypatch,
) -> None:
    """A message may be on its way to a worker at one check: lost, then found, then lost again
    is not twice in a row; nor are a resend and the check after it (what it sent may be on its
    way too)."""
    seen = iter([True, False, True, True, True, True])
    monkeypatch.setattr(backfill_ads, "tasks_lost", lambda queue, run_ids: next(seen))
    sent: list[list[int]] = []
    monkeypatch.setattr(tasks, "resend_unsettled", lambda *, run_ids: sent.append(run_ids) or 1)
    lost = backfill_ads._LostTasks(backfill_ads.Command(stdout=io.StringIO()), "queue")

    assert [lost.check([7]) for _ in range(6)] == [False, False, False, True, False, True]
    assert sent == [[7], [7]]


def test_lost_tasks_with_only_days_a_worker_may_still_run_are_not_counted_as_sent_again(
    monkeypatch,
) -> None:
    """Nothing is sent (resend_unsettled): it is neither said nor counted towards the re-sends
    that end the wait ("lost again after 3 re-sends") while a worker still runs those days."""
    monkeypatch.setattr(backfill_ads, "tasks_lost", lambda queue, run_ids: True)
    monkeypatch.setattr(tasks, "resend_unsettled", lambda *, run_ids: 0)
    out = io.StringIO()
    lost = backfill_ads._LostTasks(backfill_ads.Command(stdout=out), "queue")

    checks = 2 * (backfill_ads.RESENDS_MAX + 1)
    assert [lost.check([7]) for _ in range(checks)] == [False] * checks
    assert out.getvalue() == ""


def test_lost_tasks_seen_after_the_runs_settled_a_day_are_checked_and_sent_again_afresh(
    monkeypatch,
) -> None:
    """What the checks saw before the runs settled a day is forgotten: the tasks must be seen
    lost at two checks in a row again, and may be sent again RESENDS_MAX times more before the
    wait gives up on them."""
    monkeypatch.setattr(backfill_ads, "tasks_lost", lambda queue, run_ids: True)
    monkeypatch.setattr(tasks, "resend_unsettled", lambda *, run_ids: 1)
    lost = backfill_ads._LostTasks(backfill_ads.Command(stdout=io.StringIO()), "queue")
    assert [lost.check([7]) for _ in range(3)] == [False, True, False]  # sent, then seen lost

    lost.progress()

    resends = backfill_ads.RESENDS_MAX
    assert [lost.check([7]) for _ in range(2 * resends)] == [False, True] * resends
    assert not lost.check([7])
    with pytest.raises(CommandError, match=f"lost again after {resends} re-sends"):
        lost.check([7])


def test_a_day_a_worker_may_still_be_running_is_not_sent_again(tmp_path: Path, monkeypatch) -> None:
    """A worker in a warm shutdown (or with its consumer cancelled) no longer consumes the queue
    and is not asked, yet still runs its task: its `running` day was sent again, and fetched
    twice at once. Only a day running past sync_day's hard time limit is."""
    run = SyncRun.objects.create(trigger="backfill", output_dir=str(tmp_path), planned=3)
    days = [dt.date(2026, 1, n) for n in (1, 2, 3)]
    for day, state in zip(days, ["pending", "running", "running"], strict=True):
        SyncDay.objects.create(customer_id="1234567890", date=day, state=state, run=run)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=tasks.SYNC_DAY_TIME_LIMIT_S + 1)
    SyncDay.objects.filter(date=days[2]).update(updated_at=long_ago)
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        tasks,
        "group",
        lambda signatures: sent.extend(s.args for s in signatures) or celery_group([]),
    )

    assert tasks.resend_unsettled(run_ids=[run.pk]) == 2
    assert sorted(sent) == [
        ("1234567890", "2026-01-01", run.pk),
        ("1234567890", "2026-01-03", run.pk),
    ]


@pytest.mark.parametrize("fault", ["broker unreachable", "queue not consumed yet"])
@pytest.mark.usefixtures("sync_worker", "lost_fan_out")
def test_the_wait_outlasts_a_broker_restart(
    ads_sandbox, tmp_path: Path, monkeypatch, capsys, fault: str
) -> None:
    """It exited 2 at the first stall check with the broker away ("no Celery worker is
    consuming queue ... any more"), or with the broker back before the worker had reconnected;
    the worker was running all along, and with the broker's data lost, the run stayed stuck."""
    real = broker.queue_counts
    faulty = iter(range(3 if fault == "broker unreachable" else 1))

    def queue_counts(queue: str) -> tuple[int, int] | None:
        # From the wait on: the check before planning finds the broker and the worker.
        if not SyncRun.objects.exists() or next(faulty, None) is None:
            return real(queue)
        if fault == "broker unreachable":
            raise KombuOperationalError("[Errno 111] Connection refused")
        return 0, 0  # a queue the worker has not declared again yet

    monkeypatch.setattr(broker, "queue_counts", queue_counts)
    text, run = _backfill(*_one_day_of_one_account(tmp_path))

    assert (run.done, run.finished_at is not None) == (1, True)
    assert "had no task left" in text
    unreachable = capsys.readouterr().err.count("the broker is unreachable; still waiting")
    assert unreachable == (1 if fault == "broker unreachable" else 0)


@pytest.mark.usefixtures("sync_worker", "lost_fan_out")
def test_a_queue_no_worker_consumes_any_more_at_two_checks_exits_2(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    real = broker.queue_counts
    checks = []

    def queue_counts(queue: str) -> tuple[int, int] | None:
        if not SyncRun.objects.exists():
            return real(queue)
        checks.append(queue)
        return 0, 0  # the worker stopped

    monkeypatch.setattr(broker, "queue_counts", queue_counts)
    _exits_2_for_want_of_a_worker(tmp_path)
    assert len(checks) == 2


@pytest.mark.usefixtures("sync_worker", "lost_fan_out")
def test_after_a_broker_outage_a_queue_no_worker_consumes_is_checked_twice_again(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """A worker reconnecting to a broker that came back is not counted until it has declared
    its queue again: the checks in a row that find no worker count again from the outage, and
    each outage is said, once."""
    real = broker.queue_counts
    checks: list[str] = []

    def queue_counts(queue: str) -> tuple[int, int] | None:
        if not SyncRun.objects.exists():
            return real(queue)
        checks.append(queue)
        if len(checks) in (2, 4):  # the broker restarts
            raise KombuOperationalError("[Errno 111] Connection refused")
        return 0, 0  # the worker stopped

    monkeypatch.setattr(broker, "queue_counts", queue_counts)
    err = _exits_2_for_want_of_a_worker(tmp_path)
    assert len(checks) == 6  # none, away, none, away, none, none
    assert err.count("the broker is unreachable; still waiting") == 2


@pytest.mark.usefixtures("lost_fan_out")
def test_a_check_that_finds_a_worker_consuming_counts_the_checks_without_one_again(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """Only two checks in a row that find no worker end the wait (exit 2), and a broker outage
    after a check that found one is said again, however they come and go."""
    monkeypatch.setattr(backfill_ads, "time", _still_clock())
    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    monkeypatch.setattr(backfill_ads, "tasks_lost", lambda queue, run_ids: False)  # not resent
    seen = iter([None, True, None, False, True, False])  # away, one, away, none, one, none
    checks: list[bool | None] = []

    def consumed(queue: str) -> bool | None:
        checks.append(next(seen, False))  # then none for good
        return checks[-1]

    monkeypatch.setattr(broker, "consumed", consumed)
    err = _exits_2_for_want_of_a_worker(tmp_path)
    assert checks == [None, True, None, False, True, False, False]
    assert err.count("the broker is unreachable; still waiting") == 2


@pytest.mark.usefixtures("lost_fan_out")
def test_the_two_checks_without_a_worker_that_end_the_wait_are_a_stall_apart(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    """A worker reconnecting is given a whole stall to be counted again: the check after one
    comes STALL_CHECK_S later, not at the next poll."""
    monkeypatch.setattr(backfill_ads, "time", clock := _still_clock())
    monkeypatch.setattr(backfill_ads, "queue_has_consumers", lambda queue: True)
    checked: list[float] = []
    monkeypatch.setattr(broker, "consumed", lambda queue: checked.append(clock.now) or False)
    _exits_2_for_want_of_a_worker(tmp_path)
    assert len(checked) == 2
    assert checked[1] - checked[0] > backfill_ads.STALL_CHECK_S


@pytest.mark.usefixtures("sync_worker", "lost_fan_out")
def test_on_a_terminal_a_queue_no_worker_consumes_any_more_ends_the_progress_line_first(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    real = broker.queue_counts

    def queue_counts(queue: str) -> tuple[int, int] | None:
        return real(queue) if not SyncRun.objects.exists() else (0, 0)  # the worker stopped

    monkeypatch.setattr(broker, "queue_counts", queue_counts)
    text, error = _on_a_terminal(*_one_day_of_one_account(tmp_path))

    assert error is not None
    assert error.returncode == 2
    assert text.endswith("\n")  # the error follows on standard error, on the same terminal


@pytest.mark.usefixtures("sync_worker", "fetches_held_until_a_backfill_waits_for_them")
def test_the_summarys_time_counts_the_wait_for_dates_another_run_fetched_into_the_same_folder(
    ads_sandbox, tmp_path: Path
) -> None:
    """Waiting for them in another folder, the run's time ran to the files it then wrote, the
    wait included; in the same folder (no file to write) it ended as it was planned, and the
    summary said "elapsed 0.0 s" after a wait of any length."""
    _, first = _backfill("--days", "3", "--output-dir", str(tmp_path), "--no-wait")
    text, run = _backfill("--days", "3", "--output-dir", str(tmp_path))

    assert "of those: 6 done" in text
    settled = max(SyncDay.objects.values_list("updated_at", flat=True))
    assert run.finished_at is not None
    assert run.finished_at >= settled
    began = run.planning_started_at or run.started_at
    assert run.elapsed_s == pytest.approx((run.finished_at - began).total_seconds())
    assert f"elapsed          {run.elapsed_s:.1f} s" in text
    wait_for_run(first.pk)  # its finish, after its days, must not run into the teardown
