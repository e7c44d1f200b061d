"""Celery beat's scheduler: django-celery-beat's, with a due task's publish retried for minutes.

Beat marks an entry as run before it sends it (`Scheduler.apply_async` reserves it first), and
a send that fails is only logged. With Celery's default publish retries (three, about 0.6 s in
all), a broker restarting at the minute the daily detection was due skipped that day's
detection, with a traceback in beat's log as the only sign. Here every entry's send retries
for about nine minutes; beat's other entries wait meanwhile, which for a handful of daily and
ten-minute entries costs nothing.
"""

from __future__ import annotations

from typing import Any

from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

PUBLISH_RETRY_POLICY = {
    "max_retries": 60,
    "interval_start": 0,
    "interval_step": 1,
    "interval_max": 10,
}


class PersistentEntry(ModelEntry):
    def __init__(self, model: Any, app: Any = None) -> None:
        super().__init__(model, app=app)
        self.options["retry"] = True
        self.options["retry_policy"] = dict(PUBLISH_RETRY_POLICY)


class Scheduler(DatabaseScheduler):
    Entry = PersistentEntry
