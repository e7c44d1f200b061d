"""What the project's management commands share about the database they need."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, ProgrammingError, connection

UNDEFINED_TABLE = "42P01"


class DatabaseCommand(BaseCommand):
    """A command that needs the database: unreachable or not migrated is a one-line error.

    Without this, either was a traceback: the pool's "couldn't get a connection after 10.00
    sec", which names neither the server nor the database, or "relation ... does not exist".
    So was Ctrl-C: now one line, `interrupted` (what a command says of its state then), and the
    shell's status for the signal (130 for Ctrl-C).
    """

    interrupted = "interrupted"

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except KeyboardInterrupt as exc:
            # A subclass may raise its own (backfill_ads' SIGTERM carries `signum`).
            status = 128 + getattr(exc, "signum", signal.SIGINT)
            raise CommandError(self.interrupted, returncode=status) from None
        except OperationalError as exc:
            raise CommandError(f"PostgreSQL at {_where()} failed: {exc}") from exc
        except ProgrammingError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != UNDEFINED_TABLE:
                raise
            raise CommandError(
                f"the database at {_where()} is not migrated ({exc}): run "
                "`scripts/manage.sh migrate` (or `make migrate`) first"
            ) from exc


def _where() -> str:
    db = connection.settings_dict
    return f"{db['HOST'] or 'localhost'}:{db['PORT'] or 5432} (database {db['NAME']!r})"


@contextmanager
def one_at_a_time(name: str) -> Iterator[None]:
    """Run the block while no other process runs a block of this name: a PostgreSQL session
    advisory lock, waited for, released on the connection that took it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [name])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [name])
