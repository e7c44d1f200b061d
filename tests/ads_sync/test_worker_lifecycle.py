"""Worker lifecycle: no worker at all, queued for later, and a worker SIGKILLed mid-backfill.

No in-process worker here: these tests decide which workers exist.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.management import CommandError, call_command

from ads_sync import locks, tasks
from ads_sync.management.commands import backfill_ads
from ads_sync.models import SyncDay, SyncRun
from tests.processes import process_env
from tests.workers import purge_test_queue

from .helpers import assert_complete, wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_history(settings, tmp_path: Path) -> Path:
    settings.ADS_SYNC_HISTORY_DAYS = 20
    settings.ADS_SYNC_LOOKBACK_DAYS = 2
    settings.ADS_SYNC_OUTPUT_DIR = tmp_path
    return tmp_path


@pytest.fixture
def empty_queue() -> None:
    purge_test_queue()


@pytest.mark.usefixtures("empty_queue")
def test_without_a_worker_backfill_says_so_instead_of_waiting(ads_sandbox, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no Celery worker") as excinfo:
        call_command("backfill_ads", "--days", "2", "--output-dir", str(tmp_path))
    assert excinfo.value.returncode == 2
    assert SyncRun.objects.count() == 0


def test_a_queue_nobody_declared_has_no_consumer() -> None:
    assert backfill_ads.queue_has_consumers("ads-sync-tests-no-such-queue") is False


@pytest.mark.usefixtures("empty_queue")
@pytest.mark.parametrize(("pool", "processes"), [("prefork", 2), ("threads", 1)])
def test_a_starting_worker_takes_its_google_ads_token_before_any_task(
    ads_sandbox, tmp_path: Path, pool: str, processes: int
) -> None:
    queue = django_settings.CELERY_TASK_DEFAULT_QUEUE
    log = tmp_path / "worker.log"
    worker = _worker_process(ads_sandbox, log, "--pool", pool)
    try:
        _wait_for(
            lambda: (
                len(ads_sandbox.calls(method="token")) >= processes
                and backfill_ads.queue_has_consumers(queue)
            ),
            worker,
            log,
            within_s=60,
        )
    finally:
        _stop(worker)

    # One grant per process that runs tasks (--concurrency 2), and no task was needed for it.
    assert [c["outcome"] for c in ads_sandbox.calls(method="token")] == ["ok"] * processes
    assert ads_sandbox.calls() == []


@pytest.mark.usefixtures("empty_queue")
def test_no_wait_prints_the_run_id_and_returns(ads_sandbox, tmp_path: Path) -> None:
    out = io.StringIO()
    call_command(
        "backfill_ads", "--days", "2", "--output-dir", str(tmp_path), "--no-wait", stdout=out
    )
    run = SyncRun.objects.get()
    assert out.getvalue().strip().splitlines()[-1] == str(run.pk)
    assert run.planned == 4
    assert run.finished_at is None


def _worker_process(
    ads_sandbox, log: Path, *options: str, **settings: str
) -> subprocess.Popen[bytes]:
    env = process_env(
        **ads_sandbox.env,
        TEST_CELERY_TASK_DEFAULT_QUEUE=django_settings.CELERY_TASK_DEFAULT_QUEUE,
        **settings,
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "inventory_project",
            "worker",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
            # A node name of its own: another worker named celery@<host> (a `make run` beside
            # the tests) holds the exclusive queue celery@<host>.celery.pidbox, and this one
            # would die at start-up.
            "--hostname",
            f"tests-{uuid.uuid4().hex[:12]}@%h",
            "-Q",
            django_settings.CELERY_TASK_DEFAULT_QUEUE,
            *options,
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for(
    done: Callable[[], bool], worker: subprocess.Popen[bytes], log: Path, *, within_s: float
) -> None:
    """Wait until `done()`; fail with the worker's log if that takes over `within_s` or the
    worker exits meanwhile."""
    deadline = time.monotonic() + within_s
    while not done():
        assert time.monotonic() < deadline, log.read_text()
        assert worker.poll() is None, log.read_text()
        time.sleep(0.05)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """Stop a worker of _worker_process and its pool (a warm shutdown; killed after 30 s)."""
    if worker.poll() is not None:
        return
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)


@pytest.mark.usefixtures("empty_queue")
def test_a_worker_killed_mid_backfill_then_restarted_leaves_every_day_done_once(
    ads_sandbox, short_history: Path
) -> None:
    ads_sandbox.configure(latency_s=0.1)
    log = short_history / "worker.log"
    worker = _worker_process(ads_sandbox, log)
    try:
        run_id = tasks.detect_gaps()
        assert run_id is not None
        _wait_for(lambda: SyncRun.objects.get(pk=run_id).done >= 8, worker, log, within_s=90)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        killed_at = SyncRun.objects.get(pk=run_id)
        assert killed_at.finished_at is None
        worker = _worker_process(ads_sandbox, log)
        run = wait_for_run(run_id, timeout_s=120)
    finally:
        _stop(worker)

    assert (run.planned, run.done, run.failed) == (40, 40, 0)
    assert_complete(ads_sandbox.customers, short_history, 20)
    # Days in flight at the kill were fetched again: redelivered, not lost.
    assert len(ads_sandbox.calls()) >= 40


def _pool_processes(worker: subprocess.Popen[bytes]) -> list[int]:
    """The pool processes of a prefork worker: its main process's children, as /proc lists them."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text()
    return [int(pid) for pid in children.split()]


@pytest.mark.usefixtures("empty_queue")
def test_a_day_whose_pool_process_dies_under_it_is_run_again_not_left_running(
    ads_sandbox, tmp_path: Path
) -> None:
    """A pool process killed mid-task (the kernel's OOM killer): acknowledged as failed, its
    task left the day `running` and the run open for 12 hours, until a later plan took it over."""
    ads_sandbox.configure(latency_s=1.0)
    log = tmp_path / "worker.log"
    worker = _worker_process(ads_sandbox, log)
    try:
        plan = tasks.run_start(
            trigger="backfill", customer_ids=[ads_sandbox.customers[0]], days=1, output_dir=tmp_path
        )
        assert plan is not None
        running = SyncDay.objects.filter(run=plan.run, state=SyncDay.State.RUNNING)
        _wait_for(running.exists, worker, log, within_s=60)
        for pid in _pool_processes(worker):
            os.kill(pid, signal.SIGKILL)
        run = wait_for_run(plan.run.pk, timeout_s=60)
    finally:
        _stop(worker)

    assert (run.planned, run.done, run.failed) == (1, 1, 0)
    assert SyncDay.objects.get(run=run).attempts == 2  # sent again to a new pool process


@pytest.mark.usefixtures("empty_queue")
def test_a_detection_whose_pool_process_dies_under_it_is_run_again(
    ads_sandbox, tmp_path: Path
) -> None:
    """A pool process killed mid-planning (the kernel's OOM killer): the detection's message goes
    back to the queue and a new pool process plans the days. Acknowledged when it was received,
    the message was gone, and that day's detection with it."""
    ads_sandbox.configure(latency_s=30.0)  # the first account lookup is where the planner dies
    log = tmp_path / "worker.log"
    worker = _worker_process(
        ads_sandbox,
        log,
        ADS_SYNC_HISTORY_DAYS="2",
        ADS_SYNC_LOOKBACK_DAYS="0",
        TEST_ADS_SYNC_OUTPUT_DIR=str(tmp_path / "output"),
    )
    runs = SyncRun.objects.filter(trigger=SyncRun.Trigger.BEAT)
    try:
        tasks.detect_gaps.delay()
        _wait_for(lambda: cache.has_key(locks.PLANNING_LOCK_KEY), worker, log, within_s=60)
        ads_sandbox.configure(latency_s=0.0)
        # The dead planner's lock would last out its TTL, minutes: it goes now, as it would then.
        cache.delete(locks.PLANNING_LOCK_KEY)
        for pid in _pool_processes(worker):
            os.kill(pid, signal.SIGKILL)
        _wait_for(runs.exists, worker, log, within_s=60)
        run = wait_for_run(runs.get().pk, timeout_s=60)
    finally:
        _stop(worker)

    assert (run.planned, run.done, run.failed) == (4, 4, 0)
    assert_complete(ads_sandbox.customers, Path(run.output_dir), 2)
