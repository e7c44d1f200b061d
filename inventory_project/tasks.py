"""Celery tasks of the project itself, not of a domain: the expired-session cleanup beat runs
daily, and a heartbeat the tests send through a real worker."""

from __future__ import annotations

import time

from celery import shared_task
from django.core.cache import cache
from django.core.management import call_command

HEARTBEAT_KEY = "worker:heartbeat:{token}"


@shared_task(name="inventory_project.heartbeat", soft_time_limit=10, time_limit=15)
def heartbeat(token: str) -> None:
    """Record that a worker picked up work, under the caller's token (for the tests)."""
    cache.set(HEARTBEAT_KEY.format(token=token), time.time(), timeout=300)


@shared_task(name="inventory_project.clear_expired_sessions", soft_time_limit=300, time_limit=360)
def clear_expired_sessions() -> None:
    """Delete expired sessions: the database keeps a row per login until this runs."""
    call_command("clearsessions")
