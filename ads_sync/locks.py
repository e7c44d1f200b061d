"""The planning lock: two beats or an overlapping manual run must produce one fan-out.

Redis holds it with a TTL (a crashed planner cannot keep it forever), which the planner renews
between steps; when Redis is down a PostgreSQL advisory lock on the planner's connection stands
in. The only place that knows the key.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import connection
from redis.exceptions import RedisError

from ads_sync.integrations import google_ads

logger = logging.getLogger(__name__)

PLANNING_LOCK_KEY = "ads_sync:lock:planning"
# pg advisory lock keys are bigints; a fixed one for this lock ("ads_plan" in ASCII).
PLANNING_ADVISORY_KEY = 0x6164735F706C616E
ADVISORY_LOCK_POLL_S = 0.1


def planning_lock_ttl_s() -> float:
    """Long enough for the longest step between two renewals: one account lookup, which may
    spend the client's whole retry budget, plus the planning's database work."""
    return google_ads.fetch_budget_s() + 120


@dataclass
class PlanningLock:
    """What planning_lock yields: true while held. The planner renews it between steps."""

    acquired: bool
    redis_lock: Any = None  # None under the advisory lock, which lasts as long as its session

    def __bool__(self) -> bool:
        return self.acquired

    def renew(self) -> None:
        """Give the Redis lock its whole TTL again."""
        if self.redis_lock is not None:
            try:
                self.redis_lock.reacquire()
            except RedisError as exc:  # lost (LockNotOwnedError) or Redis gone: see still_held
                logger.warning("ads sync: the planning lock could not be renewed: %s", exc)

    def still_held(self) -> bool:
        """False once the Redis lock expired, when another planner may hold it."""
        if self.redis_lock is None:
            return self.acquired
        try:
            return bool(self.redis_lock.owned())
        except RedisError as exc:
            # Redis went away mid-planning: another planner now falls back to the advisory
            # lock, which this one does not hold. Plan again later, under that lock.
            logger.warning("ads sync: the planning lock could not be checked: %s", exc)
            return False


@contextlib.contextmanager
def planning_lock(*, wait_s: float = 0.0) -> Iterator[PlanningLock]:
    """Hold the planning lock while inside; the handle is false if another process holds it."""
    try:
        lock = cache.lock(  # type: ignore[attr-defined]
            PLANNING_LOCK_KEY, timeout=planning_lock_ttl_s(), thread_local=False
        )
        acquired = bool(
            lock.acquire(blocking=wait_s > 0, blocking_timeout=wait_s if wait_s > 0 else None)
        )
    except RedisError as exc:
        logger.warning("ads sync: Redis lock unavailable (%s), using a PostgreSQL lock", exc)
        with advisory_lock(wait_s=wait_s) as got:
            yield PlanningLock(acquired=got)
        return
    try:
        yield PlanningLock(acquired=acquired, redis_lock=lock if acquired else None)
    finally:
        if acquired:
            with contextlib.suppress(RedisError):
                lock.release()


def hold_for_this_transaction() -> None:
    """Wait for the planning's advisory lock until the current transaction ends.

    The plan's transaction takes it whichever lock its planner holds: a planner under the Redis
    lock and one that fell back to the advisory lock (Redis was down when it started) could
    otherwise both be storing a plan at once, each blind to the other's uncommitted days.
    Reentrant: the planner that holds the session-level lock passes straight through.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PLANNING_ADVISORY_KEY])


@contextlib.contextmanager
def advisory_lock(*, wait_s: float = 0.0) -> Iterator[bool]:
    """A session-level pg advisory lock, released on the same connection that took it; tried
    for up to `wait_s` seconds, as the Redis lock waits."""
    deadline = time.monotonic() + wait_s
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [PLANNING_ADVISORY_KEY])
            acquired = bool(cursor.fetchone()[0])
        if acquired or time.monotonic() >= deadline:
            break
        time.sleep(ADVISORY_LOCK_POLL_S)
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [PLANNING_ADVISORY_KEY])
