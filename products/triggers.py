"""Keep the products tables' trigger functions usable after a migration changes a column's type.

A PL/pgSQL function keeps, in each server process that ran it, plans of its own made for the
row types it was first called with. A migration changing the type of a column a trigger
function reads (`version`, `updated_at`, `id` for `products_product_bump_version`) made that
trigger fail every update, on each pooled connection that had run it before, until the
connection closed: neither a rollback nor `DEALLOCATE ALL` clears those plans. A new version of
the function does: each process compiles it again at its next call. So after each migration
(products/management/commands/migrate.py) and at the end of every `migrate`, each PL/pgSQL
function behind a trigger on the app's tables is created again from its own definition as
PostgreSQL holds it (`pg_get_functiondef`), unchanged.
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import InternalError, connections, router, transaction

from inventory_project.postgresql.base import raised_by

# PL/pgSQL functions that triggers on these tables run, and that this role may replace.
_TRIGGER_FUNCTIONS = """
SELECT DISTINCT function.oid, function.proname
FROM pg_trigger AS trigger
JOIN pg_proc AS function ON function.oid = trigger.tgfoid
JOIN pg_language AS language ON language.oid = function.prolang
WHERE trigger.tgrelid = ANY(%s::regclass[])
  AND NOT trigger.tgisinternal
  AND language.lanname = 'plpgsql'
  -- Only what this role may replace: a function someone else put behind a trigger on these
  -- tables (a DBA's audit) is not the app's, and would fail every `migrate` at its end.
  AND pg_has_role(function.proowner, 'USAGE')
  AND has_schema_privilege(function.pronamespace, 'CREATE')
ORDER BY function.proname
"""

# PostgreSQL's "tuple concurrently updated": another session replaced the function first.
_CONCURRENT_UPDATE_ROUTINE = "simple_heap_update"


def refresh_trigger_functions(app_config: AppConfig, using: str) -> list[str]:
    """Create each PL/pgSQL trigger function of the app's tables again, unchanged; return
    their names. Two `migrate` runs at once take turns (PostgreSQL refuses two concurrent
    replacements of one function: "tuple concurrently updated")."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    tables = [
        model._meta.db_table
        for model in app_config.get_models()
        if model._meta.managed and router.allow_migrate_model(using, model)
    ]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [__name__])
        existing = [t for t in tables if t in connection.introspection.table_names(cursor)]
        if not existing:
            return []
        cursor.execute(_TRIGGER_FUNCTIONS, [existing])
        functions = cursor.fetchall()
        for oid, _name in functions:
            cursor.execute("SELECT pg_get_functiondef(%s)", [oid])
            (definition,) = cursor.fetchone()
            try:
                with transaction.atomic(using=using):
                    cursor.execute(definition)  # CREATE OR REPLACE FUNCTION ...: the same function
            except InternalError as exc:
                # Replaced meanwhile by another session (a migration re-creating it, as the
                # README asks), which the advisory lock does not keep out: a new version all the
                # same. The routine's name, as for a stale plan: the message may be translated.
                if not raised_by(exc.__cause__, _CONCURRENT_UPDATE_ROUTINE):
                    raise
    return [name for _oid, name in functions]


def refresh_after_migrate(sender: AppConfig, using: str, **kwargs: Any) -> None:
    """post_migrate's receiver (products/apps.py)."""
    refresh_trigger_functions(sender, using)
