"""What the project's management commands share about the database they need."""

from __future__ import annotations

import os
import signal
import sys
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
    So was Ctrl-C from the command line: now one line, `interrupted` (what a command says of its
    state then), and the process ends by the signal, as Python ends for an uncaught Ctrl-C, so
    that a shell loop running the command stops too. `call_command`'s callers get the
    KeyboardInterrupt itself.
    """

    interrupted = "interrupted"

    def run_from_argv(self, argv: list[str]) -> None:
        try:
            super().run_from_argv(argv)
        except KeyboardInterrupt as exc:
            # A subclass may raise its own for another signal (backfill_ads' SIGTERM).
            signum = getattr(exc, "signum", signal.SIGINT)
            sys.stderr.write(f"CommandError: {self.interrupted}\n")
            sys.stderr.flush()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            raise  # not reached: the default action of those signals ends the process

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
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
