"""Liveness and readiness probes.

`/healthz` answers as long as the process serves requests. `/readyz` checks every service a
request or a task depends on and names the ones that fail, so an orchestrator (or a person)
knows which to look at. It answers 503 only when a service the web cannot do without fails
(REQUIRED: PostgreSQL); with Redis or RabbitMQ down the API still answers (from PostgreSQL;
the admin's "run task" says it cannot send), so those are named as "degraded" with a 200,
rather than taking every web process out of rotation at once.

Each check runs in a thread of its own and gets CHECK_TIMEOUT_S: a hung service (a PostgreSQL
that accepts connections and answers nothing) is named as timed out, and the probe still
answers, where it waited with no end.

Each process keeps the checks' results for RESULT_TTL_S, failures too, and answers the probes
within that time from them: /readyz is public and not rate limited, and each call opened a
RabbitMQ connection, three threads and a database checkout (about 250 broker connections a
second from one client). A result is at most that old, well within any probe's period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import connection, connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_redis import get_redis_connection
from kombu import Connection

from inventory_project.celery import app as celery_app

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2
# What a check may take beyond its own timeouts before the probe stops waiting for it.
CHECK_GRACE_S = 0.5
# The services without which the web process cannot serve: their failure is a 503.
REQUIRED = frozenset({"database"})
# Seconds a process answers /readyz from the last checks' results.
RESULT_TTL_S = 1.0


def _check_database() -> None:
    pool = getattr(connection, "pool", None)
    if pool is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return
    # From the pool the requests use, but waiting CHECK_TIMEOUT_S for a connection, not the
    # requests' DB_POOL_TIMEOUT_S: with PostgreSQL down the probe answered after 10 s, longer
    # than an orchestrator's probe timeout.
    pool.open()  # as Django opens it on its first connection: a probe may come first
    # While the requests' checkouts give up at once (a database found down: the backend's
    # _checkout), so does the probe's: 2 s each held a server thread in an outage.
    with pool.connection(timeout=min(CHECK_TIMEOUT_S, pool.timeout)) as conn:
        conn.execute("SELECT 1").fetchone()


def _check_cache() -> None:
    # The raw client, not the cache API: django-redis is set to swallow errors there.
    get_redis_connection("default").ping()


def _check_broker() -> None:
    with Connection(celery_app.conf.broker_url, connect_timeout=CHECK_TIMEOUT_S) as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "cache": _check_cache,
    "broker": _check_broker,
}


@never_cache
@require_safe  # GET and HEAD: uptime checkers and load balancers often probe with HEAD
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


class _Check(threading.Thread):
    """One check in a daemon thread: one hung on its service (until TCP gives up) neither
    holds the probe nor keeps the process from exiting, as a pool's threads would."""

    def __init__(self, name: str, check: Callable[[], None]) -> None:
        super().__init__(name=f"readyz-{name}", daemon=True)
        self.check = check
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.check()
        except Exception as exc:
            self.error = exc
        finally:
            connections.close_all()  # this thread's own, if the check opened one


class _Kept:
    """The last checks' results in this process, and when they were had."""

    lock = threading.Lock()
    at: float | None = None
    results: dict[str, str] = {}


def forget_results() -> None:
    """The next probe checks again (tests)."""
    with _Kept.lock:
        _Kept.at = None


def run_checks() -> dict[str, str]:
    """Every check's outcome, "ok" or "error: <what>": kept from checks less than RESULT_TTL_S
    old, else checked now, within CHECK_TIMEOUT_S (and grace). Probes that come while checks
    run wait for those checks' results rather than start their own."""
    with _Kept.lock:
        if _Kept.at is None or time.monotonic() - _Kept.at >= RESULT_TTL_S:
            _Kept.results = _check_all()
            _Kept.at = time.monotonic()
        return dict(_Kept.results)


def _check_all() -> dict[str, str]:
    threads = {name: _Check(name, check) for name, check in CHECKS.items()}
    for thread in threads.values():
        thread.start()
    deadline = time.monotonic() + CHECK_TIMEOUT_S + CHECK_GRACE_S
    results: dict[str, str] = {}
    for name, thread in threads.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            logger.warning("readiness check %s did not answer in %s s", name, CHECK_TIMEOUT_S)
            results[name] = "error: timed out"
        elif thread.error is not None:
            # The detail (hosts, ports) goes to the log, not to anonymous callers.
            logger.warning("readiness check %s failed: %s", name, thread.error)
            results[name] = f"error: {type(thread.error).__name__}"
        else:
            results[name] = "ok"
    return results


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    results = run_checks()
    failing = [name for name, outcome in results.items() if outcome != "ok"]
    unavailable = REQUIRED.intersection(failing)
    status = "unavailable" if unavailable else "degraded" if failing else "ok"
    return JsonResponse(
        {"status": status, "checks": results, "failing": failing},
        status=503 if unavailable else 200,
    )
