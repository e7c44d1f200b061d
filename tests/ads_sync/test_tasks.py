"""detect_gaps and sync_day on a real Celery worker against the sandbox API."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import group as celery_group
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.signals import task_postrun
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.lock import Lock as RedisLock

from ads_sync import locks, selectors, services, tasks
from ads_sync.integrations import google_ads
from ads_sync.models import AdsAccount, CampaignDayMetric, SyncDay, SyncRun
from inventory_project.celery import app as celery_app
from tests.clocks import FakeClock
from tests.database import other_connection
from tests.time_limits import slow_statement_cut_short

from .helpers import (
    assert_complete,
    daily_quota_from_the_first_fetch,
    days_between,
    expected_rows,
    fetched_days,
    group_raising,
    sync_worker,  # noqa: F401 (a fixture)
    wait_for_run,
)

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
CLOSED_PORT = 1


@pytest.fixture
def short_history(settings, tmp_path: Path) -> Path:
    settings.ADS_SYNC_HISTORY_DAYS = 8
    settings.ADS_SYNC_LOOKBACK_DAYS = 2
    settings.ADS_SYNC_OUTPUT_DIR = tmp_path
    return tmp_path


def _detect() -> SyncRun:
    run_id = tasks.detect_gaps()
    assert run_id is not None
    return wait_for_run(run_id)


@pytest.mark.usefixtures("sync_worker")
def test_gap_detection_fetches_exactly_the_deleted_days_and_the_lookback(
    ads_sandbox, short_history: Path
) -> None:
    _detect()
    windows = selectors.sync_windows(customer_ids=list(ads_sandbox.customers))
    removed = {
        (w.customer_id, w.start + dt.timedelta(days=offset)) for w in windows for offset in (2, 3)
    }
    for customer_id, day in removed:
        SyncDay.objects.filter(customer_id=customer_id, date=day).delete()
    lookback = {
        (w.customer_id, w.end - dt.timedelta(days=offset)) for w in windows for offset in (0, 1)
    }
    ads_sandbox.reset()

    run = _detect()

    fetched = fetched_days(ads_sandbox.calls())
    assert set(fetched) == {(c, d.isoformat()) for c, d in removed | lookback}
    assert set(fetched.values()) == {1}
    assert run.planned == run.done == len(removed | lookback)
    assert_complete(ads_sandbox.customers, short_history, 8)


@pytest.mark.usefixtures("sync_worker")
def test_the_log_names_each_day_done_and_how_long_the_run_took(
    ads_sandbox, short_history: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="ads_sync")
    run = _detect()

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.startswith("ads_sync")]

    finished = f"ads sync: run {run.pk} (beat) finished in {run.elapsed_s:.1f} s: "
    deadline = time.monotonic() + 10  # the line follows the run's row by a moment
    while not any(m.startswith(finished) for m in messages()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(m.startswith(finished) for m in messages()), messages()
    days = [m for m in messages() if " done: " in m and m.endswith(f"(run {run.pk})")]
    assert len(days) == run.done == run.planned > 0
    customer_id = ads_sandbox.customers[0]
    assert any(m.startswith(f"ads sync: {customer_id} ") for m in days)


@pytest.mark.usefixtures("sync_worker")
def test_two_detect_gaps_at_once_fan_out_once(
    ads_sandbox, short_history: Path, monkeypatch
) -> None:
    ads_sandbox.configure(latency_s=0.02)
    # The one that finds the lock taken is retried: soon, so that its retry ends inside this
    # test. Sixty seconds later it planned a beat run in whatever test was running then.
    monkeypatch.setattr(tasks, "DETECT_GAPS_RETRY_S", 1)
    ended: queue.Queue[str] = queue.Queue()

    def detection_ended(sender: Any = None, state: str | None = None, **kwargs: Any) -> None:
        if sender is not None and sender.name == tasks.detect_gaps.name:
            ended.put(state or "")

    task_postrun.connect(detection_ended, weak=False)
    try:
        tasks.detect_gaps.delay()
        tasks.detect_gaps.delay()
        finished = 0
        while finished < 2:  # a retry is not an end: the retried one ends later
            finished += ended.get(timeout=60) != "RETRY"
    finally:
        task_postrun.disconnect(detection_ended)
    # Both have planned and sent whatever they would: a second fan-out would be a second run.
    runs = list(SyncRun.objects.filter(planned__gt=0))
    assert len(runs) == 1
    wait_for_run(runs[0].pk)

    fetched = fetched_days(ads_sandbox.calls())
    assert len(fetched) == 2 * 8
    assert set(fetched.values()) == {1}


def test_the_planning_lock_falls_back_to_postgresql_when_redis_is_down(settings) -> None:
    caches = {"default": {**django_settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    settings.CACHES = caches
    seen: list[bool] = []

    def second_planner() -> None:
        with locks.planning_lock() as lock:
            seen.append(bool(lock))
        connection.close()

    with locks.planning_lock() as first:
        thread = threading.Thread(target=second_planner)
        thread.start()
        thread.join()
        assert first.still_held()
    assert (bool(first), seen) == (True, [False])
    with locks.planning_lock() as again:
        assert again


def test_the_postgresql_planning_lock_waits_as_long_as_asked(settings) -> None:
    """--lock-wait was ignored with Redis down: a second planner gave up at once."""
    caches = {"default": {**django_settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    settings.CACHES = caches
    holding, released = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first_planner() -> None:
        with locks.planning_lock() as lock:
            seen.append(bool(lock))
            holding.set()
            released.wait(10)
        connection.close()

    thread = threading.Thread(target=first_planner)
    thread.start()
    assert holding.wait(10)
    with locks.planning_lock() as busy:
        assert not busy
    threading.Timer(0.3, released.set).start()  # let go while the second one waits
    with locks.planning_lock(wait_s=10) as waited:
        assert waited
    thread.join()
    assert seen == [True]


def test_a_planner_waiting_for_the_postgresql_lock_tries_again_after_pauses_until_its_wait_is_over(
    monkeypatch,
) -> None:
    """Not a loop that spins a core and a database connection for the whole wait, nor one that
    oversleeps it (on a clock of the test's own: tests/clocks.py)."""
    clock = FakeClock()
    monkeypatch.setattr(locks, "time", clock)
    with other_connection() as other_planner:
        other_planner.execute("SELECT pg_advisory_lock(%s)", [locks.PLANNING_ADVISORY_KEY])
        with locks.advisory_lock(wait_s=1) as got:
            assert not got
    assert len(clock.naps) > 1
    assert sum(clock.naps) == pytest.approx(1, abs=0.15)


def _planning_in_a_thread(
    plans: list[services.Plan | None], lock_wait_s: float
) -> threading.Thread:
    """A backfill's planning started in a thread of its own (and its own database connection),
    waiting up to `lock_wait_s` for the planning lock; its plan is appended to `plans`."""

    def plan() -> None:
        try:
            plans.append(tasks.run_start(trigger="backfill", lock_wait_s=lock_wait_s))
        finally:
            connection.close()

    thread = threading.Thread(target=plan)
    thread.start()
    return thread


def test_a_planning_asked_to_wait_for_the_lock_plans_once_the_other_one_lets_go(
    one_account, monkeypatch, short_history: Path
) -> None:
    """backfill_ads waits --lock-wait (30 s by default) for another planning, the daily
    detection's say: a wait dropped on the way to the lock made it give up at once."""
    sent = _record_fan_out(monkeypatch)
    refused = threading.Event()
    plans: list[services.Plan | None] = []
    try_once = RedisLock.do_acquire

    def do_acquire(self: RedisLock, token: bytes) -> bool:
        got = bool(try_once(self, token))
        if not got:
            refused.set()
        return got

    with locks.planning_lock() as held:
        assert held
        monkeypatch.setattr(RedisLock, "do_acquire", do_acquire)
        thread = _planning_in_a_thread(plans, lock_wait_s=60)
        assert refused.wait(30)  # it found the lock held: let go now
    thread.join(60)
    assert not thread.is_alive()
    (plan,) = plans
    assert plan is not None
    assert len(plan.days) == len(sent) == 8


def test_a_planning_lock_asked_to_wait_a_second_or_less_waits(monkeypatch) -> None:
    """--lock-wait takes fractions of a second (arguments.seconds): a wait of up to one second
    is a wait too, not a single try."""
    try_once = RedisLock.do_acquire
    with locks.planning_lock() as held:
        assert held

        def do_acquire(self: RedisLock, token: bytes) -> bool:
            got = bool(try_once(self, token))
            if not got:
                held.redis_lock.release()  # the other planning lets go as this one waits
            return got

        monkeypatch.setattr(RedisLock, "do_acquire", do_acquire)
        with locks.planning_lock(wait_s=1) as waited:
            assert waited


def test_a_planning_that_waits_for_the_lock_in_vain_gives_up_when_its_wait_is_over(
    one_account, short_history: Path
) -> None:
    """--lock-wait bounds the wait: without its timeout, Redis' lock waited for as long as the
    other planning held the lock, a crashed one's for its whole TTL."""
    plans: list[services.Plan | None] = []
    with locks.planning_lock() as held:
        assert held
        thread = _planning_in_a_thread(plans, lock_wait_s=0.2)
        thread.join(30)
        assert not thread.is_alive()
    assert plans == [None]


def test_a_postgresql_planning_lock_got_at_once_is_free_again_once_let_go(settings) -> None:
    """A planner asked to wait that got it at its first try took it again at every poll until
    its wait ran out, and letting go once left the session holding it: every other planner
    was locked out until that connection closed."""
    caches = {"default": {**django_settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    settings.CACHES = caches
    with locks.planning_lock(wait_s=0.5) as lock:
        assert lock
    assert _advisory_lock_taken_by_another_planner()


def test_a_postgresql_planning_lock_is_let_go_when_its_planning_raises() -> None:
    """A planning that fails under the lock (a bug, a lost connection) lets it go too: kept by
    the session, it would lock every other planner out until that connection closed."""

    def failing_planning() -> None:
        with locks.advisory_lock() as got:
            assert got
            raise RuntimeError("a planning bug")

    with pytest.raises(RuntimeError, match="a planning bug"):
        failing_planning()
    assert _advisory_lock_taken_by_another_planner()


def _advisory_lock_taken_by_another_planner() -> bool:
    """Whether a planner on another connection (a thread's) gets the PostgreSQL lock at once."""
    taken: list[bool] = []

    def other_planner() -> None:
        with locks.advisory_lock() as got:
            taken.append(got)
        connection.close()

    thread = threading.Thread(target=other_planner)
    thread.start()
    thread.join(10)
    return taken == [True]


def test_with_redis_down_a_planning_stores_its_plan_under_the_postgresql_lock(
    settings, one_account: str, short_history: Path, monkeypatch
) -> None:
    """The planner renews its lock after each account lookup: the PostgreSQL lock that stands
    in for Redis' has nothing to renew, and renewing it as the Redis one failed every planning
    while Redis was down."""
    caches = {"default": {**django_settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    settings.CACHES = caches
    sent = _record_fan_out(monkeypatch)
    plan = tasks.run_start(trigger="backfill")
    assert plan is not None
    assert len(plan.days) == len(sent) == 8


@pytest.mark.usefixtures("sync_worker")
def test_transient_faults_and_an_expiring_token_still_finish_every_day_once(
    ads_sandbox, short_history: Path
) -> None:
    ads_sandbox.configure(
        fail_first={"internal": 1, "quota": 1},
        quota_retry_delay_s=0.05,
        token_ttl_s=0.5,
    )

    run = _detect()

    assert (run.done, run.failed, run.deferred) == (16, 0, 0)
    assert_complete(ads_sandbox.customers, short_history, 8)
    outcomes = [c["outcome"] for c in ads_sandbox.calls() if c.get("query") == "campaign"]
    assert outcomes.count("ok") == 16


@pytest.mark.usefixtures("sync_worker")
def test_a_daily_quota_defers_the_rest_of_the_run_and_the_next_detection_completes_it(
    ads_sandbox, short_history: Path
) -> None:
    daily_quota_from_the_first_fetch(ads_sandbox)

    run = _detect()

    assert run.done + run.deferred == run.planned == 16
    assert run.deferred >= 14  # stopped at once instead of burning quota on every date
    assert len([c for c in ads_sandbox.calls() if c.get("query") == "campaign"]) <= 3
    ads_sandbox.reset()

    second = _detect()

    assert second.failed == second.deferred == 0
    assert_complete(ads_sandbox.customers, short_history, 8)
    assert CampaignDayMetric.objects.count() == sum(
        len(expected_rows(c, d))
        for w in selectors.sync_windows(customer_ids=list(ads_sandbox.customers))
        for c in [w.customer_id]
        for d in days_between(w.start, w.end)
    )


# The fan-out's failures: the broker gone during it, Ctrl-C (backfill_ads runs the fan-out in
# its own process), and a bug of the project's own.
_UNPUBLISHABLE = KombuOperationalError("[Errno 111] Connection refused")
_INTERRUPTED = KeyboardInterrupt()
_BROKEN = TypeError("Object of type date is not JSON serializable")


@pytest.mark.parametrize(
    "error",
    [
        _UNPUBLISHABLE,
        # Caught as an Exception only, an interrupted backfill left its days pending in an open
        # run: in flight, planned by nobody, for 12 hours.
        _INTERRUPTED,
    ],
    ids=["broker", "ctrl-c"],
)
def test_a_fan_out_that_is_not_sent_fails_its_days_so_the_next_plan_takes_them(
    monkeypatch, tmp_path: Path, error: BaseException
) -> None:
    AdsAccount.objects.create(customer_id="1111111111", time_zone="UTC", currency_code="EUR")
    monkeypatch.setattr(tasks, "group", group_raising(error))
    with pytest.raises(type(error)):
        tasks.run_start(
            trigger="backfill", customer_ids=["1111111111"], days=2, output_dir=tmp_path
        )
    run = SyncRun.objects.get()
    assert (run.planned, run.failed, run.finished_at is not None) == (2, 2, True)
    assert set(SyncDay.objects.values_list("state", flat=True)) == {SyncDay.State.FAILED}
    monkeypatch.undo()

    again = services.run_plan(
        trigger="backfill", customer_ids=["1111111111"], days=2, output_dir=tmp_path
    )
    assert again is not None
    assert len(again.days) == 2


@pytest.mark.parametrize(
    ("error", "traceback"),
    [(_UNPUBLISHABLE, False), (_INTERRUPTED, False), (_BROKEN, True)],
    ids=["broker", "ctrl-c", "bug"],
)
def test_a_fan_out_that_is_not_sent_logs_a_traceback_only_for_an_unexpected_error(
    one_account, monkeypatch, short_history: Path, caplog, error: BaseException, traceback: bool
) -> None:
    """An unreachable broker and Ctrl-C are said in full by the line (and by backfill_ads' own
    message): a traceback there is noise. Anything else is a bug, and a line without its
    traceback does not say where it came from."""
    monkeypatch.setattr(tasks, "group", group_raising(error))
    with pytest.raises(type(error)):
        tasks.run_start(trigger="backfill")
    (logged,) = [r for r in caplog.records if "fan-out failed" in r.getMessage()]
    assert bool(logged.exc_info) is traceback


def test_the_daily_detection_is_retried_while_a_backfill_holds_the_planning_lock() -> None:
    with locks.planning_lock() as acquired:
        assert acquired
        with pytest.raises(Retry):
            tasks.detect_gaps()
    assert not SyncRun.objects.exists()


def test_a_lock_that_cannot_be_checked_is_not_taken_as_still_held() -> None:
    # Redis gone mid-planning: another planner falls back to the advisory lock, which this
    # planning does not hold, so it must not store its plan.
    unreachable = redis.Redis(host="127.0.0.1", port=CLOSED_PORT).lock("ads-test-lock")
    assert not locks.PlanningLock(acquired=True, redis_lock=unreachable).still_held()


def test_a_detection_out_of_time_in_an_account_lookup_is_retried(monkeypatch, settings) -> None:
    settings.GOOGLE_ADS_CUSTOMER_IDS = ["1234567890"]  # a new account: looked up first

    def lookup_cut_short(customer_id: str, **kwargs: Any) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(google_ads, "get_account", lookup_cut_short)
    with pytest.raises(Retry):
        tasks.detect_gaps()
    assert not SyncRun.objects.exists()
    with locks.planning_lock() as lock:  # released on the way out
        assert lock


def _one_pending_day(output_dir: Path) -> tuple[SyncRun, dt.date]:
    """A run of one pending day of account 1111111111, its task not run yet."""
    day = dt.date(2025, 1, 10)
    run = SyncRun.objects.create(trigger="backfill", output_dir=str(output_dir), planned=1)
    SyncDay.objects.create(customer_id="1111111111", date=day, run=run)
    return run, day


@pytest.mark.parametrize(
    "gone",
    [
        OperationalError("the connection is closed"),
        # Django's word for a connection already closed under it (psycopg's InterfaceError).
        InterfaceError("connection already closed"),
    ],
    ids=["operational", "interface"],
)
def test_a_day_whose_failure_cannot_be_recorded_is_tried_again_not_left_running(
    monkeypatch, tmp_path: Path, gone: Exception
) -> None:
    """PostgreSQL restarting: acknowledged, the task left its day `running` and its run open
    for 12 hours."""
    run, day = _one_pending_day(tmp_path)

    def database_gone(**kwargs: Any) -> None:
        raise gone

    monkeypatch.setattr(services, "day_sync", database_gone)
    monkeypatch.setattr(services, "day_fail", database_gone)
    with pytest.raises(Retry):
        tasks.sync_day("1111111111", day.isoformat(), run.pk)

    monkeypatch.undo()  # the database is back: the retry records what happened
    monkeypatch.setattr(services, "day_sync", lambda **kwargs: 1 / 0)
    assert tasks.sync_day("1111111111", day.isoformat(), run.pk) == "failed"
    run.refresh_from_db()
    assert (run.failed, run.finished_at is not None) == (1, True)


def test_a_failure_not_recorded_for_another_reason_than_the_database_is_raised_not_retried(
    monkeypatch, tmp_path: Path
) -> None:
    """Only a lost connection is waited out: a bug in recording the failure, retried every 30 s
    for an hour, was logged each time as "the database is unreachable"."""
    run, day = _one_pending_day(tmp_path)

    def recording_bug(**kwargs: Any) -> None:
        raise RuntimeError("a recording bug")

    monkeypatch.setattr(services, "day_sync", lambda **kwargs: 1 / 0)
    monkeypatch.setattr(services, "day_fail", recording_bug)
    with pytest.raises(RuntimeError, match="a recording bug"):
        tasks.sync_day("1111111111", day.isoformat(), run.pk)


def test_a_day_whose_failure_cannot_be_recorded_warns_that_the_database_is_unreachable(
    monkeypatch, tmp_path: Path, caplog
) -> None:
    """The worker's log is where an operator learns why the day is tried again: Celery's own
    line says only when ("Retry in 30s"), and the crash logged before it names the day's error,
    not the recording's."""
    run, day = _one_pending_day(tmp_path)

    def database_gone(**kwargs: Any) -> None:
        raise OperationalError("the connection is closed")

    monkeypatch.setattr(services, "day_sync", database_gone)
    monkeypatch.setattr(services, "day_fail", database_gone)
    caplog.set_level(logging.WARNING, logger=tasks.__name__)
    with pytest.raises(Retry):
        tasks.sync_day("1111111111", day.isoformat(), run.pk)
    (logged,) = [
        r for r in caplog.records if r.name == tasks.__name__ and r.levelno == logging.WARNING
    ]
    assert logged.getMessage() == (
        f"ads sync: 1111111111 {day}: the database is unreachable; the day is tried again in "
        f"{tasks.SYNC_DAY_DATABASE_RETRY_S} s"
    )


def test_a_day_that_crashed_is_logged_with_its_traceback(
    monkeypatch, tmp_path: Path, caplog
) -> None:
    """The day keeps only the exception's type and message (its last_error): the log line is
    where an operator finds where a bug was raised."""
    run, day = _one_pending_day(tmp_path)
    monkeypatch.setattr(services, "day_sync", lambda **kwargs: 1 / 0)
    assert tasks.sync_day("1111111111", day.isoformat(), run.pk) == "failed"
    (logged,) = [r for r in caplog.records if r.getMessage().endswith(" crashed")]
    assert logged.exc_info is not None
    assert logged.exc_info[0] is ZeroDivisionError
    failed = SyncDay.objects.get(run=run)
    assert (failed.state, failed.last_error) == ("failed", "ZeroDivisionError: division by zero")


def test_a_sync_day_may_spend_the_clients_whole_budget_before_its_soft_time_limit() -> None:
    """Under the project's default limits (CELERY_TASK_SOFT_TIME_LIMIT: 300 s), a fetch still
    within its retry budget was cut short and its day failed. A limit at the budget itself cut
    short a day that spent it all, as it stored the rows and wrote the CSV file."""
    assert tasks.sync_day.soft_time_limit > google_ads.fetch_budget_s()


def test_a_detection_may_spend_a_planning_locks_whole_ttl_before_its_soft_time_limit() -> None:
    """One new account's lookup may take the lock's TTL; the default 300 s cut every such
    detection short. A limit at the TTL itself cut it short as it went on to store its plan."""
    assert tasks.detect_gaps.soft_time_limit > locks.planning_lock_ttl_s()


def test_a_task_at_its_soft_time_limit_is_left_time_to_record_it_before_its_hard_one() -> None:
    """At the soft limit a day records its failure, and a detection fails the days it stored,
    lets go of the planning lock and is retried. A hard limit at the same time killed the
    process first: the day stayed `running`, or the detection was not tried again that day."""
    for task in (tasks.sync_day, tasks.detect_gaps):
        assert task.time_limit > task.soft_time_limit, task.name


def test_the_daily_detection_outwaits_a_planning_lock_its_crashed_holder_left() -> None:
    """Such a lock lasts its TTL. Celery's default, 3 retries a minute apart, gave up the day's
    detection long before it expired."""
    assert tasks.detect_gaps.max_retries * tasks.DETECT_GAPS_RETRY_S >= locks.planning_lock_ttl_s()


def test_a_day_whose_failure_cannot_be_recorded_is_tried_again_for_an_hour() -> None:
    """Celery's default, 3 retries, gave a PostgreSQL restart a minute and a half before the day
    was left `running`, and its run open, for 12 hours."""
    assert tasks.sync_day.max_retries * tasks.sync_day.default_retry_delay >= 60 * 60


def test_a_day_whose_failure_cannot_be_recorded_is_tried_again_within_a_minute() -> None:
    """Left to Celery's default delay, 3 minutes, the day stayed `running` (and a backfill
    waited on it) for minutes after PostgreSQL was back."""
    assert tasks.sync_day.default_retry_delay <= 60


@pytest.mark.parametrize(
    "customer_id", ["../../../tmp/x", "1234567890\nx", "123456789", "12345678901", "", None]
)
def test_sync_day_refuses_a_customer_id_that_is_not_ten_digits_and_writes_nothing(
    customer_id, tmp_path: Path, caplog
) -> None:
    """A message put on the queue by hand (or a periodic task's args typed in the admin) wrote
    ledger and metric rows and a CSV folder under the raw string, then failed with an
    IntegrityError and left the day `running`."""
    run = SyncRun.objects.create(trigger="backfill", output_dir=str(tmp_path), planned=1)
    with caplog.at_level(logging.ERROR, logger="ads_sync.tasks"):
        assert tasks.sync_day(customer_id, "2025-01-10", run.pk) == "refused"
    assert "sync_day refused" in caplog.text
    assert (SyncDay.objects.count(), CampaignDayMetric.objects.count()) == (0, 0)
    assert not AdsAccount.objects.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("date_iso", ["2025-13-01", "yesterday", "", 20250110, None])
def test_sync_day_refuses_a_date_that_is_not_one_and_writes_nothing(
    date_iso, tmp_path: Path
) -> None:
    """It stopped with fromisoformat's traceback."""
    run = SyncRun.objects.create(trigger="backfill", output_dir=str(tmp_path), planned=1)
    assert tasks.sync_day("1111111111", date_iso, run.pk) == "refused"
    assert not SyncDay.objects.exists()


@pytest.mark.parametrize("customer_id", ["12-3456-7890", " 1234567890\n"])
def test_a_sync_day_takes_a_customer_id_as_the_ledger_keys_it(
    ads_sandbox, customer_id, tmp_path: Path
) -> None:
    day = dt.date(2025, 1, 10)
    run = SyncRun.objects.create(trigger="backfill", output_dir=str(tmp_path), planned=1)
    SyncDay.objects.create(customer_id="1234567890", date=day, run=run)

    assert tasks.sync_day(customer_id, day.isoformat(), run.pk) == SyncDay.State.DONE

    assert list(SyncDay.objects.values_list("customer_id", "state")) == [
        ("1234567890", SyncDay.State.DONE)
    ]
    assert set(CampaignDayMetric.objects.values_list("customer_id", flat=True)) <= {"1234567890"}
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["1234567890"]
    assert (tmp_path / "1234567890" / "2025-01-10.csv").exists()


@pytest.mark.parametrize(
    ("trigger", "since"), [("beat", "yesterday"), ("beat", 5), ("x" * 40, None), ("manual", None)]
)
def test_detect_gaps_refuses_a_trigger_or_since_it_cannot_take_and_plans_nothing(
    trigger, since, caplog
) -> None:
    with caplog.at_level(logging.ERROR, logger="ads_sync.tasks"):
        assert tasks.detect_gaps(trigger=trigger, since=since) is None
    assert "detect_gaps refused" in caplog.text
    assert not SyncRun.objects.exists()


def test_a_csv_that_cannot_be_written_fails_the_day_without_counting_toward_its_backoff(
    ads_sandbox, tmp_path: Path
) -> None:
    """The fetch worked: a broken folder is not the account's failure. Counted, three of them
    kept the day from the daily detection for days after the folder was fixed."""
    customer_id = ads_sandbox.customers[0]
    day = dt.date(2025, 1, 10)
    (tmp_path / "not-a-folder").write_text("")
    run = SyncRun.objects.create(
        trigger="beat", output_dir=str(tmp_path / "not-a-folder"), planned=1
    )
    SyncDay.objects.create(customer_id=customer_id, date=day, run=run)

    outcome = services.day_sync(customer_id=customer_id, day=day, run_id=run.pk)

    entry = SyncDay.objects.get(customer_id=customer_id, date=day)
    assert (outcome.state, entry.state) == (SyncDay.State.FAILED, SyncDay.State.FAILED)
    assert entry.last_error.startswith("CSV file not written: ")
    assert (entry.failures, entry.retry_after) == (0, None)
    assert CampaignDayMetric.objects.filter(customer_id=customer_id, date=day).count() == len(
        expected_rows(customer_id, day)
    )
    assert SyncRun.objects.get(pk=run.pk).finished_at is not None


def test_a_folder_that_cannot_be_written_stops_the_plan_before_any_api_call(
    ads_sandbox, tmp_path: Path
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    with pytest.raises(FileExistsError, match="not-a-folder"):
        services.run_plan(trigger="beat", output_dir=tmp_path / "not-a-folder")
    assert ads_sandbox.calls() == []
    assert not SyncRun.objects.exists()


def test_a_detection_whose_folder_cannot_be_written_is_retried_not_lost(
    settings, tmp_path: Path
) -> None:
    """A mount not ready at the daily hour: the task failed, with no run and no retry."""
    (tmp_path / "not-a-folder").write_text("")
    settings.ADS_SYNC_OUTPUT_DIR = tmp_path / "not-a-folder"
    with pytest.raises(Retry):
        tasks.detect_gaps()
    assert not SyncRun.objects.exists()


def test_a_detection_whose_folder_cannot_be_written_says_so_in_an_error(
    settings, tmp_path: Path, caplog
) -> None:
    """Beat retries it every minute with nobody watching: the error, naming the folder's fault,
    is the only word that the day's detection waits on a mount."""
    (tmp_path / "not-a-folder").write_text("")
    settings.ADS_SYNC_OUTPUT_DIR = tmp_path / "not-a-folder"
    caplog.set_level(logging.WARNING, logger=tasks.__name__)
    with pytest.raises(Retry):
        tasks.detect_gaps()
    (logged,) = [
        r for r in caplog.records if r.name == tasks.__name__ and r.levelno >= logging.WARNING
    ]
    assert logged.levelno == logging.ERROR
    assert logged.getMessage().startswith("ads sync: the CSV folder cannot be written (")
    assert "not-a-folder" in logged.getMessage()


def test_a_retried_detection_stops_if_another_run_of_its_trigger_started_meanwhile() -> None:
    since = (timezone.now() - dt.timedelta(minutes=1)).isoformat()
    SyncRun.objects.create(trigger=SyncRun.Trigger.BEAT, output_dir="out")  # the other beat's
    assert tasks.detect_gaps(trigger="beat", since=since) is None
    assert SyncRun.objects.count() == 1


def test_a_retried_detection_is_not_stopped_by_a_run_of_its_trigger_from_before_its_first_try(
    one_account, monkeypatch, short_history: Path
) -> None:
    """Yesterday's daily run did not do today's detection's work: only one started since
    shortly before the first try (a second beat's) did."""
    first_try = timezone.now() - dt.timedelta(minutes=1)
    yesterdays = SyncRun.objects.create(trigger=SyncRun.Trigger.BEAT, output_dir="out")
    SyncRun.objects.filter(pk=yesterdays.pk).update(started_at=first_try - dt.timedelta(days=1))
    sent = _record_fan_out(monkeypatch)
    run_id = tasks.detect_gaps(trigger="beat", since=first_try.isoformat())
    assert run_id is not None
    assert SyncRun.objects.get(pk=run_id).planned == len(sent) == 8


@pytest.fixture
def one_account(settings) -> str:
    """One configured account, already in the database: the planning looks nothing up."""
    settings.GOOGLE_ADS_CUSTOMER_IDS = ["1111111111"]
    AdsAccount.objects.create(customer_id="1111111111", time_zone="UTC", currency_code="EUR")
    return "1111111111"


def _record_fan_out(monkeypatch) -> list[object]:
    """The sync_day signatures that detect_gaps fans out, recorded instead of sent."""
    sent: list[object] = []

    class Recording:
        def __init__(self, signatures: object) -> None:
            sent.extend(signatures)  # type: ignore[call-overload]

        def apply_async(self) -> None:
            pass

    monkeypatch.setattr(tasks, "group", Recording)
    return sent


class _FanOutCutShort:
    """A `group` whose sending the soft time limit cuts short."""

    def __init__(self, signatures: object) -> None:
        pass

    def apply_async(self) -> None:
        raise SoftTimeLimitExceeded()


def _recorded_retries(monkeypatch) -> list[dict[str, Any]]:
    """detect_gaps' retries, recorded rather than sent: each its kwargs, as Celery sends them."""
    retries: list[dict[str, Any]] = []

    def retry(**options: Any) -> Retry:
        retries.append(options["kwargs"])
        return Retry()

    monkeypatch.setattr(tasks.detect_gaps, "retry", retry)
    return retries


def test_a_detection_cut_short_in_its_fan_out_plans_the_unsent_days_on_its_retry(
    one_account, monkeypatch, short_history: Path
) -> None:
    retries = _recorded_retries(monkeypatch)
    monkeypatch.setattr(tasks, "group", _FanOutCutShort)
    with pytest.raises(Retry):
        tasks.detect_gaps(trigger="beat")
    assert set(SyncDay.objects.values_list("state", flat=True)) == {SyncDay.State.FAILED}
    sent = _record_fan_out(monkeypatch)
    # The retry as Celery sends it: its own cut-short run is not "a run started meanwhile".
    (kwargs,) = retries
    run_id = tasks.detect_gaps(**kwargs)
    assert run_id is not None
    assert SyncRun.objects.get(pk=run_id).planned == len(sent) == 8


def test_a_detection_cut_short_still_stops_at_its_retry_for_another_beats_run(
    one_account, monkeypatch, short_history: Path
) -> None:
    """Its own runs are those it started at that try: another beat's run, stored just before,
    did this detection's work and is not one of them."""
    other_beats = SyncRun.objects.create(trigger=SyncRun.Trigger.BEAT, output_dir="out")
    retries = _recorded_retries(monkeypatch)
    missing_days = selectors.missing_days
    monkeypatch.setattr(selectors, "missing_days", _soft_limit_now)
    with pytest.raises(Retry):
        tasks.detect_gaps(trigger="beat")
    monkeypatch.setattr(selectors, "missing_days", missing_days)  # the retry has the time
    (kwargs,) = retries
    assert other_beats.pk not in kwargs["own_runs"]
    sent = _record_fan_out(monkeypatch)
    assert tasks.detect_gaps(**kwargs) is None
    assert sent == []


def test_a_detection_cut_short_twice_still_plans_at_its_third_try(
    one_account, monkeypatch, short_history: Path
) -> None:
    """Each retry carries every run the detection started, not only its last try's: the first
    try's run, left out, stopped the third try as "a run started meanwhile", and the days both
    tries failed waited for the next day's detection."""

    retries = _recorded_retries(monkeypatch)
    monkeypatch.setattr(tasks, "group", _FanOutCutShort)
    with pytest.raises(Retry):
        tasks.detect_gaps(trigger="beat")
    with pytest.raises(Retry):
        tasks.detect_gaps(**retries[-1])
    sent = _record_fan_out(monkeypatch)
    run_id = tasks.detect_gaps(**retries[-1])
    assert run_id is not None
    assert SyncRun.objects.get(pk=run_id).planned == len(sent) == 8


def _detect_cut_short_before_its_fan_out(monkeypatch, *, old_runs: Sequence[int] = ()) -> None:
    """Run a beat detection that the test cuts short: it is retried, sends no task, and every
    day it planned (outside `old_runs`) is failed, not pending: the retry plans them at once."""
    sent = _record_fan_out(monkeypatch)
    monkeypatch.setattr(tasks.detect_gaps, "retry", lambda **options: Retry())
    with pytest.raises(Retry):
        tasks.detect_gaps(trigger="beat")
    assert sent == []
    new_days = SyncDay.objects.exclude(run__in=old_runs)
    assert set(new_days.values_list("state", flat=True)) == {SyncDay.State.FAILED}


def _soft_limit_now(**kwargs: Any) -> None:
    raise SoftTimeLimitExceeded()


# Between statements, as monkeypatched; or mid-statement, from a signal, as a worker gets it.
# That left the connection in the middle of the statement, and the clean-up failed with it.
CUT_SHORT = pytest.mark.parametrize(
    "cut_short", [_soft_limit_now, slow_statement_cut_short], ids=["between", "mid-statement"]
)


@CUT_SHORT
def test_a_detection_out_of_time_in_a_planning_statement_is_retried(
    one_account, monkeypatch, short_history: Path, cut_short: Callable[..., None]
) -> None:
    monkeypatch.setattr(selectors, "missing_days", cut_short)
    with pytest.raises(Retry):
        tasks.detect_gaps(trigger="beat")
    with locks.planning_lock() as lock:  # released on the way out
        assert lock


def test_a_detection_whose_planning_fails_otherwise_fails_with_that_error_not_retried(
    one_account, monkeypatch, short_history: Path
) -> None:
    """Only another planner's lock, the time limit and a CSV folder that cannot be written are
    tried again: any other error (a bug) fails the task with its own traceback, instead of
    being retried for half an hour under one of their log lines."""

    def planning_bug(**kwargs: Any) -> None:
        raise RuntimeError("a planning bug")

    monkeypatch.setattr(selectors, "missing_days", planning_bug)
    with pytest.raises(RuntimeError, match="a planning bug"):
        tasks.detect_gaps(trigger="beat")


@CUT_SHORT
def test_a_detection_cut_short_after_its_plan_is_stored_leaves_no_day_or_run_hanging(
    one_account, monkeypatch, short_history: Path, cut_short: Callable[..., None]
) -> None:
    # The soft time limit lands after the plan's commit and before the fan-out, in the first
    # totals file written for the runs whose stale days this plan took over.
    (window,) = selectors.sync_windows(customer_ids=["1111111111"])
    old_runs = []
    for day in (window.start, window.start + dt.timedelta(days=1)):
        old = SyncRun.objects.create(trigger="backfill", output_dir=str(short_history), planned=1)
        stale = SyncDay.objects.create(
            customer_id="1111111111", date=day, state=SyncDay.State.PENDING, run=old
        )
        SyncDay.objects.filter(pk=stale.pk).update(
            updated_at=timezone.now() - dt.timedelta(hours=13)
        )
        old_runs.append(old.pk)

    monkeypatch.setattr(services, "totals_csv_write", cut_short)
    _detect_cut_short_before_its_fan_out(monkeypatch, old_runs=old_runs)
    # The runs it took days from are closed: a backfill waiting on one is not left waiting.
    still_open = SyncRun.objects.filter(pk__in=old_runs, finished_at__isnull=True)
    assert not still_open.exists()


def test_a_time_limit_handled_as_the_plans_commit_returns_fails_the_stored_days(
    one_account, monkeypatch, short_history: Path
) -> None:
    # A signal (the soft limit's SIGUSR1, Ctrl-C) arriving during COMMIT is raised as libpq
    # returns, inside the transaction's exit, after the commit succeeded.
    commit, take_over = connection.commit, services._take_over
    armed: list[bool] = []

    def arming_take_over(**kwargs: Any) -> Any:
        armed.append(True)  # the next commit is the plan's
        return take_over(**kwargs)

    def commit_then_signal() -> None:
        commit()
        if armed:
            armed.clear()
            raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, "_take_over", arming_take_over)
    monkeypatch.setattr(connection, "commit", commit_then_signal)
    _detect_cut_short_before_its_fan_out(monkeypatch)


def test_an_older_runs_unwritable_folder_does_not_undo_a_good_plan(
    one_account, monkeypatch, short_history: Path
) -> None:
    (window,) = selectors.sync_windows(customer_ids=["1111111111"])
    (short_history / "a-file").write_text("")  # an old --output-dir that cannot be written now
    old = SyncRun.objects.create(
        trigger="backfill", output_dir=str(short_history / "a-file" / "out"), planned=1
    )
    stale = SyncDay.objects.create(
        customer_id="1111111111", date=window.start, state=SyncDay.State.PENDING, run=old
    )
    SyncDay.objects.filter(pk=stale.pk).update(updated_at=timezone.now() - dt.timedelta(hours=13))
    sent = _record_fan_out(monkeypatch)
    run_id = tasks.detect_gaps(trigger="beat")
    assert run_id is not None
    assert SyncRun.objects.get(pk=run_id).planned == len(sent) == 8
    assert SyncRun.objects.get(pk=old.pk).finished_at is not None


def test_a_time_limit_as_the_planning_lock_is_released_fails_the_stored_days(
    one_account, monkeypatch, short_history: Path
) -> None:
    planning_lock = locks.planning_lock

    @contextlib.contextmanager
    def cut_short_on_release(**kwargs: Any) -> Iterator[Any]:
        with planning_lock(**kwargs) as lock:
            yield lock
        raise SoftTimeLimitExceeded()  # the release was a network call: the limit struck there

    monkeypatch.setattr(locks, "planning_lock", cut_short_on_release)
    _detect_cut_short_before_its_fan_out(monkeypatch)


def test_a_retried_detection_stops_for_a_run_whose_long_planning_began_before_its_window(
    one_account, monkeypatch, short_history: Path
) -> None:
    # Another beat's planning took the lock 7 minutes ago (slow new accounts) and stored its
    # run just now: that run did this detection's work.
    now = timezone.now()
    SyncRun.objects.create(
        trigger="beat",
        output_dir=str(short_history),
        planning_started_at=now - dt.timedelta(minutes=7),
    )
    sent = _record_fan_out(monkeypatch)
    first_try = now - dt.timedelta(minutes=1)
    assert tasks.detect_gaps(trigger="beat", since=first_try.isoformat()) is None
    assert sent == []


def test_a_retried_detection_plans_after_a_backfill_released_the_lock(
    one_account, monkeypatch, short_history: Path
) -> None:
    since = (timezone.now() - dt.timedelta(minutes=1)).isoformat()
    SyncRun.objects.create(trigger=SyncRun.Trigger.BACKFILL, output_dir=str(short_history))
    sent = _record_fan_out(monkeypatch)
    run_id = tasks.detect_gaps(trigger="beat", since=since)
    assert run_id is not None
    assert SyncRun.objects.get(pk=run_id).planned == len(sent) == 8


def _lost_run(customer_id: str, output_dir: Path, *, quiet_for: dt.timedelta) -> SyncRun:
    """A run of three pending days whose tasks never reached the broker, last moved `quiet_for`
    ago (as the daily detection's fan-out lost with a broker's data)."""
    moved = timezone.now() - quiet_for
    run = SyncRun.objects.create(trigger="beat", output_dir=str(output_dir), planned=3)
    SyncRun.objects.filter(pk=run.pk).update(started_at=moved)
    day = selectors.account_yesterday(account=services.account_ensure(customer_id=customer_id))
    for back in range(3):
        SyncDay.objects.create(customer_id=customer_id, date=day - dt.timedelta(days=back), run=run)
    SyncDay.objects.filter(run=run).update(updated_at=moved)
    return run


@pytest.mark.usefixtures("sync_worker")
def test_a_runs_lost_tasks_are_sent_again_at_the_second_check(ads_sandbox, tmp_path: Path) -> None:
    """With no backfill waiting on it, a run whose tasks were lost stayed open, its days
    pending, until a plan took them over 12 hours later (the next day's detection)."""
    run = _lost_run(ads_sandbox.customers[0], tmp_path, quiet_for=tasks.LOST_AFTER * 2)

    assert tasks.resend_lost() == 0  # suspected: a message may be on its way to a worker
    assert tasks.resend_lost() == 3
    finished = wait_for_run(run.pk)
    assert (finished.done, finished.failed) == (3, 0)
    assert len(fetched_days(ads_sandbox.calls())) == 3


def test_only_the_unsettled_days_of_a_run_are_sent_again(
    one_account: str, tmp_path: Path, monkeypatch
) -> None:
    run = _lost_run(
        one_account, tmp_path, quiet_for=dt.timedelta(seconds=tasks.SYNC_DAY_TIME_LIMIT_S * 2)
    )
    pending, running, done = SyncDay.objects.filter(run=run).order_by("-date")
    SyncDay.objects.filter(pk=running.pk).update(state=SyncDay.State.RUNNING)
    SyncDay.objects.filter(pk=done.pk).update(state=SyncDay.State.DONE)
    sent = _record_fan_out(monkeypatch)
    assert tasks.resend_unsettled(run_ids=[run.pk]) == 2
    assert [s.args[1] for s in sent] == [pending.date.isoformat(), running.date.isoformat()]


def test_the_days_of_a_run_are_sent_again_newest_first(tmp_path: Path, monkeypatch) -> None:
    """In the order a plan sends them (selectors.missing_days): the latest days, those read
    first, are fetched first, whatever order the ledger stored them in."""
    run = SyncRun.objects.create(trigger="backfill", output_dir=str(tmp_path), planned=3)
    days = [dt.date(2025, 1, n) for n in (1, 2, 3)]  # stored oldest first
    for day in days:
        SyncDay.objects.create(customer_id="1111111111", date=day, run=run)
    sent = _record_fan_out(monkeypatch)
    assert tasks.resend_unsettled(run_ids=[run.pk]) == 3
    assert [s.args[1] for s in sent] == [day.isoformat() for day in reversed(days)]


def test_days_sent_again_are_said_in_the_log_with_their_run_and_number(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    """resend_lost sends them from beat, with nobody watching: the warning is the only trace
    that a run's tasks were lost."""
    run = SyncRun.objects.create(trigger="beat", output_dir=str(tmp_path), planned=2)
    for day in (dt.date(2025, 1, 1), dt.date(2025, 1, 2)):
        SyncDay.objects.create(customer_id="1111111111", date=day, run=run)
    _record_fan_out(monkeypatch)
    caplog.set_level(logging.INFO, logger=tasks.__name__)
    assert tasks.resend_unsettled(run_ids=[run.pk]) == 2
    (logged,) = [r for r in caplog.records if "sent again" in r.getMessage()]
    assert logged.levelno == logging.WARNING
    assert f"run(s) {run.pk}: 2 day(s)" in logged.getMessage()


def test_only_the_days_of_the_runs_named_are_sent_again(
    one_account: str, tmp_path: Path, monkeypatch
) -> None:
    """Another run's pending days may well have their tasks queued: a backfill sends again
    only those of the run it found lost."""
    lost = _lost_run(one_account, tmp_path, quiet_for=tasks.LOST_AFTER * 2)
    other = SyncRun.objects.create(trigger="backfill", output_dir=str(tmp_path), planned=1)
    SyncDay.objects.create(customer_id="2222222222", date=dt.date(2025, 1, 10), run=other)
    sent = _record_fan_out(monkeypatch)
    assert tasks.resend_unsettled(run_ids=[lost.pk]) == 3
    assert {s.args[2] for s in sent} == {lost.pk}


def test_a_run_sent_again_is_suspected_afresh_before_it_is_sent_a_second_time(
    one_account: str, tmp_path: Path, monkeypatch
) -> None:
    """Its suspicion ends as its days are sent: were they lost again, the next check sent them
    again at once, every ten minutes, instead of giving the sent tasks a check to show up."""
    _lost_run(one_account, tmp_path, quiet_for=tasks.LOST_AFTER * 2)
    monkeypatch.setattr(tasks.broker, "tasks_lost", lambda queue, run_ids: True)
    sent = _record_fan_out(monkeypatch)
    assert [tasks.resend_lost() for _ in range(4)] == [0, 3, 0, 3]
    assert len(sent) == 6


def test_a_lost_run_whose_days_were_left_running_is_sent_again(
    one_account: str, tmp_path: Path, monkeypatch
) -> None:
    """Its worker died with the days under way, and the broker lost their messages: no task
    will settle them, and the run is as lost as one whose days are pending."""
    quiet_for = max(tasks.LOST_AFTER, dt.timedelta(seconds=tasks.SYNC_DAY_TIME_LIMIT_S)) * 2
    run = _lost_run(one_account, tmp_path, quiet_for=quiet_for)
    SyncDay.objects.filter(run=run).update(state=SyncDay.State.RUNNING)  # updated_at kept
    monkeypatch.setattr(tasks.broker, "tasks_lost", lambda queue, run_ids: True)
    sent = _record_fan_out(monkeypatch)
    assert [tasks.resend_lost(), tasks.resend_lost()] == [0, 3]
    assert {s.args[2] for s in sent} == {run.pk}


def test_a_run_found_lost_for_the_first_time_waits_a_check_whatever_other_run_is_suspected(
    one_account: str, tmp_path: Path, monkeypatch
) -> None:
    """Each run has its own suspicion: one kept for all of them sent a run found lost for the
    first time at once, while its tasks may still be on their way, because another run had
    been suspected at the check before."""
    first = _lost_run(one_account, tmp_path, quiet_for=tasks.LOST_AFTER * 2)
    monkeypatch.setattr(tasks.broker, "tasks_lost", lambda queue, run_ids: True)
    sent = _record_fan_out(monkeypatch)
    assert tasks.resend_lost() == 0  # the first run suspected
    SyncDay.objects.filter(run=first).update(customer_id="2222222222")
    second = _lost_run(one_account, tmp_path, quiet_for=tasks.LOST_AFTER * 2)
    assert tasks.resend_lost() == 3
    assert {s.args[2] for s in sent} == {first.pk}
    assert tasks.resend_lost() == 3
    assert {s.args[2] for s in sent[3:]} == {second.pk}


def test_a_run_that_moved_since_it_was_found_lost_waits_a_check_more(
    one_account: str, tmp_path: Path, monkeypatch
) -> None:
    """Found lost, then a day of it settled (a task was alive after all), then quiet and lost
    again: not two checks in a row. The check in between saw it move and ended nothing, and the
    first suspicion, kept 25 minutes, had it sent again at once."""
    run = _lost_run(one_account, tmp_path, quiet_for=tasks.LOST_AFTER * 3)
    monkeypatch.setattr(tasks.broker, "tasks_lost", lambda queue, run_ids: True)
    sent = _record_fan_out(monkeypatch)
    assert tasks.resend_lost() == 0  # suspected
    settled = SyncDay.objects.filter(run=run).order_by("date").first()
    assert settled is not None
    SyncDay.objects.filter(pk=settled.pk).update(
        state=SyncDay.State.DONE, updated_at=timezone.now() - tasks.LOST_AFTER * 2
    )
    assert tasks.resend_lost() == 0  # found lost afresh
    assert tasks.resend_lost() == 2
    assert len(sent) == 2


def test_the_broker_is_asked_about_each_quiet_run_by_its_id(
    one_account: str, tmp_path: Path, monkeypatch
) -> None:
    """tasks_lost matches the run ids of the sync_day tasks workers hold: asked about anything
    else, it found none of a run's held tasks, and had them sent again."""
    run = _lost_run(one_account, tmp_path, quiet_for=tasks.LOST_AFTER * 2)
    asked: list[list[object]] = []
    monkeypatch.setattr(
        tasks.broker, "tasks_lost", lambda queue, run_ids: asked.append(list(run_ids)) or False
    )
    assert tasks.resend_lost() == 0
    assert asked == [[run.pk]]


def test_a_runs_suspicion_outlasts_the_wait_for_the_next_check(
    one_account: str, tmp_path: Path, monkeypatch
) -> None:
    """Kept for the cache's default 5 minutes, it was gone at every next check, 10 minutes
    later, and no lost run was ever sent again."""
    run = _lost_run(one_account, tmp_path, quiet_for=tasks.LOST_AFTER * 2)
    monkeypatch.setattr(tasks.broker, "tasks_lost", lambda queue, run_ids: True)
    assert tasks.resend_lost() == 0  # suspected
    (entry,) = [e for e in django_settings.PERIODIC_TASKS if e["task"] == "ads_sync.resend_lost"]
    every_s = 60 * int(str(entry["crontab"]["minute"]).removeprefix("*/"))  # type: ignore[index]
    assert cache.ttl(tasks._lost_key(run.pk)) > every_s


def test_a_run_started_long_ago_that_moved_lately_is_not_suspected(
    one_account: str, tmp_path: Path, monkeypatch
) -> None:
    """A long backfill settles days as it goes: it is quiet only once none moved lately."""
    run = _lost_run(one_account, tmp_path, quiet_for=tasks.LOST_AFTER * 6)
    SyncDay.objects.filter(run=run).update(updated_at=timezone.now())
    monkeypatch.setattr(tasks.broker, "tasks_lost", lambda queue, run_ids: True)
    sent = _record_fan_out(monkeypatch)
    assert [tasks.resend_lost(), tasks.resend_lost()] == [0, 0]
    assert sent == []


def test_a_finished_runs_leftover_pending_day_is_not_sent_again(
    one_account: str, tmp_path: Path, monkeypatch
) -> None:
    """Its run no longer waits on it: the next detection plans it (see test_selectors)."""
    run = _lost_run(one_account, tmp_path, quiet_for=tasks.LOST_AFTER * 2)
    SyncRun.objects.filter(pk=run.pk).update(failed=3, finished_at=timezone.now())
    monkeypatch.setattr(tasks.broker, "tasks_lost", lambda queue, run_ids: True)
    sent = _record_fan_out(monkeypatch)
    assert [tasks.resend_lost(), tasks.resend_lost()] == [0, 0]
    assert sent == []


@pytest.mark.usefixtures("sync_worker")
def test_a_run_that_moved_lately_or_whose_tasks_are_queued_is_left_alone(
    ads_sandbox, tmp_path: Path, monkeypatch
) -> None:
    recent = _lost_run(ads_sandbox.customers[0], tmp_path, quiet_for=tasks.LOST_AFTER / 2)
    assert [tasks.resend_lost(), tasks.resend_lost()] == [0, 0]
    SyncDay.objects.filter(run=recent).delete()
    recent.delete()

    # Quiet for long, but a task of it is somewhere: never suspected twice in a row.
    quiet = _lost_run(ads_sandbox.customers[0], tmp_path, quiet_for=tasks.LOST_AFTER * 2)
    answers = iter([True, False, True, False])
    monkeypatch.setattr(tasks.broker, "tasks_lost", lambda queue, run_ids: next(answers))
    assert [tasks.resend_lost() for _ in range(4)] == [0, 0, 0, 0]
    assert set(SyncDay.objects.filter(run=quiet).values_list("state", flat=True)) == {"pending"}


def test_resending_runs_whose_days_are_all_settled_sends_and_says_nothing(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    run = SyncRun.objects.create(trigger="backfill", output_dir=str(tmp_path), planned=1)
    SyncDay.objects.create(
        customer_id="1234567890", date=dt.date(2026, 1, 1), state=SyncDay.State.DONE, run=run
    )
    sent: list[list[Any]] = []
    monkeypatch.setattr(
        tasks, "group", lambda signatures: sent.append(list(signatures)) or celery_group([])
    )
    caplog.set_level(logging.INFO, logger=tasks.__name__)

    assert tasks.resend_unsettled(run_ids=[run.pk]) == 0
    assert sent == []
    assert "sent again" not in caplog.text


def test_the_beat_entries_of_the_sync_name_tasks_the_workers_register() -> None:
    """A task renamed in code (or left to Celery's default name) made beat send messages no
    worker knows, and the daily detection or the lost-task check silently never ran."""
    entries = [e for e in django_settings.PERIODIC_TASKS if e["task"].startswith("ads_sync.")]
    assert len(entries) == 2
    assert all(entry["task"] in celery_app.tasks for entry in entries)
