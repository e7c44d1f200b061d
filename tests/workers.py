"""Real Celery workers for tests: one way to empty the test queue and to run a worker on it."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from celery.contrib.testing.worker import start_worker
from celery.worker import state as worker_state
from django.core.cache import cache

from inventory_project.celery import app as celery_app


def purge_test_queue() -> None:
    """Declare the test queue exactly as the worker does, then empty it of earlier leftovers."""
    queue = celery_app.conf.task_default_queue
    with celery_app.connection_for_write() as conn:
        bound = celery_app.amqp.queues[queue](conn.default_channel)
        bound.declare()
        bound.purge()


@contextlib.contextmanager
def running_worker() -> Iterator[object]:
    """A worker (threads in this process) consuming the emptied test queue over RabbitMQ.

    Celery sets up a worker's logging by replacing the root logger's handlers with its own
    (worker_hijack_root_logger), for the rest of the process: the settings' handler, which
    tests read through the `logged` fixture, is put back when the worker stops.

    Celery's own stop only sets the flag its loop reads between two polls of the broker
    connection, and a quiet worker's poll waits for its next timer, up to 10 s: each test with
    a worker took up to 10 s more to end. The flag is set here, and the loop woken to read it.
    """
    purge_test_queue()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with start_worker(
            celery_app,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            loglevel="WARNING",
            queues=[celery_app.conf.task_default_queue],
            shutdown_timeout=30,
        ) as worker:
            try:
                yield worker
            finally:
                worker_state.should_terminate = 0
                if worker.hub is not None:  # the loop of a broker connection
                    worker.hub.call_soon(lambda: None)  # from another thread, wakes the loop
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def left_in_cache(key: str, *, within_s: float = 30.0) -> Any:
    """What a task run by the test worker leaves in the cache under `key`: it fails the test if
    nothing is there within `within_s`."""
    deadline = time.monotonic() + within_s
    while (value := cache.get(key)) is None:
        assert time.monotonic() < deadline, f"no task left {key!r} in the cache in {within_s} s"
        time.sleep(0.05)
    return value
