"""The Celery app. Configuration comes from Django settings (the CELERY_ namespace)."""

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from celery import Celery, Task, current_task
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    before_task_publish,
    task_postrun,
    task_prerun,
)
from django.conf import settings

from inventory_project import request_ids
from inventory_project.logs import WithoutCredentials

# As wsgi.py: a worker or beat started without a settings module is a deployment's.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_project.settings.production")

_PREFIX = "CELERY_"
# billiard.util.LOGGER_NAME
_POOL_LOGGER = "multiprocessing"
# Where a task's request keeps what was served before it ran (_serve_the_tasks_id).
_SERVED_BEFORE = "served_before"


class CelerySettings(Mapping[str, Any]):
    """The Django settings named CELERY_*, under Celery's own names (CELERY_BROKER_URL is
    broker_url), read from the settings each time Celery asks.

    Only these: given the whole settings module (config_from_object with a namespace), Celery's
    configuration table, which a worker sends to any broker client that asks (`inspect conf`)
    and `celery report` prints, held every Django setting, REDIS_URL and the cache's LOCATION
    with their passwords among them; and the broker URL under its Django name, which Celery
    does not know to mask. Under broker_url it masks the password.
    """

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(settings, _PREFIX + key.upper())
        except AttributeError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        names = (name for name in dir(settings) if name.startswith(_PREFIX))
        return (name.removeprefix(_PREFIX).lower() for name in names)

    def __len__(self) -> int:
        return sum(1 for _ in self)


app = Celery("inventory_project")
app.config_from_object(CelerySettings())
app.autodiscover_tasks()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _filter_the_workers_handlers(logger: logging.Logger, **_: object) -> None:
    """The worker and beat replace the root logger's handler (the settings' LOGGING, with its
    WithoutCredentials filter) by their own, and give the task logger one: the same filter on
    theirs. And on billiard's (the prefork pool's "Pool process ... error"), which gets one
    with the worker's format, request_id in it, before the root's but no signal of its own."""
    loggers = [logger]
    if logger is logging.getLogger():
        loggers.append(logging.getLogger(_POOL_LOGGER))
    for handler in (handler for each in loggers for handler in each.handlers):
        handler.addFilter(WithoutCredentials())
        handler.addFilter(request_ids.RequestIdFilter())


@before_task_publish.connect
def _send_the_request_id(headers: dict[str, Any] | None = None, **_: object) -> None:
    """A task sent while a web request is served carries the request's id, and so do the tasks
    a task it sent sends in turn. A task's own id is not passed on: the days a gap detection
    fans out each have theirs."""
    if current_task:  # a proxy of the task this thread runs, falsy outside one
        request_id = getattr(current_task.request, request_ids.TASK_HEADER, None)
    else:
        request_id = request_ids.current()
    if request_id is not None and headers is not None:
        headers.setdefault(request_ids.TASK_HEADER, request_id)


@task_prerun.connect
def _serve_the_tasks_id(task_id: str, task: Task, **_: object) -> None:
    """The worker's lines while a task runs carry the id of the request that sent it, else the
    task's own (CELERY_WORKER_LOG_FORMAT). What was served before is kept on the task's
    request: a task run in place (`apply()`) gives it back to the request or task around it."""
    setattr(task.request, _SERVED_BEFORE, request_ids.current())
    request_ids.serve(getattr(task.request, request_ids.TASK_HEADER, None) or task_id)


@task_postrun.connect
def _serve_what_was_served_before(task: Task, **_: object) -> None:
    request_ids.serve(getattr(task.request, _SERVED_BEFORE, None))
