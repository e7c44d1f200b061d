"""Migrations that wait a bounded time for their locks.

`ALTER TABLE` takes the table's ACCESS EXCLUSIVE lock. Behind a long transaction on the table
(a report, a session left idle in a transaction) it waits, and every query on the table that
comes after waits behind it, reads included: the API stopped for as long as that transaction
lasted. An atomic migration now gives up after `MIGRATION_LOCK_TIMEOUT_S` instead, rolled back
whole, and `make migrate` can be run again once the transaction is gone. The limit holds for
every lock the migration waits for: a row's too, in a data migration.

Migrations that are not atomic (0005's and 0007's concurrent index builds) keep PostgreSQL's
wait: the locks they wait for let reads and writes through, so their waiting holds nobody up.
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.db.backends.postgresql import schema


class DatabaseSchemaEditor(schema.DatabaseSchemaEditor):
    def __enter__(self) -> Any:
        editor = super().__enter__()
        timeout_ms = round(settings.MIGRATION_LOCK_TIMEOUT_S * 1000)
        if self.atomic_migration and not self.collect_sql and timeout_ms:
            try:
                with self.connection.cursor() as cursor:
                    # SET LOCAL: for this migration's transaction only, whatever the connection
                    # does next.
                    cursor.execute(f"SET LOCAL lock_timeout = {timeout_ms:d}")
            except BaseException:
                self.atomic.__exit__(*sys.exc_info())
                raise
        return editor
