"""`manage.py ensure_database` (`make migrate`, `make run`): create the configured PostgreSQL
database if it does not exist yet."""

from __future__ import annotations

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from psycopg import sql


class Command(BaseCommand):
    help = "Create the configured PostgreSQL database if it does not exist yet."

    def handle(self, *args: object, **options: object) -> None:
        db = settings.DATABASES["default"]
        name = str(db["NAME"] or "")
        if not name:
            raise CommandError("DATABASE_URL names no database (postgres://user@host:port/NAME)")
        # As the app connects (DATABASE_URL's options, sslmode among them), to the server's
        # maintenance database: the configured one may not exist yet.
        params = connection.get_connection_params()
        params["dbname"] = "postgres"
        try:
            with psycopg.connect(**params, autocommit=True) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", [name]
                ).fetchone()
                if exists:
                    self.stdout.write(f"database {name!r} exists")
                    return
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            self.stdout.write(f"database {name!r} exists (created meanwhile)")
            return
        except psycopg.OperationalError as exc:
            raise CommandError(
                f"cannot reach PostgreSQL at {db['HOST']}:{db['PORT']}: {exc}"
            ) from exc
        self.stdout.write(self.style.SUCCESS(f"created database {name!r}"))
