"""Celery beat's scheduler: django-celery-beat's, with a due task's publish retried for minutes.

Beat marks an entry as run before it sends it (`Scheduler.apply_async` reserves it first), and
a send that fails is only logged. With Celery's default publish retries (three, about 0.6 s in
all), a broker restarting at the minute the daily detection was due skipped that day's
detection, with a traceback in beat's log as the only sign. Here every entry's send retries
for about nine minutes; beat's other entries wait meanwhile, which for a handful of daily and
ten-minute entries costs nothing. Each failed try is logged (once a minute at most), naming the
entry: until the last one failed, the log said nothing while beat stood still.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from inventory_project import logs

logger = logging.getLogger(__name__)

PUBLISH_RETRY_POLICY = {
    "max_retries": 60,
    "interval_start": 0,
    "interval_step": 1,
    "interval_max": 10,
}
SEND_RETRIED = logs.Every()


@dataclasses.dataclass(frozen=True)
class SendRetried:
    """kombu's `errback` for an entry's send: called with each failed try to reach the broker.

    Equal by the entry's name: beat compares entries' options to tell whether the schedule
    changed, and a `functools.partial` (equal only to itself) made every run look like one.
    """

    entry_name: str

    def __call__(self, exc: Exception, interval: float) -> None:
        SEND_RETRIED.warning(
            logger,
            "sending %r: the broker is out of reach (%s: %s); trying again for up to nine minutes",
            self.entry_name,
            type(exc).__name__,
            exc,
        )


class PersistentEntry(ModelEntry):
    def __init__(self, model: Any, app: Any = None) -> None:
        super().__init__(model, app=app)
        self.options["retry"] = True
        self.options["retry_policy"] = {
            **PUBLISH_RETRY_POLICY,
            "errback": SendRetried(self.name),
        }


class Scheduler(DatabaseScheduler):
    Entry = PersistentEntry
