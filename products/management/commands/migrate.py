"""Django's `migrate`, which also re-creates the products tables' trigger functions after each
migration it applies or unapplies (products/triggers.py).

The post_migrate receiver (products/apps.py) does it once, when `migrate` ends. A migration
that changed a column's type and committed, followed by one that failed (a lock timeout at
MIGRATION_LOCK_TIMEOUT_S, which the README says to answer by running `migrate` again later),
never reached that end: the version trigger failed every update on the web's connections until
a later `migrate` succeeded. It also failed them through every migration that came after the
type change in the same run (a concurrent index build takes minutes).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.commands import migrate

from products.triggers import refresh_trigger_functions


class Command(migrate.Command):
    def handle(self, *args: Any, **options: Any) -> None:
        self.database = options["database"]
        super().handle(*args, **options)

    def migration_progress_callback(
        self, action: str, migration: Any = None, fake: bool = False
    ) -> None:
        super().migration_progress_callback(action, migration, fake)
        if action in ("apply_success", "unapply_success") and not fake:
            refresh_trigger_functions(apps.get_app_config("products"), self.database)
