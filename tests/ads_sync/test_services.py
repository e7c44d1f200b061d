from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import threading
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from ads_sync import locks, selectors, services
from ads_sync.integrations import google_ads
from ads_sync.models import AdsAccount, CampaignDayMetric, SyncDay, SyncRun
from ads_sync.sandbox import data
from tests.database import lock_holder, other_connection
from tests.files import umask
from tests.processes import open_files

from .factories import campaign_day
from .helpers import csv_lines, csv_rows, expected_rows

pytestmark = pytest.mark.django_db

CUSTOMER = "1111111111"
DAY = dt.date(2025, 1, 10)


def test_replacing_a_day_upserts_rows_and_drops_campaigns_no_longer_returned() -> None:
    services.day_rows_replace(
        customer_id=CUSTOMER,
        day=DAY,
        rows=[campaign_day(campaign_id=1), campaign_day(campaign_id=2)],
        currency_code="EUR",
    )
    services.day_rows_replace(
        customer_id=CUSTOMER,
        day=DAY,
        rows=[campaign_day(campaign_id=1, clicks=99)],
        currency_code="EUR",
    )
    rows = list(CampaignDayMetric.objects.filter(customer_id=CUSTOMER, date=DAY))
    assert [(r.campaign_id, r.clicks) for r in rows] == [(1, 99)]


def test_two_different_rows_for_one_campaign_are_refused_showing_both() -> None:
    """Which of the two is right is for a person to judge: the error shows both."""
    services.day_rows_replace(
        customer_id=CUSTOMER, day=DAY, rows=[campaign_day(campaign_id=3)], currency_code="EUR"
    )
    first, then = campaign_day(campaign_id=3, clicks=4), campaign_day(campaign_id=3, clicks=5)
    with pytest.raises(google_ads.PermanentAdsError) as refused:
        services.day_rows_replace(
            customer_id=CUSTOMER, day=DAY, rows=[first, then], currency_code="EUR"
        )
    message = str(refused.value)
    assert "'Campaign 3': impressions 100, clicks 4, cost_micros 1234567" in message
    assert "'Campaign 3': impressions 100, clicks 5, cost_micros 1234567" in message
    stored = CampaignDayMetric.objects.get(customer_id=CUSTOMER, date=DAY)
    assert stored.clicks == 10


def test_a_row_of_another_date_is_refused_and_the_days_rows_kept() -> None:
    """It was stored under the date asked for, its figures standing for a day they are not."""
    services.day_rows_replace(
        customer_id=CUSTOMER, day=DAY, rows=[campaign_day(campaign_id=3)], currency_code="EUR"
    )
    other = campaign_day(campaign_id=4, day=DAY + dt.timedelta(days=1), clicks=7)
    with pytest.raises(google_ads.PermanentAdsError, match=r"a row of 2025-01-11 \(campaign 4\)"):
        services.day_rows_replace(
            customer_id=CUSTOMER,
            day=DAY,
            rows=[campaign_day(campaign_id=3, clicks=5), other],
            currency_code="EUR",
        )
    stored = CampaignDayMetric.objects.get(customer_id=CUSTOMER, date=DAY)
    assert (stored.campaign_id, stored.clicks) == (3, 10)


def _second_writer_written_or_waiting(
    first: threading.Thread, second: threading.Thread, go_on: threading.Event
) -> None:
    """Start `second`, then let `first` (paused after its read until `go_on`) rename its file
    once `second` has finished (no turns taken) or a session of the test's database waits for
    an advisory lock (the turn `first` holds); both end. Only pg_locks tells that wait, so it is
    looked at until one or the other holds; no pause decides the order."""
    second.start()
    with other_connection() as observer:
        deadline = time.monotonic() + 30
        while second.is_alive() and observer.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone() == (0,):
            assert time.monotonic() < deadline, "the second writer neither finished nor waited"
            second.join(0.02)
    go_on.set()
    first.join(30)
    second.join(30)
    assert not first.is_alive()
    assert not second.is_alive()


@pytest.mark.django_db(transaction=True)
def test_two_totals_writers_of_one_folder_leave_the_newer_totals(
    tmp_path: Path, monkeypatch
) -> None:
    """Two runs finishing at once: the first read the database, the second committed a day,
    read and renamed its file, then the first renamed its older one over it, and the file
    lacked that day until the next run finished. Writers of one folder now take turns."""
    services.day_rows_replace(
        customer_id=CUSTOMER, day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    first_read, go_on = threading.Event(), threading.Event()
    original = services.combined_csv_lines

    def lines(writer: Any, **kwargs: Any) -> int:
        count = original(writer, **kwargs)
        if threading.current_thread() is first:
            first_read.set()
            assert go_on.wait(30)
        return count

    monkeypatch.setattr(services, "combined_csv_lines", lines)

    def write() -> None:
        try:
            services.totals_csv_write(output_dir=tmp_path)
        finally:
            connection.close()

    first = threading.Thread(target=write, daemon=True)
    first.start()
    assert first_read.wait(30)
    later = DAY + dt.timedelta(days=1)
    services.day_rows_replace(
        customer_id=CUSTOMER,
        day=later,
        rows=[campaign_day(campaign_id=1, day=later)],
        currency_code="EUR",
    )
    _second_writer_written_or_waiting(first, threading.Thread(target=write, daemon=True), go_on)
    totals = csv_lines(selectors.totals_csv_path(output_dir=tmp_path))
    dates = [line["date"] for line in totals]
    assert dates == [DAY.isoformat(), later.isoformat()]


@pytest.mark.django_db(transaction=True)
def test_a_days_file_rewritten_while_a_later_plan_fetches_the_day_keeps_the_fetched_rows(
    ads_sandbox, tmp_path: Path
) -> None:
    """A plan rewrites the files of done days after its planning lock is released, and a later
    plan may fetch one of those days meanwhile. The rewrite read the older rows, the fetch stored
    the newer ones and wrote its file, then the rewrite renamed its older file over it, and the
    file kept rows the database no longer held. Writers of one day file now take turns."""
    customer = ads_sandbox.customers[0]
    day = data.first_full_day(customer, DAY)
    older = campaign_day(customer_id=customer, day=day, campaign_id=1, impressions=1, clicks=1)
    services.day_rows_replace(customer_id=customer, day=day, rows=[older], currency_code="EUR")
    SyncDay.objects.create(
        customer_id=customer, date=day, state=SyncDay.State.DONE, fetched_at=timezone.now()
    )
    rewriting = services.run_plan(
        trigger="backfill", customer_ids=[customer], start=day, end=day, output_dir=tmp_path
    )
    assert rewriting is not None
    assert (rewriting.days, rewriting.csv_missing) == ([], ((customer, day),))
    read, go_on = threading.Event(), threading.Event()

    def paused_after_the_read(execute: Any, sql: str, *args: Any) -> Any:
        result = execute(sql, *args)
        if "ads_sync_campaigndaymetric" in sql:
            read.set()
            assert go_on.wait(30)
        return result

    def rewrite() -> None:
        try:
            with connection.execute_wrapper(paused_after_the_read):
                services.plan_csv_restore(plan=rewriting)
        finally:
            connection.close()

    def fetch() -> None:
        try:
            services.day_sync(customer_id=customer, day=day, run_id=fetching.run.pk)
        finally:
            connection.close()

    rewriter = threading.Thread(target=rewrite, daemon=True)
    rewriter.start()
    assert read.wait(30)
    fetching = services.run_plan(
        trigger="backfill",
        customer_ids=[customer],
        start=day,
        end=day,
        force=True,
        output_dir=tmp_path,
    )
    assert fetching is not None
    assert fetching.days == [(customer, day)]
    _second_writer_written_or_waiting(rewriter, threading.Thread(target=fetch, daemon=True), go_on)
    assert SyncDay.objects.get().state == SyncDay.State.DONE
    # The sandbox serves other rows than the older ones the rewrite read.
    assert expected_rows(customer, day) != [(1, "Campaign 1", 1, 1, 1_234_567, 1.5)]
    assert csv_rows(tmp_path, customer, day) == expected_rows(customer, day)


def test_a_day_with_more_campaigns_than_one_statement_can_bind_is_stored() -> None:
    """Server-side binding allows 65,535 parameters a statement; 10,000 campaigns (Google Ads'
    limit per account) x 10 columns is past that one value at a time. Django 5.2 sends the
    upsert as one array per column (UNNEST); this keeps it that way for the largest account."""
    rows = [campaign_day(campaign_id=n) for n in range(1, 10_001)]
    assert services.day_rows_replace(
        customer_id=CUSTOMER, day=DAY, rows=rows, currency_code="EUR"
    ) == len(rows)
    assert CampaignDayMetric.objects.filter(customer_id=CUSTOMER, date=DAY).count() == len(rows)


def test_replacing_a_day_leaves_other_days_and_accounts_alone() -> None:
    services.day_rows_replace(
        customer_id=CUSTOMER, day=DAY, rows=[campaign_day()], currency_code="EUR"
    )
    services.day_rows_replace(
        customer_id="2222222222", day=DAY, rows=[campaign_day()], currency_code="EUR"
    )
    services.day_rows_replace(
        customer_id=CUSTOMER, day=DAY + dt.timedelta(days=1), rows=[], currency_code="EUR"
    )
    assert CampaignDayMetric.objects.count() == 2


def test_the_day_csv_has_a_header_decimal_money_and_the_micros(tmp_path: Path) -> None:
    services.day_rows_replace(
        customer_id=CUSTOMER,
        day=DAY,
        rows=[campaign_day(cost_micros=1_234_567, conversions=2.25)],
        currency_code="EUR",
    )
    path = services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=tmp_path)
    assert path == tmp_path / CUSTOMER / "2025-01-10.csv"
    [line] = csv_lines(path)
    assert line["cost"] == "1.234567"
    assert line["cost_micros"] == "1234567"
    assert line["currency_code"] == "EUR"
    assert Decimal(line["conversions"]) == Decimal("2.25")
    assert list(tmp_path.joinpath(CUSTOMER).glob(".*")) == []


def test_a_day_csv_lists_its_campaigns_by_id_whatever_order_the_api_sent_them_in(
    tmp_path: Path,
) -> None:
    """Rows come back from PostgreSQL in the order they were stored (or updated) unless asked
    otherwise: a day fetched again would list its campaigns in a new order, and a diff of the
    file showed every line changed."""
    rows = [campaign_day(campaign_id=2), campaign_day(campaign_id=1)]
    services.day_rows_replace(customer_id=CUSTOMER, day=DAY, rows=rows, currency_code="EUR")
    path = services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=tmp_path)
    assert [line["campaign_id"] for line in csv_lines(path)] == ["1", "2"]


def test_a_day_csv_is_written_into_an_output_folder_removed_since_the_planning(
    tmp_path: Path,
) -> None:
    """The run's folder is made when it is planned; one deleted since (tidying by hand) is made
    again by the day that writes into it, rather than failing every day left."""
    output_dir = tmp_path / "removed"
    path = services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=output_dir)
    assert path == output_dir / CUSTOMER / "2025-01-10.csv"
    assert path.read_text().splitlines() == [",".join(services.DAY_CSV_HEADER)]


def test_an_empty_day_writes_a_header_only_file(tmp_path: Path) -> None:
    path = services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=tmp_path)
    assert path.read_text().splitlines() == [",".join(services.DAY_CSV_HEADER)]


def test_rewriting_a_day_replaces_the_file_rather_than_appending(tmp_path: Path) -> None:
    rows = [campaign_day(campaign_id=1), campaign_day(campaign_id=2)]
    services.day_rows_replace(customer_id=CUSTOMER, day=DAY, rows=rows, currency_code="EUR")
    services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=tmp_path)
    path = services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=tmp_path)
    assert len(csv_lines(path)) == 2


def test_the_totals_file_has_one_line_per_customer_and_date(tmp_path: Path) -> None:
    for customer_id in (CUSTOMER, "2222222222"):
        services.day_rows_replace(
            customer_id=customer_id,
            day=DAY,
            rows=[
                campaign_day(campaign_id=1, clicks=3, cost_micros=500_000),
                campaign_day(campaign_id=2, clicks=4, cost_micros=250_000),
            ],
            currency_code="USD",
        )
    lines = csv_lines(services.totals_csv_write(output_dir=tmp_path))
    assert [(x["customer_id"], x["clicks"], x["cost"]) for x in lines] == [
        (CUSTOMER, "7", "0.750000"),
        ("2222222222", "7", "0.750000"),
    ]


def test_a_day_fetched_with_no_campaign_activity_totals_zero_and_one_never_fetched_is_absent(
    tmp_path: Path,
) -> None:
    """Both had no line: zero spend looked the same as a day never synced."""
    other = "2222222222"
    for customer_id in (CUSTOMER, other):
        AdsAccount.objects.create(customer_id=customer_id, time_zone="UTC", currency_code="EUR")
    quiet, busy, never = DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    fetched = timezone.now()
    for customer_id in (CUSTOMER, other):
        services.day_rows_replace(
            customer_id=customer_id, day=busy, rows=[campaign_day(day=busy)], currency_code="EUR"
        )
        # A quiet day being fetched again (the lookback) was fetched before: it keeps its line.
        for day, state, at in ((quiet, "pending", fetched), (busy, "done", fetched)):
            SyncDay.objects.create(customer_id=customer_id, date=day, state=state, fetched_at=at)
        SyncDay.objects.create(customer_id=customer_id, date=never, state="failed")
    lines = csv_lines(services.totals_csv_write(output_dir=tmp_path))
    assert [(line["customer_id"], line["date"]) for line in lines] == [
        (CUSTOMER, str(quiet)),
        (CUSTOMER, str(busy)),
        (other, str(quiet)),
        (other, str(busy)),
    ]
    assert lines[0] == {
        "customer_id": CUSTOMER,
        "date": str(quiet),
        "impressions": "0",
        "clicks": "0",
        "cost": "0.000000",
        "cost_micros": "0",
        "currency_code": "EUR",
        "conversions": "0.000000",  # as a sum of the rows' six places
    }
    by_day = tmp_path / "by_day.csv"
    assert services.combined_csv_write(out=by_day, start=quiet, end=quiet, by="day") == 2


def test_a_quiet_day_totals_zero_even_when_another_account_had_activity_that_day(
    tmp_path: Path,
) -> None:
    """A day counts as quiet by its own account's rows, not by any account's rows that date."""
    other = "2222222222"
    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    services.day_rows_replace(
        customer_id=other, day=DAY, rows=[campaign_day()], currency_code="EUR"
    )
    for customer_id in (CUSTOMER, other):
        SyncDay.objects.create(
            customer_id=customer_id, date=DAY, state="done", fetched_at=timezone.now()
        )
    lines = csv_lines(services.totals_csv_write(output_dir=tmp_path))
    assert [(line["customer_id"], line["clicks"]) for line in lines] == [
        (CUSTOMER, "0"),
        (other, "10"),
    ]


def test_the_combined_export_by_campaign_respects_the_range(tmp_path: Path) -> None:
    for offset in range(3):
        day = DAY + dt.timedelta(days=offset)
        services.day_rows_replace(
            customer_id=CUSTOMER, day=day, rows=[campaign_day(day=day)], currency_code="EUR"
        )
    out = tmp_path / "all.csv"
    count = services.combined_csv_write(out=out, start=DAY, end=DAY + dt.timedelta(days=1))
    assert count == 2
    assert [line["date"] for line in csv_lines(out)] == ["2025-01-10", "2025-01-11"]


def test_a_combined_export_of_a_range_without_rows_is_its_header_and_counts_no_line(
    tmp_path: Path,
) -> None:
    services.day_rows_replace(
        customer_id=CUSTOMER, day=DAY, rows=[campaign_day()], currency_code="EUR"
    )
    out = tmp_path / "none.csv"
    later = DAY + dt.timedelta(days=5)
    assert services.combined_csv_write(out=out, start=later, end=later) == 0
    assert out.read_text().splitlines() == [",".join(services.DAY_CSV_HEADER)]


def _run_with_pending(n: int, tmp_path: Path, customer_id: str = CUSTOMER) -> SyncRun:
    run = SyncRun.objects.create(trigger="backfill", output_dir=str(tmp_path), planned=n)
    for offset in range(n):
        SyncDay.objects.create(
            customer_id=customer_id, date=DAY + dt.timedelta(days=offset), run=run
        )
    return run


def test_a_daily_quota_stop_defers_every_pending_day_of_the_run(tmp_path: Path) -> None:
    run = _run_with_pending(4, tmp_path)
    deferred = services.run_defer_pending(run_id=run.pk, reason="daily quota")
    assert deferred == 4
    assert services.run_finish_if_settled(run_id=run.pk) is True
    run.refresh_from_db()
    assert (run.deferred, run.finished_at is not None) == (4, True)
    assert selectors.totals_csv_path(output_dir=tmp_path).exists()


def test_a_run_whose_tasks_could_not_be_sent_fails_and_counts_its_pending_days(
    tmp_path: Path,
) -> None:
    run = _run_with_pending(3, tmp_path)
    assert services.run_fail_pending(run_id=run.pk, reason="fan-out failed") == 3
    run.refresh_from_db()
    assert (run.failed, run.finished_at is not None) == (3, True)
    assert set(SyncDay.objects.values_list("state", "last_error")) == {
        (SyncDay.State.FAILED, "fan-out failed")
    }


def test_a_daily_quota_stop_leaves_the_pending_days_of_other_runs_alone(tmp_path: Path) -> None:
    """Only the run whose day met the quota stops: another run's days (a backfill's, of other
    dates) keep waiting for their tasks, and its counts stay its own."""
    stopped = _run_with_pending(2, tmp_path)
    other = _run(tmp_path)
    SyncDay.objects.create(customer_id="2222222222", date=DAY, run=other)

    assert services.run_defer_pending(run_id=stopped.pk, reason="daily quota") == 2

    entry = SyncDay.objects.get(run=other)
    assert (entry.state, entry.last_error) == (SyncDay.State.PENDING, "")
    other.refresh_from_db()
    assert (other.deferred, other.failed) == (0, 0)


def test_a_daily_quota_met_by_a_day_defers_it_and_the_runs_pending_days_saying_why(
    ads_sandbox, tmp_path: Path
) -> None:
    """The quota is the account's for the whole day: the day is not failed (no backoff), the
    days not started yet are not attempted, each says why in the admin, and the run closes."""
    customer = ads_sandbox.customers[0]
    AdsAccount.objects.create(customer_id=customer, time_zone="UTC", currency_code="EUR")
    run = _run_with_pending(3, tmp_path, customer_id=customer)
    ads_sandbox.configure(fail_first={"daily_quota": 1})
    outcome = services.day_sync(customer_id=customer, day=DAY, run_id=run.pk)

    assert len(ads_sandbox.calls()) == 1
    assert outcome.state == SyncDay.State.DEFERRED
    assert outcome.error.startswith("daily quota exhausted: ")
    assert set(SyncDay.objects.values_list("state", "last_error", "failures")) == {
        (SyncDay.State.DEFERRED, outcome.error, 0)
    }
    run.refresh_from_db()
    assert (run.deferred, run.failed) == (3, 0)
    assert run.finished_at is not None


def test_a_run_closes_exactly_once(tmp_path: Path) -> None:
    run = _run_with_pending(0, tmp_path)
    assert services.run_finish_if_settled(run_id=run.pk) is True
    assert services.run_finish_if_settled(run_id=run.pk) is False


@pytest.mark.django_db(transaction=True)
def test_a_run_is_seen_finished_only_with_why_its_totals_file_failed(
    tmp_path: Path, monkeypatch
) -> None:
    """backfill_ads reads it once it sees its run finished: written after the finish, it came
    too late for it whenever the file took a moment to fail."""
    run = _run_with_pending(0, tmp_path)
    seen: list[object] = []

    def failing_write(*, output_dir: str | Path) -> Path:
        with other_connection() as other:
            seen.append(
                other.execute(
                    "SELECT finished_at FROM ads_sync_syncrun WHERE id = %s", [run.pk]
                ).fetchone()[0]
            )
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(services, "totals_csv_write", failing_write)
    assert services.run_finish_if_settled(run_id=run.pk) is True

    assert seen == [None]  # not finished for anyone else while the file was being written
    run.refresh_from_db()
    assert run.finished_at is not None
    assert run.totals_error == "[Errno 28] No space left on device"


@pytest.mark.django_db(transaction=True)
def test_a_run_stopped_while_writing_its_totals_file_is_finished_all_the_same(
    tmp_path: Path, monkeypatch
) -> None:
    """Its claim is rolled back with the transaction, and no other caller would claim it."""
    run = _run_with_pending(0, tmp_path)

    def stopped(*, output_dir: str | Path) -> Path:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, "totals_csv_write", stopped)
    with pytest.raises(SoftTimeLimitExceeded):
        services.run_finish_if_settled(run_id=run.pk)

    run.refresh_from_db()
    assert run.finished_at is not None


def test_finishing_a_run_leaves_another_settled_run_to_its_own_finisher(tmp_path: Path) -> None:
    """Another run whose last day a worker has just settled, before that worker's claim: it is
    that worker's to finish and to write its folder's totals file for; claimed here too, that
    worker found it finished and wrote no totals file in its folder."""
    run = _run_with_pending(0, tmp_path)
    other = SyncRun.objects.create(
        trigger="backfill", output_dir=str(tmp_path / "other"), planned=1, done=1
    )
    assert services.run_finish_if_settled(run_id=run.pk) is True
    other.refresh_from_db()
    assert (other.finished_at, other.elapsed_s) == (None, None)
    assert services.run_finish_if_settled(run_id=other.pk) is True
    assert selectors.totals_csv_path(output_dir=tmp_path / "other").exists()


def test_a_totals_file_that_cannot_be_written_is_said_by_its_run_only(
    tmp_path: Path, monkeypatch
) -> None:
    """backfill_ads exits 73 on a run's totals_error, and the admin shows it: another run,
    whose own file was written, says nothing of this one's."""
    earlier = SyncRun.objects.create(
        trigger="backfill", output_dir=str(tmp_path), finished_at=timezone.now()
    )
    run = _run_with_pending(0, tmp_path)

    def full_disk(*, output_dir: str | Path) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(services, "totals_csv_write", full_disk)
    assert services.run_finish_if_settled(run_id=run.pk) is True
    run.refresh_from_db()
    earlier.refresh_from_db()
    assert (run.totals_error, earlier.totals_error) == ("[Errno 28] No space left on device", "")


def test_a_totals_file_rebuilt_clears_the_error_of_its_run_only(tmp_path: Path) -> None:
    """Another run, of another folder, still says its own file could not be written."""
    other = SyncRun.objects.create(
        trigger="backfill", output_dir=str(tmp_path / "other"), totals_error="read-only"
    )
    run = SyncRun.objects.create(
        trigger="backfill", output_dir=str(tmp_path), totals_error="No space left on device"
    )
    services.run_totals_rebuild(run=run)
    assert selectors.totals_csv_path(output_dir=tmp_path).exists()
    run.refresh_from_db()
    other.refresh_from_db()
    assert (run.totals_error, other.totals_error) == ("", "read-only")


def test_a_run_with_unsettled_days_stays_open(tmp_path: Path) -> None:
    run = _run_with_pending(2, tmp_path)
    assert services.run_finish_if_settled(run_id=run.pk) is False


def test_a_day_this_run_already_settled_is_not_synced_again(tmp_path: Path) -> None:
    run = _run_with_pending(1, tmp_path)
    SyncDay.objects.filter(run=run).update(state=SyncDay.State.DONE)
    # A redelivered task: the ledger says done for this run, so no fetch is attempted.
    outcome = services.day_sync(customer_id=CUSTOMER, day=DAY, run_id=run.pk)
    assert outcome.state == "skipped"
    assert SyncDay.objects.get(customer_id=CUSTOMER, date=DAY).attempts == 0


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_a_new_csv_file_has_the_mode_the_umask_gives(tmp_path: Path, mask, mode) -> None:
    """It was 0644 whatever the umask: a deployment that keeps its files from other users (027,
    077) had every day's figures readable by all."""
    with umask(mask):
        path = services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=tmp_path)
    assert path.stat().st_mode & 0o777 == mode


def test_a_csv_file_written_again_keeps_its_mode(tmp_path: Path) -> None:
    path = services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=tmp_path)
    path.chmod(0o640)
    with umask(0o022):
        services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=tmp_path)
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_csv_write_whose_temporary_name_another_write_holds_takes_another_name(
    tmp_path: Path, monkeypatch
) -> None:
    """48 random bits make a clash all but never happen; one that does is neither the day's
    failure nor the other write's file taken over."""
    names = iter(["0a1b2c3d4e5f", "5f4e3d2c1b0a"])
    monkeypatch.setattr(services, "secrets", SimpleNamespace(token_hex=lambda nbytes: next(names)))
    other = tmp_path / CUSTOMER / ".2025-01-10.csv.0a1b2c3d4e5f.tmp"
    other.parent.mkdir()
    other.write_text("another write's")

    path = services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=tmp_path)
    assert path.read_text().splitlines() == [",".join(services.DAY_CSV_HEADER)]
    assert other.read_text() == "another write's"


def _run(tmp_path: Path, planned: int = 1) -> SyncRun:
    return SyncRun.objects.create(
        trigger=SyncRun.Trigger.BACKFILL, output_dir=str(tmp_path), planned=planned
    )


def _pending_day(tmp_path: Path) -> SyncRun:
    """A run of one pending day, DAY of the account CUSTOMER."""
    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    run = _run(tmp_path)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=run, state=SyncDay.State.PENDING)
    return run


def test_a_task_of_an_older_run_does_not_take_over_a_day_planned_by_a_newer_one(
    tmp_path: Path,
) -> None:
    old, new = _run(tmp_path), _run(tmp_path)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=new, state=SyncDay.State.RUNNING)
    outcome = services.day_sync(customer_id=CUSTOMER, day=DAY, run_id=old.pk)
    assert outcome.state == "skipped"
    entry = SyncDay.objects.get(customer_id=CUSTOMER, date=DAY)
    assert (entry.run_id, entry.state) == (new.pk, SyncDay.State.RUNNING)


def test_a_task_of_a_run_that_no_longer_exists_is_skipped_saying_why(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run_id = run.pk
    run.delete()
    outcome = services.day_sync(customer_id=CUSTOMER, day=DAY, run_id=run_id)
    assert outcome == services.DayOutcome(state="skipped", error=f"run {run_id} no longer exists")
    assert not SyncDay.objects.exists()


def test_a_day_its_task_starts_is_in_flight_again_and_not_taken_over_during_its_fetch(
    tmp_path: Path, monkeypatch
) -> None:
    """A day planned long ago (its task queued behind a long backfill) moves when its task
    starts it: left at its planning's time, it looked stale while it was being fetched, and a
    plan then took it over, to fetch it again and count it in both runs."""
    run = _pending_day(tmp_path)
    queued = timezone.now() - selectors.IN_FLIGHT_STALE_AFTER - dt.timedelta(minutes=1)
    SyncDay.objects.filter(run=run).update(updated_at=queued)
    taken_over: list[tuple[list[tuple[str, dt.date]], set[int]]] = []

    def fetch_while_a_plan_runs(*args: object, **kwargs: object) -> list[google_ads.CampaignDay]:
        taken_over.append(services._take_over(planned=[(CUSTOMER, DAY)]))
        return []

    monkeypatch.setattr(services.google_ads, "fetch_data", fetch_while_a_plan_runs)
    services.day_sync(customer_id=CUSTOMER, day=DAY, run_id=run.pk)
    assert taken_over == [([], set())]
    run.refresh_from_db()
    assert run.deferred == 0


def test_a_days_file_is_written_in_its_own_runs_folder(
    ads_sandbox, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    """A later run writes to another folder (a backfill planned while this day's task was
    queued): the day's file goes to the folder of the run that synced it, where that run's
    totals file is built."""
    customer, day, run = _sandbox_day(ads_sandbox, tmp_path / "this")
    _run(tmp_path / "later")

    with django_capture_on_commit_callbacks(execute=True):
        services.day_sync(customer_id=customer, day=day, run_id=run.pk)

    assert SyncDay.objects.get().state == SyncDay.State.DONE
    day_file = selectors.day_csv_path(output_dir=tmp_path / "this", customer_id=customer, day=day)
    campaigns = sorted(row.campaign_id for row in data.rows_for(customer, day))
    assert [int(line["campaign_id"]) for line in csv_lines(day_file)] == campaigns
    assert not (tmp_path / "later").exists()


@pytest.mark.parametrize(
    ("cause", "said"),
    [
        # The account answered this time: the folder's failure is not the account's.
        ("file not written", "CSV file not written: OSError"),
        # Tried by a backfill while the installation's refresh token was missing.
        ("no refresh token", "GOOGLE_ADS_REFRESH_TOKEN"),
    ],
)
def test_a_day_failed_for_a_cause_not_its_accounts_ends_its_earlier_backoff(
    ads_sandbox,
    settings,
    tmp_path: Path,
    monkeypatch,
    django_capture_on_commit_callbacks,
    cause,
    said,
) -> None:
    """A day that had failed for days and waited out its account's backoff is tried at the
    next detection once the cause is mended, rather than left to the old backoff; its failures
    are kept for the account's next one."""
    customer = ads_sandbox.customers[0]
    AdsAccount.objects.create(customer_id=customer, time_zone="UTC", currency_code="EUR")
    run = _run(tmp_path)
    SyncDay.objects.create(
        customer_id=customer,
        date=DAY,
        run=run,
        state=SyncDay.State.PENDING,
        failures=3,
        retry_after=timezone.now() + dt.timedelta(days=4),
    )
    if cause == "file not written":

        def full_disk(**kwargs: object) -> Path:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(services, "day_csv_write", full_disk)
    else:
        settings.GOOGLE_ADS_REFRESH_TOKEN = ""
    with django_capture_on_commit_callbacks(execute=True):
        services.day_sync(customer_id=customer, day=DAY, run_id=run.pk)

    entry = SyncDay.objects.get()
    assert (entry.state, entry.failures, entry.retry_after) == (SyncDay.State.FAILED, 3, None)
    assert said in entry.last_error


def test_an_interrupt_during_the_fetch_is_raised_and_leaves_the_day_to_its_task(
    tmp_path: Path, monkeypatch
) -> None:
    """A worker stopped in the middle of a fetch (Ctrl-C): not the account's failure, counted
    toward the day's backoff; the day stays running for its task to settle or redeliver."""
    run = _pending_day(tmp_path)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(services.google_ads, "fetch_data", interrupted)
    with pytest.raises(KeyboardInterrupt):
        services.day_sync(customer_id=CUSTOMER, day=DAY, run_id=run.pk)
    entry = SyncDay.objects.get()
    assert (entry.state, entry.failures, entry.last_error) == (SyncDay.State.RUNNING, 0, "")


def test_a_database_error_writing_the_days_file_is_raised_not_recorded_as_a_file_not_written(
    tmp_path: Path, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    run = _pending_day(tmp_path)

    def database_gone(**kwargs: object) -> None:
        raise OperationalError("the connection is closed")

    monkeypatch.setattr(services.google_ads, "fetch_data", lambda *args, **kwargs: [campaign_day()])
    monkeypatch.setattr(services, "day_csv_write", database_gone)
    with pytest.raises(OperationalError), django_capture_on_commit_callbacks(execute=True):
        services.day_sync(customer_id=CUSTOMER, day=DAY, run_id=run.pk)
    entry = SyncDay.objects.get()
    assert (entry.state, entry.last_error) == (SyncDay.State.RUNNING, "")


@pytest.mark.django_db(transaction=True)  # the day settles after its commit
def test_a_day_no_run_planned_is_skipped_saying_how_to_plan_it(
    ads_sandbox, tmp_path: Path, logged
) -> None:
    """sync_day run by hand (the admin's "run task", `celery call`) for a day no plan holds:
    synced under the run it names, it was a day that run never planned. Its count broke the
    run's CHECK after the fetch, and the day was left running for good."""
    customer = ads_sandbox.customers[0]
    run = _run(tmp_path)
    SyncDay.objects.create(customer_id=customer, date=DAY, run=run, state=SyncDay.State.PENDING)
    assert services.day_sync(customer_id=customer, day=DAY, run_id=run.pk).state == "done"
    other = DAY - dt.timedelta(days=1)

    outcome = services.day_sync(customer_id=customer, day=other, run_id=run.pk)

    assert (outcome.state, outcome.error) == ("skipped", "no run planned this day")
    assert not SyncDay.objects.filter(date=other).exists()
    assert not CampaignDayMetric.objects.filter(date=other).exists()
    run.refresh_from_db()
    assert (run.planned, run.done, run.failed) == (1, 1, 0)
    assert f"backfill_ads --customer {customer} --start {other} --end {other}" in logged.getvalue()


@pytest.mark.django_db(transaction=True)  # the day settles after its commit
def test_a_planned_day_whose_entry_was_deleted_is_synced_and_its_run_finishes(
    ads_sandbox, tmp_path: Path
) -> None:
    """Deleted by hand (nothing in the project deletes an entry): skipped, its run would never
    finish, and a backfill_ads waiting on it would wait for ever."""
    customer = ads_sandbox.customers[0]
    run = _run(tmp_path, planned=2)
    other = DAY - dt.timedelta(days=1)
    for day in (DAY, other):
        SyncDay.objects.create(customer_id=customer, date=day, run=run, state=SyncDay.State.PENDING)
    SyncDay.objects.filter(date=other).delete()
    assert services.day_sync(customer_id=customer, day=DAY, run_id=run.pk).state == "done"

    outcome = services.day_sync(customer_id=customer, day=other, run_id=run.pk)

    assert outcome.state == "done"
    run.refresh_from_db()
    assert (run.done, run.finished_at is not None) == (2, True)
    assert CampaignDayMetric.objects.filter(date=other).exists()


def test_a_failure_before_the_day_started_still_settles_the_run(tmp_path: Path) -> None:
    run = _run(tmp_path)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=run, state=SyncDay.State.PENDING)
    assert services.day_fail(customer_id=CUSTOMER, day=DAY, run_id=run.pk, error="boom")
    run.refresh_from_db()
    assert run.failed == 1
    assert run.finished_at is not None


def test_a_failure_of_a_day_without_a_ledger_entry_is_not_recorded(tmp_path: Path) -> None:
    """sync_day run by hand (the admin's "run task") for a day no plan holds, or whose entry
    was deleted: there is nothing to settle."""
    run = _run(tmp_path)
    assert services.day_fail(customer_id=CUSTOMER, day=DAY, run_id=run.pk, error="boom") is False
    run.refresh_from_db()
    assert (run.failed, run.finished_at) == (0, None)


def test_a_crash_of_an_older_runs_task_leaves_a_day_a_newer_run_planned_alone(
    tmp_path: Path,
) -> None:
    old, new = _run(tmp_path), _run(tmp_path)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=new, state=SyncDay.State.PENDING)
    assert not services.day_fail(customer_id=CUSTOMER, day=DAY, run_id=old.pk, error="boom")
    entry = SyncDay.objects.get()
    assert (entry.run_id, entry.state) == (new.pk, SyncDay.State.PENDING)
    old.refresh_from_db()
    assert old.failed == 0


def test_a_crash_recorded_for_a_day_backs_off_from_its_runs_planning(
    settings, tmp_path: Path
) -> None:
    settings.ADS_SYNC_FAILED_DAILY_RETRIES = 0
    run = _run(tmp_path)
    planned_at = timezone.now() - dt.timedelta(hours=5)
    SyncRun.objects.filter(pk=run.pk).update(started_at=planned_at)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=run, state=SyncDay.State.RUNNING)
    assert services.day_fail(customer_id=CUSTOMER, day=DAY, run_id=run.pk, error="boom")
    entry = SyncDay.objects.get()
    assert (entry.failures, entry.retry_after) == (1, planned_at + dt.timedelta(days=2, hours=-1))


def test_a_crash_recorded_for_a_day_backs_off_from_its_own_runs_planning_not_a_later_ones(
    settings, tmp_path: Path
) -> None:
    """A later run (a backfill planned while the day's task was running) is not the one whose
    planning the backoff counts from."""
    settings.ADS_SYNC_FAILED_DAILY_RETRIES = 0
    run = _run(tmp_path)
    planned_at = timezone.now() - dt.timedelta(hours=5)
    SyncRun.objects.filter(pk=run.pk).update(started_at=planned_at)
    _run(tmp_path)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=run, state=SyncDay.State.RUNNING)
    assert services.day_fail(customer_id=CUSTOMER, day=DAY, run_id=run.pk, error="boom")
    entry = SyncDay.objects.get()
    assert entry.retry_after == planned_at + dt.timedelta(days=2, hours=-1)


def test_a_crash_recorded_for_a_run_that_no_longer_exists_changes_nothing(
    settings, tmp_path: Path
) -> None:
    settings.ADS_SYNC_FAILED_DAILY_RETRIES = 0
    run = _run(tmp_path)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=run, state=SyncDay.State.RUNNING)
    run_id = run.pk
    run.delete()  # in the admin, say, while its task was running
    assert services.day_fail(customer_id=CUSTOMER, day=DAY, run_id=run_id, error="boom") is False
    entry = SyncDay.objects.get()
    assert (entry.state, entry.failures, entry.run_id) == (SyncDay.State.RUNNING, 0, None)


def test_a_crash_recorded_for_one_accounts_day_leaves_another_accounts_same_date_alone(
    tmp_path: Path,
) -> None:
    """Both accounts' days of one date in one run: the crash is the one account's."""
    run = _run(tmp_path, planned=2)
    for customer_id in ("2222222222", CUSTOMER):
        SyncDay.objects.create(
            customer_id=customer_id, date=DAY, run=run, state=SyncDay.State.RUNNING
        )
    assert services.day_fail(customer_id=CUSTOMER, day=DAY, run_id=run.pk, error="boom")
    states = dict(SyncDay.objects.values_list("customer_id", "state"))
    assert states == {"2222222222": SyncDay.State.RUNNING, CUSTOMER: SyncDay.State.FAILED}


def test_a_crash_recorded_for_a_day_its_run_already_settled_changes_nothing(
    tmp_path: Path,
) -> None:
    """The day was done, then its task failed (the run's closing lost the database, say) and
    tasks.sync_day recorded the crash: the day stays done, counted once."""
    run = _run(tmp_path)
    SyncRun.objects.filter(pk=run.pk).update(done=1, rows=2)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=run, state=SyncDay.State.DONE)
    assert services.day_fail(customer_id=CUSTOMER, day=DAY, run_id=run.pk, error="boom") is False
    entry = SyncDay.objects.get()
    assert (entry.state, entry.last_error, entry.failures) == (SyncDay.State.DONE, "", 0)
    run.refresh_from_db()
    assert (run.done, run.failed) == (1, 0)


def test_a_database_error_storing_the_rows_is_raised_not_recorded_as_the_days_failure(
    tmp_path: Path, monkeypatch
) -> None:
    """tasks.sync_day records it as a crash or tries the day again: it is not the account's
    failure, which would count toward the day's backoff."""
    run = _pending_day(tmp_path)
    monkeypatch.setattr(services.google_ads, "fetch_data", lambda *args, **kwargs: [campaign_day()])
    with lock_holder() as holder:
        holder.execute("LOCK TABLE ads_sync_campaigndaymetric IN SHARE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        with pytest.raises(OperationalError, match="lock timeout"):
            services.day_sync(customer_id=CUSTOMER, day=DAY, run_id=run.pk)
    entry = SyncDay.objects.get()
    assert (entry.state, entry.failures, entry.last_error) == (SyncDay.State.RUNNING, 0, "")


def test_a_failure_is_stored_without_credentials_and_cut(tmp_path: Path, monkeypatch) -> None:
    run = _run(tmp_path, planned=2)
    other = DAY - dt.timedelta(days=1)
    for day in (DAY, other):
        SyncDay.objects.create(customer_id=CUSTOMER, date=day, run=run, state=SyncDay.State.PENDING)

    def bug(*args: object, **kwargs: object) -> None:  # not one of the client's own errors
        raise RuntimeError("refused: client_secret=GOCSPX-leaked&x=" + "y" * 5000)

    monkeypatch.setattr(services.google_ads, "get_account", bug)
    monkeypatch.setattr(services.google_ads, "fetch_data", bug)
    services.day_sync(customer_id=CUSTOMER, day=DAY, run_id=run.pk)
    services.day_fail(
        customer_id=CUSTOMER, day=other, run_id=run.pk, error="E: client_secret=GOCSPX-leaked"
    )

    for day in (DAY, other):
        error = SyncDay.objects.get(customer_id=CUSTOMER, date=day).last_error
        assert "GOCSPX-leaked" not in error
        assert "client_secret=[redacted]" in error
        assert len(error) <= google_ads.ERROR_TEXT_MAX + len("... (cut)")


def test_a_failure_cut_to_length_still_names_its_request_id(tmp_path: Path, monkeypatch) -> None:
    """The client ends its errors with Google's request id, which a long message loses to the
    cut: it is what Google's support asks for."""
    run = _run(tmp_path)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=run, state=SyncDay.State.PENDING)

    def refused(*args: object, **kwargs: object) -> None:
        text = "INVALID_ARGUMENT: " + "x" * 5000 + " (request id req-42)"
        raise google_ads.PermanentAdsError(text, request_id="req-42")

    monkeypatch.setattr(services.google_ads, "get_account", refused)
    monkeypatch.setattr(services.google_ads, "fetch_data", refused)
    services.day_sync(customer_id=CUSTOMER, day=DAY, run_id=run.pk)

    error = SyncDay.objects.get(customer_id=CUSTOMER, date=DAY).last_error
    assert "... (cut)" in error
    assert error.endswith(" (request id req-42)")  # the spelling of the client's errors


def test_a_failure_that_names_its_request_id_does_not_name_it_twice(
    tmp_path: Path, monkeypatch
) -> None:
    """The client's own errors end with "(request id ...)" already: the id is added only to a
    text that lost it or never had it."""
    run = _run(tmp_path)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=run, state=SyncDay.State.PENDING)

    def refused(*args: object, **kwargs: object) -> None:
        raise google_ads.PermanentAdsError(
            "INVALID_ARGUMENT: bad date (request id req-42)", request_id="req-42"
        )

    monkeypatch.setattr(services.google_ads, "get_account", refused)
    monkeypatch.setattr(services.google_ads, "fetch_data", refused)
    services.day_sync(customer_id=CUSTOMER, day=DAY, run_id=run.pk)

    error = SyncDay.objects.get(customer_id=CUSTOMER, date=DAY).last_error
    assert error == "PermanentAdsError: INVALID_ARGUMENT: bad date (request id req-42)"


def _leftover(folder: Path, name: str, age_s: float) -> Path:
    """A file in `folder` last written `age_s` seconds ago."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("partial")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_only_unfinished_csv_writes_older_than_the_limit_are_removed(tmp_path: Path) -> None:
    account = tmp_path / CUSTOMER
    old = _leftover(account, ".2025-01-10.csv.0a1b2c3d4e5f.tmp", services.CSV_LEFTOVER_AFTER_S + 60)
    in_flight = _leftover(account, ".2025-01-11.csv.0a1b2c3d4e5f.tmp", 5)
    day_file = _leftover(account, "2025-01-12.csv", services.CSV_LEFTOVER_AFTER_S + 60)

    assert services.csv_leftovers_remove(output_dir=tmp_path) == 1
    assert (old.exists(), in_flight.exists(), day_file.exists()) == (False, True, True)


class _Killed(BaseException):
    """Stands in for SIGKILL: the writer stops where it is, and its own cleanup never runs."""


def test_a_day_file_write_killed_before_its_rename_leaves_a_file_the_tidying_removes(
    tmp_path: Path, monkeypatch
) -> None:
    """Its temporary file is named for the planning's tidying to find (a name it did not
    match, the day file's left out, stayed for good)."""

    def killed(*args: object, **kwargs: object) -> None:
        raise _Killed

    monkeypatch.setattr(os, "replace", killed)
    monkeypatch.setattr(os, "unlink", lambda *args, **kwargs: None)
    with pytest.raises(_Killed):
        services.day_csv_write(customer_id=CUSTOMER, day=DAY, output_dir=tmp_path)
    monkeypatch.undo()
    [leftover] = tmp_path.joinpath(CUSTOMER).iterdir()
    then = time.time() - services.CSV_LEFTOVER_AFTER_S - 60
    os.utime(leftover, (then, then))

    assert services.csv_leftovers_remove(output_dir=tmp_path) == 1
    assert list(tmp_path.joinpath(CUSTOMER).iterdir()) == []


def test_an_unfinished_write_of_the_totals_file_in_the_folder_itself_is_removed(
    tmp_path: Path,
) -> None:
    name = ".ads_daily_totals.csv.0a1b2c3d4e5f.tmp"
    old = _leftover(tmp_path, name, services.CSV_LEFTOVER_AFTER_S + 60)
    assert services.csv_leftovers_remove(output_dir=tmp_path) == 1
    assert not old.exists()


def test_an_account_folder_that_cannot_be_read_does_not_stop_the_tidying(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    """Tidying up is no reason to fail a planning: the other folders are still tidied."""
    age = services.CSV_LEFTOVER_AFTER_S + 60
    unreadable = tmp_path / "2222222222"
    _leftover(unreadable, ".2025-01-10.csv.0a1b2c3d4e5f.tmp", age)
    old = _leftover(tmp_path / CUSTOMER, ".2025-01-10.csv.0a1b2c3d4e5f.tmp", age)
    scandir = os.scandir

    def refusing(path: Any) -> Any:
        if Path(path) == unreadable:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(services.os, "scandir", refusing)
    assert services.csv_leftovers_remove(output_dir=tmp_path) == 1
    assert not old.exists()
    assert f"unfinished CSV writes in {unreadable} not removed" in caplog.text


def test_a_csv_folder_whose_parents_do_not_exist_is_made(tmp_path: Path) -> None:
    """ADS_SYNC_OUTPUT_DIR on a new volume, say: the plan makes the whole path."""
    folder = tmp_path / "ads" / "exports"
    services.csv_dir_ensure(output_dir=folder)
    assert folder.is_dir()
    assert list(folder.iterdir()) == []  # the write check leaves nothing behind


def _sandbox_day(ads_sandbox, tmp_path: Path) -> tuple[str, dt.date, SyncRun]:
    """A pending day with campaign rows in the sandbox, and its run."""
    customer = ads_sandbox.customers[0]
    day = data.first_full_day(customer, DAY)
    run = _run(tmp_path)
    SyncDay.objects.create(customer_id=customer, date=day, run=run, state=SyncDay.State.PENDING)
    return customer, day, run


def test_a_campaign_row_the_api_sends_twice_is_stored_once(
    ads_sandbox, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    """It failed the day with PostgreSQL's "ON CONFLICT DO UPDATE command cannot affect row a
    second time", and so did every retry."""
    ads_sandbox.configure(duplicate_first_row="same")
    customer, day, run = _sandbox_day(ads_sandbox, tmp_path)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.day_sync(customer_id=customer, day=day, run_id=run.pk)

    served = [(r.campaign_id, r.impressions) for r in data.rows_for(customer, day)]
    assert (outcome.state, outcome.rows) == (SyncDay.State.DONE, len(served))
    stored = CampaignDayMetric.objects.filter(customer_id=customer, date=day).order_by(
        "campaign_id"
    )
    assert list(stored.values_list("campaign_id", "impressions")) == served


def test_a_day_taken_over_while_its_file_was_written_is_not_counted_by_this_run(
    ads_sandbox, tmp_path: Path, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    """A newer plan took the day over (this task looked stale) between this task's rows and
    its settling: the day is the newer run's to count, and this run's counts stay as they
    were, or both runs would count it."""
    customer, day, run = _sandbox_day(ads_sandbox, tmp_path)
    newer = _run(tmp_path)
    write = services.day_csv_write

    def written_then_taken_over(**kwargs: Any) -> Path:
        path = write(**kwargs)
        SyncDay.objects.filter(customer_id=customer, date=day).update(run=newer)
        return path

    monkeypatch.setattr(services, "day_csv_write", written_then_taken_over)
    with django_capture_on_commit_callbacks(execute=True):
        services.day_sync(customer_id=customer, day=day, run_id=run.pk)

    run.refresh_from_db()
    assert (run.done, run.rows) == (0, 0)
    entry = SyncDay.objects.get(customer_id=customer, date=day)
    assert (entry.run_id, entry.state) == (newer.pk, SyncDay.State.RUNNING)


def _synced_day(
    ads_sandbox, tmp_path: Path, capture, *, active: bool, **entry: Any
) -> tuple[SyncDay, SyncRun, int]:
    """A pending day of the sandbox's, with campaign activity or without, synced and its file
    written, for a run of two days whose other day is done with 3 rows; and the rows the
    sandbox has for it."""
    customer = ads_sandbox.customers[0]
    day = (data.first_full_day if active else data.first_empty_day)(customer, DAY)
    run = _run(tmp_path, planned=2)
    SyncRun.objects.filter(pk=run.pk).update(done=1, rows=3)
    SyncDay.objects.create(
        customer_id=customer, date=day, run=run, state=SyncDay.State.PENDING, **entry
    )
    with capture(execute=True):
        services.day_sync(customer_id=customer, day=day, run_id=run.pk)
    run.refresh_from_db()
    return SyncDay.objects.get(), run, len(data.rows_for(customer, day))


def test_a_day_done_records_its_rows_and_fetch_time_and_drops_its_last_error(
    ads_sandbox, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    """A day that failed before and now succeeds: the admin showed the old error beside
    "done", and a done day without its fetch time was left out of the totals file and never
    had its day file checked against its fetch."""
    before = timezone.now()
    entry, run, rows = _synced_day(
        ads_sandbox,
        tmp_path,
        django_capture_on_commit_callbacks,
        active=True,
        failures=1,
        last_error="PermanentAdsError: refused",
    )
    assert rows > 0
    assert (entry.state, entry.rows, entry.last_error) == (SyncDay.State.DONE, rows, "")
    assert entry.fetched_at is not None
    assert entry.fetched_at >= before
    assert (run.done, run.rows) == (2, 3 + rows)


def test_a_day_done_without_campaign_activity_adds_no_row_to_its_run(
    ads_sandbox, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    entry, run, rows = _synced_day(
        ads_sandbox, tmp_path, django_capture_on_commit_callbacks, active=False
    )
    assert (rows, entry.state, entry.rows) == (0, SyncDay.State.DONE, 0)
    assert (run.done, run.rows) == (2, 3)


def test_a_done_day_reports_the_time_its_fetch_and_file_took(
    ads_sandbox, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    """Bounds, not a figure: at least the API's own delay, at most the whole call's."""
    ads_sandbox.configure(latency_s=0.05)
    customer, day, run = _sandbox_day(ads_sandbox, tmp_path)
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        services.day_sync(customer_id=customer, day=day, run_id=run.pk)
    took_ms = (time.monotonic() - started) * 1000
    entry = SyncDay.objects.get()
    assert entry.state == SyncDay.State.DONE
    assert entry.duration_ms is not None
    assert 50 <= entry.duration_ms <= took_ms


def test_two_different_rows_for_one_campaign_fail_the_day_naming_it(
    ads_sandbox, tmp_path: Path
) -> None:
    """They failed it with a ProgrammingError that named no campaign."""
    ads_sandbox.configure(duplicate_first_row="changed")
    customer, day, run = _sandbox_day(ads_sandbox, tmp_path)

    outcome = services.day_sync(customer_id=customer, day=day, run_id=run.pk)

    campaign = data.rows_for(customer, day)[0].campaign_id
    assert outcome.state == SyncDay.State.FAILED
    assert SyncDay.objects.get().last_error.startswith(
        f"PermanentAdsError: {customer} {day}: campaign {campaign} came twice in the answer"
    )
    assert not CampaignDayMetric.objects.exists()


def test_an_answer_that_cannot_be_stored_counts_toward_the_days_backoff(
    ads_sandbox, settings, tmp_path: Path
) -> None:
    """Two different rows for one campaign fail the day as any failure of the account's own:
    it is not planned again at every detection for ever."""
    settings.ADS_SYNC_FAILED_DAILY_RETRIES = 0
    ads_sandbox.configure(duplicate_first_row="changed")
    customer, day, run = _sandbox_day(ads_sandbox, tmp_path)
    planned_at = timezone.now() - dt.timedelta(hours=5)
    SyncRun.objects.filter(pk=run.pk).update(started_at=planned_at)

    outcome = services.day_sync(customer_id=customer, day=day, run_id=run.pk)

    assert outcome.state == SyncDay.State.FAILED
    entry = SyncDay.objects.get()
    assert (entry.failures, entry.retry_after) == (1, planned_at + dt.timedelta(days=2, hours=-1))


def _daily_detections(customer: str, tmp_path: Path, times: int) -> list[int]:
    """The days each of `times` daily detections of one account planned, each day synced."""
    planned = []
    for _ in range(times):
        plan = services.run_plan(
            trigger="beat", customer_ids=[customer], days=1, output_dir=tmp_path
        )
        assert plan is not None
        planned.append(len(plan.days))
        for c, d in plan.days:
            services.day_sync(customer_id=c, day=d, run_id=plan.run.pk)
    return planned


@pytest.mark.parametrize(
    ("cause", "planned", "failures", "said"),
    [
        # The installation's: every day alike, planned again at every detection.
        ("no refresh token", [1, 1, 1], 0, "GOOGLE_ADS_REFRESH_TOKEN"),
        # So is a refusal the API answers for every account alike: the Cloud project's access
        # level, the refresh token's Google account. Backed off, a project approved for
        # production access the day after left its days waiting 2 to 30 days.
        ("project_not_approved", [1, 1, 1], 0, "only approved for use with test accounts"),
        ("not_ads_user", [1, 1, 1], 0, "not associated with any Ads accounts"),
        # The account's: backed off as any failure of its own.
        ("fresh token refused", [1, 1, 0, 0], 2, "freshly refreshed access token was refused"),
        ("permission_denied", [1, 1, 0, 0], 2, "User doesn't have permission"),
    ],
)
def test_only_the_installation_s_credential_failures_skip_the_backoff(
    ads_sandbox, settings, tmp_path: Path, cause, planned, failures, said
) -> None:
    settings.ADS_SYNC_FAILED_DAILY_RETRIES = 1
    customer = ads_sandbox.customers[0]
    AdsAccount.objects.create(customer_id=customer, time_zone="UTC", currency_code="EUR")
    if cause == "no refresh token":
        settings.GOOGLE_ADS_REFRESH_TOKEN = ""
    elif cause == "fresh token refused":
        ads_sandbox.configure(fail_first={"unauthenticated": 10_000})
    else:
        ads_sandbox.configure(fail_first={cause: 10_000})

    assert _daily_detections(customer, tmp_path, len(planned)) == planned
    entry = SyncDay.objects.get()
    assert (entry.state, entry.failures) == (SyncDay.State.FAILED, failures)
    assert said in entry.last_error


def _plan_yesterday(tmp_path: Path) -> services.Plan:
    plan = services.run_plan(trigger="beat", customer_ids=[CUSTOMER], days=1, output_dir=tmp_path)
    assert plan is not None
    return plan


def _finished_lines(caplog: pytest.LogCaptureFixture, run: SyncRun) -> list[str]:
    said = f"ads sync: run {run.pk} ({run.trigger}) finished in {run.elapsed_s:.1f} s: "
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(said)]


def test_a_run_with_nothing_to_fetch_says_it_finished_and_how_long_it_took(
    tmp_path: Path, settings, caplog
) -> None:
    """Every run says how long it took: one with no day to fetch finished when it was planned,
    and only a day's settling said it."""
    caplog.set_level(logging.INFO, logger="ads_sync")
    settings.ADS_SYNC_LOOKBACK_DAYS = 0
    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    SyncDay.objects.filter(run=_plan_yesterday(tmp_path).run).update(state=SyncDay.State.DONE)

    empty = _plan_yesterday(tmp_path)
    services.plan_csv_restore(plan=empty)

    assert empty.days == []
    empty.run.refresh_from_db()
    assert empty.run.finished_at is not None
    assert len(_finished_lines(caplog, empty.run)) == 1


def test_a_plan_that_takes_over_a_stale_day_settles_it_for_the_run_that_lost_it(
    tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="ads_sync")
    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    old = _plan_yesterday(tmp_path)
    assert len(old.days) == 1
    # Its message was lost: the day has not moved for longer than the in-flight window.
    stale = timezone.now() - selectors.IN_FLIGHT_STALE_AFTER - dt.timedelta(minutes=1)
    SyncDay.objects.filter(run=old.run).update(updated_at=stale)

    new = _plan_yesterday(tmp_path)

    assert new.days == old.days
    old.run.refresh_from_db()
    assert (old.run.planned, old.run.deferred) == (1, 1)
    assert old.run.finished_at is not None  # a backfill waiting on it is not left waiting
    assert len(_finished_lines(caplog, old.run)) == 1  # and it says how long it took
    assert SyncDay.objects.get().run_id == new.run.pk


def test_a_totals_file_not_written_is_recorded_on_the_runs_closed_in_that_folder_only(
    tmp_path: Path,
) -> None:
    """The error makes each run's `backfill_ads` exit 73: a run whose own totals file was
    written, or one finished earlier, must not say otherwise."""
    other = "2222222222"
    for customer_id in (CUSTOMER, other):
        AdsAccount.objects.create(customer_id=customer_id, time_zone="UTC", currency_code="EUR")
    (tmp_path / "a-file").write_text("")
    unwritable = tmp_path / "a-file" / "out"  # an old --output-dir that cannot be written now
    yesterday = selectors.account_yesterday(account=AdsAccount.objects.get(pk=CUSTOMER))
    finished_before = SyncRun.objects.create(
        trigger="backfill", output_dir=str(unwritable), finished_at=timezone.now()
    )
    runs = {}
    for customer_id, folder in ((CUSTOMER, unwritable), (other, tmp_path / "good")):
        runs[customer_id] = SyncRun.objects.create(
            trigger="backfill", output_dir=str(folder), planned=1
        )
        SyncDay.objects.create(customer_id=customer_id, date=yesterday, run=runs[customer_id])
    stale = timezone.now() - selectors.IN_FLIGHT_STALE_AFTER - dt.timedelta(minutes=1)
    SyncDay.objects.update(updated_at=stale)

    plan = services.run_plan(
        trigger="beat", customer_ids=[CUSTOMER, other], days=1, output_dir=tmp_path
    )

    assert plan is not None
    assert len(plan.days) == 2
    errors = {
        name: SyncRun.objects.get(pk=run.pk).totals_error
        for name, run in (("closed there", runs[CUSTOMER]), ("closed elsewhere", runs[other]))
    }
    errors["finished there before"] = SyncRun.objects.get(pk=finished_before.pk).totals_error
    assert {name: bool(error) for name, error in errors.items()} == {
        "closed there": True,
        "closed elsewhere": False,
        "finished there before": False,
    }


def test_a_plan_touches_no_ledger_entry_but_its_own_days(tmp_path: Path) -> None:
    """Its days' updated_at is set after the upsert: set on every entry, it made every other
    run's stale days look fresh, and none was ever taken over."""
    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    stale = timezone.now() - selectors.IN_FLIGHT_STALE_AFTER - dt.timedelta(minutes=1)
    other = SyncDay.objects.create(customer_id="2222222222", date=DAY, run=_run(tmp_path))
    SyncDay.objects.filter(pk=other.pk).update(updated_at=stale)
    _plan_yesterday(tmp_path)
    other.refresh_from_db()
    assert other.updated_at == stale


def test_a_day_still_in_flight_is_neither_planned_again_nor_settled_for_its_run(
    tmp_path: Path,
) -> None:
    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    old = _plan_yesterday(tmp_path)
    assert _plan_yesterday(tmp_path).days == []
    old.run.refresh_from_db()
    assert (old.run.deferred, old.run.finished_at) == (0, None)


def _backfill_from_a_done_day(tmp_path: Path, *, days: int, force: bool = False) -> services.Plan:
    """The plan of a backfill of `days` days from DAY, which is done already."""
    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    SyncDay.objects.create(
        customer_id=CUSTOMER, date=DAY, state=SyncDay.State.DONE, fetched_at=timezone.now()
    )
    plan = services.run_plan(
        trigger="backfill",
        customer_ids=[CUSTOMER],
        start=DAY,
        end=DAY + dt.timedelta(days=days - 1),
        force=force,
        output_dir=tmp_path,
    )
    assert plan is not None
    return plan


def test_a_plan_counts_the_days_of_its_range_it_leaves_out_as_skipped(tmp_path: Path) -> None:
    plan = _backfill_from_a_done_day(tmp_path, days=3)
    assert (plan.run.planned, plan.run.skipped) == (2, 1)


def test_a_forced_plan_leaves_the_file_of_a_day_it_fetches_again_to_that_days_task(
    tmp_path: Path,
) -> None:
    """Rewritten from the rows being replaced as well, the file could end with the old figures
    (a rewrite that read them before the task's commit and wrote after it), and the run
    counted a rewrite it did not need."""
    plan = _backfill_from_a_done_day(tmp_path, days=1, force=True)
    assert plan.days == [(CUSTOMER, DAY)]
    assert (plan.csv_missing, plan.run.csv_rewritten) == ((), 0)


def test_an_account_named_twice_is_planned_once(tmp_path: Path) -> None:
    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    plan = services.run_plan(
        trigger="backfill", customer_ids=[CUSTOMER, CUSTOMER], days=2, output_dir=tmp_path
    )
    assert plan is not None
    assert len(plan.days) == 2
    assert plan.run.customer_ids == [CUSTOMER]


def test_a_stale_day_that_moved_before_the_plan_locked_it_stays_with_its_run(
    tmp_path: Path,
) -> None:
    old = _run(tmp_path)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=old, state=SyncDay.State.RUNNING)
    # Selected as stale, then started by its task before the plan's lock: in flight again.
    planned, taken = services._take_over(planned=[(CUSTOMER, DAY)])
    assert (planned, taken) == ([], set())
    old.refresh_from_db()
    assert old.deferred == 0


def test_a_plan_settles_only_the_stale_days_it_takes_over_not_another_accounts_same_date(
    tmp_path: Path,
) -> None:
    """A backfill of one account took over a stale day of another account on the same date."""
    old = _run(tmp_path, planned=2)
    stale = timezone.now() - selectors.IN_FLIGHT_STALE_AFTER - dt.timedelta(minutes=1)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=old)
    SyncDay.objects.create(customer_id="2222222222", date=DAY, run=old)
    SyncDay.objects.filter(run=old).update(updated_at=stale)

    planned, taken = services._take_over(planned=[(CUSTOMER, DAY)])

    assert (planned, taken) == ([(CUSTOMER, DAY)], {old.pk})
    old.refresh_from_db()
    assert old.deferred == 1


def test_a_stale_day_taken_over_adds_to_the_days_its_run_deferred_already(
    tmp_path: Path,
) -> None:
    """The old run had deferred a day to the daily quota: counted anew rather than added, its
    settled days fell short of its planned ones, and it never finished."""
    old = _run(tmp_path, planned=2)
    SyncRun.objects.filter(pk=old.pk).update(deferred=1)
    stale = timezone.now() - selectors.IN_FLIGHT_STALE_AFTER - dt.timedelta(minutes=1)
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=old)
    SyncDay.objects.filter(run=old).update(updated_at=stale)

    assert services._take_over(planned=[(CUSTOMER, DAY)]) == ([(CUSTOMER, DAY)], {old.pk})

    old.refresh_from_db()
    assert old.deferred == 2
    assert services.run_finish_if_settled(run_id=old.pk) is True


def test_a_day_a_finished_run_left_pending_is_not_counted_again_for_that_run(
    tmp_path: Path,
) -> None:
    """Its run counted it when it finished: counting it deferred too put the run past its
    planned days."""
    old = _run(tmp_path)
    SyncRun.objects.filter(pk=old.pk).update(failed=1, finished_at=timezone.now())
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=old)

    planned, taken = services._take_over(planned=[(CUSTOMER, DAY)])

    assert (planned, taken) == ([(CUSTOMER, DAY)], set())
    old.refresh_from_db()
    assert (old.failed, old.deferred) == (1, 0)


@pytest.mark.django_db(transaction=True)
def test_a_plan_locks_only_the_in_flight_days_it_takes_over(tmp_path: Path) -> None:
    old = _run(tmp_path, planned=2)
    stale = timezone.now() - selectors.IN_FLIGHT_STALE_AFTER - dt.timedelta(minutes=1)
    taken = SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, run=old)
    other = SyncDay.objects.create(customer_id=CUSTOMER, date=DAY + dt.timedelta(days=1), run=old)
    SyncDay.objects.filter(pk=taken.pk).update(updated_at=stale)

    def lockable(entry_id: int) -> bool:
        with other_connection() as conn:
            try:
                conn.execute(
                    "SELECT 1 FROM ads_sync_syncday WHERE id = %s FOR UPDATE NOWAIT", [entry_id]
                )
            except psycopg.errors.LockNotAvailable:
                return False
            return True

    with transaction.atomic():
        planned, runs = services._take_over(planned=[(CUSTOMER, DAY)])
        assert (planned, runs) == ([(CUSTOMER, DAY)], {old.pk})
        assert not lockable(taken.pk)
        assert lockable(other.pk)
    old.refresh_from_db()
    assert old.deferred == 1


def test_a_day_that_keeps_failing_is_backed_off_by_the_daily_detection_only(
    ads_sandbox, settings, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    settings.ADS_SYNC_FAILED_DAILY_RETRIES = 2
    settings.ADS_SYNC_FAILED_BACKOFF_MAX_DAYS = 30
    customer = ads_sandbox.customers[0]
    AdsAccount.objects.create(customer_id=customer, time_zone="UTC", currency_code="EUR")
    ads_sandbox.configure(denied_customers=[customer])  # its access was revoked

    def detect() -> services.Plan:
        plan = services.run_plan(
            trigger="beat", customer_ids=[customer], days=1, output_dir=tmp_path
        )
        assert plan is not None
        for c, d in plan.days:
            services.day_sync(customer_id=c, day=d, run_id=plan.run.pk)
        return plan

    for _ in range(3):
        assert len(detect().days) == 1
    entry = SyncDay.objects.get()
    assert (entry.state, entry.failures, entry.attempts) == (SyncDay.State.FAILED, 3, 3)
    assert entry.retry_after is not None
    waited = entry.retry_after - timezone.now()
    assert dt.timedelta(days=1) < waited < dt.timedelta(days=2)

    waiting = detect()
    assert waiting.days == []
    assert "1 failed day(s) wait out their backoff" in waiting.run.notes
    assert SyncDay.objects.get().attempts == 3

    # Access restored: a backfill by hand tries the day at once, and success clears the count.
    ads_sandbox.configure(denied_customers=[])
    plan = services.run_plan(
        trigger="backfill", customer_ids=[customer], days=1, output_dir=tmp_path
    )
    assert plan is not None
    assert len(plan.days) == 1
    with django_capture_on_commit_callbacks(execute=True):
        services.day_sync(customer_id=customer, day=plan.days[0][1], run_id=plan.run.pk)
    entry.refresh_from_db()
    assert (entry.state, entry.failures, entry.retry_after) == (SyncDay.State.DONE, 0, None)


def test_a_backfill_does_not_say_that_failed_days_wait_out_their_backoff(tmp_path: Path) -> None:
    """It tries them at once: only the daily detection leaves them to their backoff, and its
    run says so."""
    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    [window] = selectors.sync_windows(customer_ids=[CUSTOMER], days=1)
    SyncDay.objects.create(
        customer_id=CUSTOMER,
        date=window.end,
        state=SyncDay.State.FAILED,
        failures=3,
        retry_after=timezone.now() + dt.timedelta(days=1),
    )
    plan = services.run_plan(
        trigger="backfill", customer_ids=[CUSTOMER], days=1, output_dir=tmp_path
    )
    assert plan is not None
    assert (plan.days, plan.run.notes) == ([(CUSTOMER, window.end)], "")


def test_the_backoff_doubles_up_to_its_maximum(settings) -> None:
    settings.ADS_SYNC_FAILED_DAILY_RETRIES = 2
    settings.ADS_SYNC_FAILED_BACKOFF_MAX_DAYS = 30
    planned_at = dt.datetime(2025, 3, 1, 3, 0, tzinfo=dt.UTC)
    waits = []
    for failures in range(9):
        fields = services._failure_fields(failures=failures, planned_at=planned_at)
        retry_after = fields["retry_after"]
        assert fields["failures"] == failures + 1
        waits.append(None if retry_after is None else retry_after - planned_at)
    days = [None if w is None else w + dt.timedelta(hours=1) for w in waits]
    assert days == [None, None] + [dt.timedelta(days=n) for n in (2, 4, 8, 16, 30, 30, 30)]


def test_the_backoff_counts_from_the_runs_planning_not_from_its_tasks_end(
    ads_sandbox, settings, tmp_path: Path
) -> None:
    # A task that ran hours after its detection (queued behind a backfill) must not make the
    # detection two days after that one miss the day.
    settings.ADS_SYNC_FAILED_DAILY_RETRIES = 0
    customer = ads_sandbox.customers[0]
    AdsAccount.objects.create(customer_id=customer, time_zone="UTC", currency_code="EUR")
    ads_sandbox.configure(denied_customers=[customer])
    plan = services.run_plan(trigger="beat", customer_ids=[customer], days=1, output_dir=tmp_path)
    assert plan is not None
    planned_at = timezone.now() - dt.timedelta(hours=5)
    SyncRun.objects.filter(pk=plan.run.pk).update(started_at=planned_at)
    services.day_sync(customer_id=customer, day=plan.days[0][1], run_id=plan.run.pk)
    entry = SyncDay.objects.get()
    assert entry.retry_after == planned_at + dt.timedelta(days=2, hours=-1)


def test_a_runs_time_counts_its_account_lookups_and_its_csv_rewrites(
    ads_sandbox, monkeypatch, tmp_path: Path
) -> None:
    customer = ads_sandbox.customers[0]  # not in the database yet: the planning looks it up
    services.day_rows_replace(
        customer_id=customer, day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    SyncDay.objects.create(customer_id=customer, date=DAY, state=SyncDay.State.DONE)
    moments: dict[str, dt.datetime] = {}
    lookup, write = google_ads.get_account, services.day_csv_write

    def timed_lookup(customer_id: str, **kwargs: Any) -> google_ads.AccountInfo:
        moments["lookup"] = timezone.now()
        return lookup(customer_id, **kwargs)

    def timed_write(**kwargs: Any) -> Path:
        path = write(**kwargs)
        moments["written"] = timezone.now()
        return path

    monkeypatch.setattr(google_ads, "get_account", timed_lookup)
    monkeypatch.setattr(services, "day_csv_write", timed_write)
    plan = services.run_plan(
        trigger="backfill", customer_ids=[customer], start=DAY, end=DAY, output_dir=tmp_path
    )
    assert plan is not None
    assert (plan.days, plan.csv_missing) == ([], ((customer, DAY),))
    # Nothing to fetch: finished when planned, so that a planner that dies now leaves no run
    # open; the rewriting then extends its time.
    assert SyncRun.objects.get().finished_at is not None
    services.plan_csv_restore(plan=plan)
    run = SyncRun.objects.get()
    assert run.planning_started_at is not None
    assert run.finished_at is not None
    assert run.planning_started_at <= moments["lookup"] <= run.started_at
    assert run.finished_at >= moments["written"]
    elapsed = (run.finished_at - run.planning_started_at).total_seconds()
    assert run.elapsed_s == pytest.approx(elapsed)


@pytest.mark.django_db(transaction=True)
def test_a_database_error_rewriting_a_days_file_is_raised_not_noted_as_a_file_not_written(
    tmp_path: Path,
) -> None:
    """Only a file that cannot be written is the run's note; the database's failure is its
    caller's, as everywhere else."""
    run = SyncRun.objects.create(
        trigger=SyncRun.Trigger.BACKFILL, output_dir=str(tmp_path), csv_rewritten=1
    )
    with lock_holder() as holder:
        holder.execute("LOCK TABLE ads_sync_campaigndaymetric IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        try:
            with pytest.raises(OperationalError, match="lock timeout"):
                services.run_csv_restore(run=run, days=[(CUSTOMER, DAY)], counted=1)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    run.refresh_from_db()
    assert (run.notes, run.csv_rewritten) == ("", 0)


def test_a_finished_runs_time_is_not_extended_when_it_has_no_file_to_rewrite(
    tmp_path: Path,
) -> None:
    finished = timezone.now() - dt.timedelta(minutes=5)
    run = SyncRun.objects.create(
        trigger=SyncRun.Trigger.BACKFILL,
        output_dir=str(tmp_path),
        finished_at=finished,
        elapsed_s=1.0,
    )
    assert services.run_csv_restore(run=run, days=[], after_finish=True) == (0, [])
    run.refresh_from_db()
    assert (run.finished_at, run.elapsed_s) == (finished, 1.0)


def test_a_run_with_days_to_fetch_keeps_the_finish_its_last_day_gave_it(tmp_path: Path) -> None:
    """Its files are rewritten beside its tasks, which may all settle first: only a run with
    no day to fetch, finished when planned, has its time extended by the rewriting."""
    services.day_rows_replace(
        customer_id=CUSTOMER, day=DAY, rows=[campaign_day()], currency_code="EUR"
    )
    finished = timezone.now() - dt.timedelta(minutes=5)
    run = SyncRun.objects.create(
        trigger=SyncRun.Trigger.BACKFILL,
        output_dir=str(tmp_path),
        planned=1,
        done=1,
        csv_rewritten=1,
        finished_at=finished,
        elapsed_s=1.0,
    )
    plan = services.Plan(
        run=run, days=[(CUSTOMER, DAY + dt.timedelta(days=1))], csv_missing=((CUSTOMER, DAY),)
    )
    services.plan_csv_restore(plan=plan)
    assert (tmp_path / CUSTOMER / "2025-01-10.csv").exists()
    run.refresh_from_db()
    assert (run.finished_at, run.elapsed_s) == (finished, 1.0)


def test_rewriting_a_runs_files_counts_and_times_that_run_only(tmp_path: Path) -> None:
    """Another run, finished earlier, keeps its count of rewritten files and its finish."""
    services.day_rows_replace(
        customer_id=CUSTOMER, day=DAY, rows=[campaign_day()], currency_code="EUR"
    )
    finished = timezone.now() - dt.timedelta(minutes=5)
    earlier, run = (
        SyncRun.objects.create(
            trigger=SyncRun.Trigger.BACKFILL,
            output_dir=str(tmp_path),
            csv_rewritten=2,
            finished_at=finished,
            elapsed_s=1.0,
        )
        for _ in range(2)
    )
    assert services.run_csv_restore(run=run, days=[(CUSTOMER, DAY)], after_finish=True) == (1, [])
    run.refresh_from_db()
    earlier.refresh_from_db()
    assert (run.csv_rewritten, run.finished_at > finished) == (3, True)
    assert (earlier.csv_rewritten, earlier.finished_at, earlier.elapsed_s) == (2, finished, 1.0)


def test_a_file_that_cannot_be_rewritten_is_noted_on_its_run_only_on_a_line_of_its_own(
    tmp_path: Path, monkeypatch
) -> None:
    earlier = _run(tmp_path)
    run = SyncRun.objects.create(
        trigger=SyncRun.Trigger.BACKFILL,
        output_dir=str(tmp_path),
        csv_rewritten=1,
        notes="1 failed day(s) wait out their backoff",
    )

    def full_disk(**kwargs: object) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(services, "day_csv_write", full_disk)
    written, errors = services.run_csv_restore(run=run, days=[(CUSTOMER, DAY)], counted=1)

    assert (written, errors) == (0, [f"{CUSTOMER} {DAY}: [Errno 28] No space left on device"])
    run.refresh_from_db()
    assert run.notes.split("\n") == [
        "1 failed day(s) wait out their backoff",
        f"1 CSV file(s) could not be rewritten, first: {errors[0]}",
    ]
    earlier.refresh_from_db()
    assert earlier.notes == ""


def test_a_run_with_only_csvs_to_rewrite_is_finished_even_if_its_planner_dies(
    tmp_path: Path,
) -> None:
    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    services.day_rows_replace(
        customer_id=CUSTOMER, day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    SyncDay.objects.create(customer_id=CUSTOMER, date=DAY, state=SyncDay.State.DONE)
    plan = services.run_plan(
        trigger="backfill", customer_ids=[CUSTOMER], start=DAY, end=DAY, output_dir=tmp_path
    )
    assert plan is not None
    assert (plan.days, len(plan.csv_missing)) == ([], 1)
    # The planner dies here (SIGKILL, OOM): plan_csv_restore never runs. No day belongs to the
    # run, so no task and no later planning would ever close it.
    assert SyncRun.objects.get(pk=plan.run.pk).finished_at is not None


def _lock_ttl_ms(set_to: int | None = None) -> int:
    """The planning lock's TTL in Redis, after setting it to `set_to` ms if given."""
    key = cache.make_key(locks.PLANNING_LOCK_KEY)
    redis = cache.client.get_client(write=True)  # type: ignore[attr-defined]
    if set_to is not None:
        redis.pexpire(key, set_to)
    return int(redis.pttl(key))


def test_a_planning_renews_its_lock_after_each_account_lookup(
    ads_sandbox, monkeypatch, tmp_path: Path
) -> None:
    # A new account's lookup may take the client's whole retry budget: a lock left to expire
    # over several of them would let a second planner plan the same days.
    lookup = google_ads.get_account
    ttls: list[int] = []

    def slow_lookup(customer_id: str, **kwargs: Any) -> google_ads.AccountInfo:
        ttls.append(_lock_ttl_ms())
        _lock_ttl_ms(set_to=5_000)
        return lookup(customer_id, **kwargs)

    monkeypatch.setattr(google_ads, "get_account", slow_lookup)
    plan = services.run_plan(
        trigger="beat", customer_ids=list(ads_sandbox.customers), days=1, output_dir=tmp_path
    )
    assert plan is not None
    assert len(ttls) == 2
    # The second lookup found the lock renewed after the first had all but used it up.
    assert ttls[1] > 60_000


def test_a_planning_whose_lock_expired_stores_no_plan(
    ads_sandbox, monkeypatch, tmp_path: Path, caplog
) -> None:
    lookup = google_ads.get_account

    def lookup_outlasting_the_lock(customer_id: str, **kwargs: Any) -> google_ads.AccountInfo:
        cache.delete(locks.PLANNING_LOCK_KEY)  # expired, and now another planner's
        cache.set(locks.PLANNING_LOCK_KEY, "another planner's token", 60)
        return lookup(customer_id, **kwargs)

    monkeypatch.setattr(google_ads, "get_account", lookup_outlasting_the_lock)
    customer = ads_sandbox.customers[0]
    plan = services.run_plan(trigger="beat", customer_ids=[customer], days=1, output_dir=tmp_path)
    assert plan is None  # a detection retries; a backfill says another planning is running
    assert not SyncRun.objects.exists()
    assert not SyncDay.objects.exists()
    # No run holds the lookup's call: the log says it was made.
    assert "(1 API call(s) made for account lookups)" in caplog.text
    cache.delete(locks.PLANNING_LOCK_KEY)


def test_a_planning_that_finds_the_lock_taken_asks_the_api_nothing(
    monkeypatch, tmp_path: Path
) -> None:
    """It went on to look up the new accounts (API calls on the quota) only to find at the end
    that it held no lock, and logged that the lock had expired."""

    def lookup(customer_id: str, **kwargs: Any) -> google_ads.AccountInfo:
        raise AssertionError("an account lookup without the planning lock")

    monkeypatch.setattr(google_ads, "get_account", lookup)
    with locks.planning_lock() as held:
        assert held
        plan = services.run_plan(
            trigger="beat", customer_ids=[CUSTOMER], days=1, output_dir=tmp_path
        )
    assert plan is None
    assert not SyncRun.objects.exists()


def test_an_account_is_looked_up_once_and_then_read_from_the_database(ads_sandbox) -> None:
    customer = ads_sandbox.customers[0]
    calls_first, calls_second = google_ads.CallCounter(), google_ads.CallCounter()
    first = services.account_ensure(customer_id=customer, counter=calls_first)
    second = services.account_ensure(customer_id=customer, counter=calls_second)
    assert (calls_first.calls, calls_second.calls) == (1, 0)
    assert (second.time_zone, second.currency_code) == (first.time_zone, first.currency_code)
    # What the run reports as API calls is what the API served.
    assert [c["query"] for c in ads_sandbox.calls()] == ["customer"]


def test_a_plan_is_stored_under_the_advisory_lock_whichever_lock_its_planner_holds(
    tmp_path: Path,
) -> None:
    """A planner that fell back to the advisory lock (Redis was down as it started) and one
    under the Redis lock must not store their plans at the same time."""
    from django.db import OperationalError

    AdsAccount.objects.create(customer_id=CUSTOMER, time_zone="UTC", currency_code="EUR")
    with other_connection() as fallback_planner:
        fallback_planner.execute("SELECT pg_advisory_lock(%s)", [locks.PLANNING_ADVISORY_KEY])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        with pytest.raises(OperationalError, match="lock timeout"):
            services.run_plan(
                trigger="backfill", customer_ids=[CUSTOMER], days=1, output_dir=tmp_path
            )
    assert not SyncRun.objects.exists()


def test_a_finished_run_has_its_elapsed_time_in_the_same_update(tmp_path: Path) -> None:
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    run = SyncRun.objects.create(trigger="backfill", planned=0, output_dir=str(tmp_path))
    with CaptureQueriesContext(db) as queries:
        assert services.run_finish_if_settled(run_id=run.pk)
    finishing = [
        q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "finished_at" in q["sql"]
    ]
    assert len(finishing) == 1
    assert "elapsed_s" in finishing[0]
    run.refresh_from_db()
    assert run.elapsed_s == pytest.approx((run.finished_at - run.started_at).total_seconds())


def test_a_run_reports_every_call_it_sent_retries_included(
    ads_sandbox, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    customer = ads_sandbox.customers[0]
    ads_sandbox.configure(fail_first={"internal": 1})  # the account lookup: 2 calls
    plan = services.run_plan(
        trigger="backfill", customer_ids=[customer], days=1, output_dir=tmp_path
    )
    assert plan is not None
    ads_sandbox.configure(fail_first={"internal": 2})  # the day: 3 calls
    with django_capture_on_commit_callbacks(execute=True):
        services.day_sync(customer_id=customer, day=plan.days[0][1], run_id=plan.run.pk)
    plan.run.refresh_from_db()
    assert plan.run.api_calls == len(ads_sandbox.calls()) == 5


def test_a_days_api_calls_are_counted_on_its_own_run_only(ads_sandbox, tmp_path: Path) -> None:
    """A retried fetch is two calls, both the day's run's."""
    ads_sandbox.configure(fail_first={"unavailable": 1})
    customer, day, run = _sandbox_day(ads_sandbox, tmp_path)
    AdsAccount.objects.create(customer_id=customer, time_zone="UTC", currency_code="EUR")
    other = _run(tmp_path)
    services.day_sync(customer_id=customer, day=day, run_id=run.pk)

    run.refresh_from_db()
    other.refresh_from_db()
    assert (run.api_calls, other.api_calls) == (len(ads_sandbox.calls()), 0) == (2, 0)


def test_a_csv_whose_mode_cannot_be_set_leaves_no_file_or_descriptor_behind(
    tmp_path: Path, monkeypatch
) -> None:
    """A mount that refuses chmod (vfat, some CIFS or FUSE shares) failed every day's CSV and
    left its descriptor open each time, until the worker could open nothing more."""

    def refused(fd: int, mode: int) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    def open_here() -> list[str]:
        return [link for link in open_files() if link.startswith(str(tmp_path))]

    monkeypatch.setattr(os, "fchmod", refused)
    # A new file is created with its mode, and one whose mode is the new one's is not changed:
    # on such a mount, where every file has the mount's mode, no chmod is asked for.
    path = services.day_csv_write(customer_id="1111111111", day=DAY, output_dir=tmp_path)
    services.day_csv_write(customer_id="1111111111", day=DAY, output_dir=tmp_path)
    path.chmod(0o600)
    with path.open():  # the look below sees a descriptor left open
        assert open_here() == [str(path)]
    with pytest.raises(PermissionError):
        services.day_csv_write(customer_id="1111111111", day=DAY, output_dir=tmp_path)
    assert open_here() == []
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [path.name]
