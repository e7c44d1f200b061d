"""The sync's Celery tasks and the fan-out around them.

`detect_gaps` (beat) and `backfill_ads` plan a run and send one `sync_day` task per (customer,
date) through `run_start`. `sync_day` records a day whose service crashed, and tries it again
while the database cannot take that record. `resend_unsettled` and `resend_lost` send again the
tasks of runs that lost theirs (a purged queue, a broker that lost its data).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from celery import current_app, group, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_ready
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, close_old_connections
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from ads_sync import broker, locks, services
from ads_sync.integrations import google_ads
from ads_sync.models import SyncDay, SyncRun

logger = logging.getLogger(__name__)

# A day may spend the client's whole budget (google_ads.fetch_budget_s: retries until every
# attempt at its deadline and the waits between them have gone by, and the last attempt's token
# refreshes and calls), plus a minute for the database work and the CSV file.
SYNC_DAY_SOFT_LIMIT_S = int(google_ads.fetch_budget_s() + 60)
SYNC_DAY_TIME_LIMIT_S = SYNC_DAY_SOFT_LIMIT_S + 60
SYNC_DAY_DATABASE_RETRY_S = 30
SYNC_DAY_DATABASE_RETRIES = 120


def run_start(
    *,
    trigger: str,
    customer_ids: list[str] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    days: int | None = None,
    force: bool = False,
    output_dir: str | Path | None = None,
    lock_wait_s: float = 0.0,
) -> services.Plan | None:
    """Plan a run and fan it out as a group of sync_day tasks (no chord: each task settles its
    own day and the last one closes the run). Beat and `backfill_ads` both come through here."""
    plan = services.run_plan(
        trigger=trigger,
        customer_ids=customer_ids,
        start=start,
        end=end,
        days=days,
        force=force,
        output_dir=output_dir,
        lock_wait_s=lock_wait_s,
    )
    if plan is None:
        logger.info("ads sync: another planning holds the lock; no second fan-out")
        return None
    if plan.days:
        try:
            group(
                sync_day.s(customer_id, day.isoformat(), plan.run.pk)
                for customer_id, day in plan.days
            ).apply_async()
        except BaseException as exc:  # Ctrl-C in backfill_ads too
            # Some or none of the tasks reached the broker. Fail the days that have not started
            # (a task that did arrive finds its day settled and skips it), so that the next
            # detection or backfill plans them again instead of waiting on them as in flight.
            reason = f"fan-out failed: {type(exc).__name__}: {exc}"
            # An interruption or an unreachable broker is said in full by the reason (and by
            # backfill_ads' own message); anything else keeps its traceback.
            expected = isinstance(exc, KeyboardInterrupt | KombuOperationalError)
            logger.error("ads sync: run %s: %s", plan.run.pk, reason, exc_info=not expected)
            services.run_fail_pending(run_id=plan.run.pk, reason=reason)
            raise
    logger.info("ads sync: run %s planned %s day(s)", plan.run.pk, len(plan.days))
    services.plan_csv_restore(plan=plan)
    return plan


def resend_unsettled(*, run_ids: list[int]) -> int:
    """Send again a sync_day task for the unsettled days of these runs that no task can still
    be fetching; how many.

    For days whose tasks were lost (a purged queue, a broker that restarted without its data):
    `backfill_ads` calls this once it has seen no task of the runs in the queue or in a worker
    consuming it. That misses a worker that stopped consuming and still runs its tasks (a warm
    shutdown, a cancelled consumer), so a `running` day is sent again only once it has been
    running longer than sync_day's hard time limit, which no task outlives. A pending day whose
    task turns out to be alive after all is fetched twice, which changes nothing but the API
    calls: a run settles each of its days once (services._settle).
    """
    running_since = timezone.now() - dt.timedelta(seconds=SYNC_DAY_TIME_LIMIT_S)
    unsettled = list(
        SyncDay.objects.filter(run_id__in=run_ids)
        .filter(
            Q(state=SyncDay.State.PENDING)
            | Q(state=SyncDay.State.RUNNING, updated_at__lt=running_since)
        )
        .order_by("-date", "customer_id")
        .values_list("customer_id", "date", "run_id")
    )
    if unsettled:
        group(
            sync_day.s(customer_id, day.isoformat(), run_id)
            for customer_id, day, run_id in unsettled
        ).apply_async()
        logger.warning(
            "ads sync: run(s) %s: %d day(s) whose tasks were lost sent again",
            ", ".join(map(str, run_ids)),
            len(unsettled),
        )
    return len(unsettled)


# An unfinished run that settled no day for this long, and none of whose tasks is anywhere
# (broker.tasks_lost) at two checks in a row, has its days sent again by resend_lost.
LOST_AFTER = dt.timedelta(minutes=10)
# Between two checks of resend_lost (its beat entry runs it every 10 minutes): a suspicion older
# than this is not the previous check's.
LOST_SUSPICION_TTL_S = 25 * 60


@shared_task(name="ads_sync.resend_lost")
def resend_lost() -> int:
    """Send again the days of unfinished runs whose tasks were lost; how many days.

    `backfill_ads` does this for the runs it waits on. This covers the others: the daily
    detection's fan-out lost with a broker's data, or a purged queue, waited until a later plan
    took its days over, IN_FLIGHT_STALE_AFTER after they last moved (the next day's detection).
    A run is suspected at a check when it settled no day for LOST_AFTER and no task of it is
    queued or held by a worker; still so at the next check, its days are sent again. The
    suspicion is kept in the cache: with Redis down, nothing is sent (the 12-hour take-over
    still applies).
    """
    quiet_since = timezone.now() - LOST_AFTER
    unsettled = SyncDay.objects.filter(
        run=OuterRef("pk"), state__in=(SyncDay.State.PENDING, SyncDay.State.RUNNING)
    )
    # Each quiet run, and when a day of it last moved.
    quiet = dict(
        SyncRun.objects.filter(
            Exists(unsettled), finished_at__isnull=True, started_at__lt=quiet_since
        )
        .annotate(last_moved=Max("days__updated_at"))
        .filter(last_moved__lt=quiet_since)
        .order_by("pk")
        .values_list("pk", "last_moved")
    )
    if not quiet:
        return 0
    queue = current_app.conf.task_default_queue
    lost = [run_id for run_id in quiet if broker.tasks_lost(queue, [run_id])]
    # A suspicion holds when its run last moved: one that moved since (a check in between saw
    # it alive, and kept no suspicion of its own) is found lost afresh, not a second time.
    suspected = cache.get_many([_lost_key(run_id) for run_id in lost])
    again = [run_id for run_id in lost if suspected.get(_lost_key(run_id)) == quiet[run_id]]
    # A run lost at this check for the first time becomes suspected; every other quiet run's
    # suspicion ends here (it is sent again now, or was seen alive).
    cache.delete_many(
        [_lost_key(run_id) for run_id in quiet if run_id not in lost or run_id in again]
    )
    cache.set_many(
        {_lost_key(run_id): quiet[run_id] for run_id in lost if run_id not in again},
        timeout=LOST_SUSPICION_TTL_S,
    )
    return resend_unsettled(run_ids=again) if again else 0


def _lost_key(run_id: int) -> str:
    return f"ads_sync:lost:{run_id}"


# A backfill planning two years for many accounts holds the planning lock for seconds, not
# minutes; the daily detection waits for it rather than skipping the day.
DETECT_GAPS_RETRY_S = 60
DETECT_GAPS_MAX_RETRIES = 30
# A detection of the same trigger that planned this recently did this one's work (two beats).
DETECT_GAPS_SAME_WORK = dt.timedelta(minutes=5)
# Time for one new account's lookup at the client's whole budget, and the database work. A
# detection with several slow new accounts is cut short and retried: the accounts it looked up
# are kept, so the next try gets further.
DETECT_GAPS_SOFT_LIMIT_S = int(locks.planning_lock_ttl_s() + 120)


@shared_task(
    name="ads_sync.detect_gaps",
    bind=True,
    acks_late=True,
    soft_time_limit=DETECT_GAPS_SOFT_LIMIT_S,
    time_limit=DETECT_GAPS_SOFT_LIMIT_S + 60,
    max_retries=DETECT_GAPS_MAX_RETRIES,
)
def detect_gaps(
    self: Any, trigger: str = "beat", since: str | None = None, own_runs: list[int] | None = None
) -> int | None:
    """Plan the missing days of every configured account and fan them out; returns the run id.

    If another planning holds the lock, try again a minute later: a backfill's run may not cover
    every account or day this one would plan. So too if the planning ran out of time (slow
    account lookups, a long fan-out or CSV restore), or the CSV folder cannot be written. A
    run of the same trigger that started since shortly before the first try (a second beat's)
    did this detection's work: then it stops, rather than fetching the lookback days twice.
    The runs this detection started itself (`own_runs`, cut short) do not count: their unsent
    days failed, and the next try plans them.
    """
    # The arguments come from the broker, where any client may put a message, or from a
    # periodic task's kwargs edited in the admin: a trigger that is none of the runs' went into
    # the run's row (or failed its INSERT), a `since` that is no date and time stopped the task
    # with a traceback.
    if trigger not in SyncRun.Trigger.values:
        logger.error(
            "ads sync: detect_gaps refused: trigger %r is none of %s; nothing planned",
            trigger,
            ", ".join(SyncRun.Trigger.values),
        )
        return None
    try:
        first_try = dt.datetime.fromisoformat(since) if since else timezone.now()
    except (TypeError, ValueError):
        logger.error(
            "ads sync: detect_gaps refused: since %r is not an ISO date and time; nothing planned",
            since,
        )
        return None
    own = list(own_runs or [])
    if (
        since
        and SyncRun.objects.filter(
            trigger=trigger, started_at__gte=first_try - DETECT_GAPS_SAME_WORK
        )
        .exclude(pk__in=own)
        .exists()
    ):
        logger.info("ads sync: a %s run started meanwhile; this detection stops", trigger)
        return None
    this_try = timezone.now()
    try:
        plan = run_start(trigger=trigger)
    except SoftTimeLimitExceeded:
        logger.warning("ads sync: the detection ran out of time planning; it tries again")
        own += SyncRun.objects.filter(trigger=trigger, started_at__gte=this_try).values_list(
            "pk", flat=True
        )
        plan = None
    except OSError as exc:
        # The CSV folder cannot be written (checked before any API call and any run): a mount
        # not ready yet at the daily hour must not lose the day's detection.
        logger.error(
            "ads sync: the CSV folder cannot be written (%s); the detection tries again in %s s",
            exc,
            DETECT_GAPS_RETRY_S,
        )
        plan = None
    if plan is None:
        raise self.retry(
            countdown=DETECT_GAPS_RETRY_S,
            kwargs={"trigger": trigger, "since": first_try.isoformat(), "own_runs": own},
        )
    return plan.run.pk


@shared_task(
    bind=True,
    name="ads_sync.sync_day",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=SYNC_DAY_SOFT_LIMIT_S,
    time_limit=SYNC_DAY_TIME_LIMIT_S,
    # While the database is unreachable (below): tried again every 30 s for an hour.
    default_retry_delay=SYNC_DAY_DATABASE_RETRY_S,
    max_retries=SYNC_DAY_DATABASE_RETRIES,
)
def sync_day(self: Any, customer_id: str, date_iso: str, run_id: int) -> str:
    """Sync one (customer, date) for a run. Never raises for a failed day: it is recorded.

    If the failure cannot be recorded either (PostgreSQL restarting), the task is tried again
    later (every SYNC_DAY_DATABASE_RETRY_S, for an hour): were it acknowledged as it is, its day
    would stay `running` and its run open for 12 hours, until a later plan took the day over.

    The customer id is taken as the ledger keys it (ten digits, dashes allowed) and the date as
    an ISO date; anything else is refused, logged, and nothing is written ("refused").
    """
    # From the broker, where any client may put a message, or a periodic task's args typed in
    # the admin: "12-3456-7890", " 1234567890\n" or "../../x" wrote ledger and metric rows, and
    # a CSV folder, under the raw string, then failed with an IntegrityError and left the day
    # `running`.
    try:
        customer_id = google_ads.normalize_customer_id(customer_id)
        day = dt.date.fromisoformat(date_iso)
    except (TypeError, ValueError) as exc:
        logger.error("ads sync: sync_day refused (run %r): %s; nothing written", run_id, exc)
        return "refused"
    try:
        return services.day_sync(customer_id=customer_id, day=day, run_id=run_id).state
    except Exception as exc:
        logger.exception("ads sync: %s %s crashed", customer_id, day)
        try:
            services.day_fail(
                customer_id=customer_id,
                day=day,
                run_id=run_id,
                error=f"{type(exc).__name__}: {exc}",
            )
        except (OperationalError, InterfaceError) as db_exc:
            logger.warning(
                "ads sync: %s %s: the database is unreachable; the day is tried again in %s s",
                customer_id,
                day,
                SYNC_DAY_DATABASE_RETRY_S,
            )
            close_old_connections()
            raise self.retry() from db_exc
        return "failed"


# --- Worker start ---------------------------------------------------------------------------
# Each process that runs tasks builds its Google Ads client as it starts, not in its first
# sync_day: a fresh worker then starts fetching at once when a backfill is fanned out to it.


@worker_process_init.connect
def _warm_up_pool_process(**_: object) -> None:
    # Prefork children (after the fork: a gRPC channel must not cross one) and the solo pool.
    google_ads.warm_up_in_background()


@worker_ready.connect
def _warm_up_thread_pool(sender: object = None, **_: object) -> None:
    # The threads pool runs tasks in the worker's own process and sends no process_init.
    from celery.concurrency.thread import TaskPool as ThreadPool

    if isinstance(getattr(sender, "pool", None), ThreadPool):
        google_ads.warm_up_in_background()
