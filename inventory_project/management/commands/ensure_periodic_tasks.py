"""`manage.py ensure_periodic_tasks` (on release, and in bootstrap_demo): create the periodic
tasks of settings.PERIODIC_TASKS that are missing, leaving existing ones as an operator saved
them."""

from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from inventory_project.management.database import DatabaseCommand, one_at_a_time

LOCK = "inventory_project.ensure_periodic_tasks"


class Command(DatabaseCommand):
    help = (
        "Create the periodic tasks listed in settings.PERIODIC_TASKS that do not exist yet. "
        "Existing entries are left exactly as an operator last saved them."
    )

    def handle(self, *args: object, **options: object) -> None:
        # Two runs at once (make run beside a deploy's release step) both found an entry
        # missing, and the second failed on the unique name: one at a time.
        with one_at_a_time(LOCK):
            self._ensure()

    def _ensure(self) -> None:
        for spec in settings.PERIODIC_TASKS:
            name = str(spec["name"])
            with transaction.atomic():
                if PeriodicTask.objects.filter(name=name).exists():
                    self.stdout.write(f"periodic task {name!r} exists, left as is")
                    continue
                crontab_fields = dict(spec["crontab"])  # type: ignore[call-overload]
                schedule, _ = CrontabSchedule.objects.get_or_create(
                    timezone="UTC", **{k: str(v) for k, v in crontab_fields.items()}
                )
                PeriodicTask.objects.create(
                    name=name,
                    task=str(spec["task"]),
                    crontab=schedule,
                    kwargs=json.dumps(spec.get("kwargs", {})),
                    description=str(spec.get("description", "")),
                )
            self.stdout.write(self.style.SUCCESS(f"created periodic task {name!r}"))
