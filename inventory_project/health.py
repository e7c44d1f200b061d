"""Liveness and readiness probes.

`/healthz` answers as long as the process serves requests. `/readyz` checks every service a
request or a task depends on and names the ones that fail, so an orchestrator (or a person)
knows which to look at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_redis import get_redis_connection
from kombu import Connection

from inventory_project.celery import app as celery_app

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2


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
    with pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
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


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:
            # The detail (hosts, ports) goes to the log, not to anonymous callers.
            logger.warning("readiness check %s failed: %s", name, exc)
            results[name] = f"error: {type(exc).__name__}"
        else:
            results[name] = "ok"
    failing = [name for name, outcome in results.items() if outcome != "ok"]
    return JsonResponse(
        {"status": "unavailable" if failing else "ok", "checks": results, "failing": failing},
        status=503 if failing else 200,
    )
