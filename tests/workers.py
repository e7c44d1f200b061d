"""Real Celery workers for tests: one way to empty the test queue and to run a worker on it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from celery.contrib.testing.worker import start_worker

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
            yield worker
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
