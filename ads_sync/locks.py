"""The planning lock: two beats or an overlapping manual run must produce one fan-out.

Redis holds it with a TTL (a crashed planner cannot keep it forever); when Redis is down a
PostgreSQL advisory lock on the planner's connection stands in. The only place that knows the key.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.core.cache import cache
from django.db import connection
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

PLANNING_LOCK_KEY = "ads_sync:lock:planning"
PLANNING_LOCK_TTL_S = 300
# pg advisory lock keys are bigints; a fixed one for this lock ("ads_plan" in ASCII).
PLANNING_ADVISORY_KEY = 0x6164735F706C616E


@contextlib.contextmanager
def planning_lock(*, wait_s: float = 0.0) -> Iterator[bool]:
    """Yield True while this process holds the planning lock, False if another one does."""
    try:
        lock = cache.lock(  # type: ignore[attr-defined]
            PLANNING_LOCK_KEY, timeout=PLANNING_LOCK_TTL_S, thread_local=False
        )
        acquired = bool(
            lock.acquire(blocking=wait_s > 0, blocking_timeout=wait_s if wait_s > 0 else None)
        )
    except RedisError as exc:
        logger.warning("ads sync: Redis lock unavailable (%s), using a PostgreSQL lock", exc)
        with advisory_lock() as got:
            yield got
        return
    try:
        yield acquired
    finally:
        if acquired:
            with contextlib.suppress(RedisError):
                lock.release()


@contextlib.contextmanager
def advisory_lock() -> Iterator[bool]:
    """A session-level pg advisory lock, released on the same connection that took it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [PLANNING_ADVISORY_KEY])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [PLANNING_ADVISORY_KEY])
