"""Celery's soft time limit as it strikes in production: mid-statement, not between calls."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection

# pg_sleep's length: far longer than the limit's delay; a fixed connection cancels it.
STATEMENT_S = 30


@contextlib.contextmanager
def soft_time_limit_in(seconds: float) -> Iterator[None]:
    """Raise SoftTimeLimitExceeded in this (main) thread `seconds` from now, from a SIGUSR1
    handler, as billiard's prefork child does when the task's soft limit is reached."""

    def handler(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)


def slow_statement_cut_short(*args: Any, **kwargs: Any) -> None:
    """A statement still running when the soft limit strikes (0.3 s in)."""
    with soft_time_limit_in(0.3), connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_sleep({STATEMENT_S})")
