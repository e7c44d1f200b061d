"""`manage.py bootstrap_demo [--username NAME]` (`make run`): a development database prepared
once, with the periodic tasks, demo products in an empty catalogue and a demo admin user."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError, CommandParser
from django.db.models import Field

from inventory_project.management.database import DatabaseCommand, one_at_a_time
from products.models import Product

PASSWORD_FILE = Path(settings.BASE_DIR) / ".demo-admin-password"
DEMO_PRODUCTS = 3000
DEFAULT_USERNAME = "admin"  # the one whose password PASSWORD_FILE keeps
LOCK = "inventory_project.bootstrap_demo"


class Command(DatabaseCommand):
    help = (
        "Prepare a development database once: periodic tasks, demo products (only into an empty "
        "catalogue), a demo admin user with a random password (kept in .demo-admin-password, "
        "which git ignores; another --username's password is printed, not kept)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=DEFAULT_USERNAME)

    def handle(self, *args: object, **options: object) -> None:
        user_model = get_user_model()
        username = str(options["username"])
        field = user_model._meta.get_field(user_model.USERNAME_FIELD)
        assert isinstance(field, Field)
        try:  # as Django's forms check it: allowed characters, length
            field.clean(username, None)
        except ValidationError as exc:
            raise CommandError(f"--username {username!r}: {' '.join(exc.messages)}") from exc
        # Two bootstraps at once both seeded an empty catalogue and both created the user.
        with one_at_a_time(LOCK):
            self._bootstrap(user_model, username)

    def _bootstrap(self, user_model: Any, username: str) -> None:
        call_command("ensure_periodic_tasks", stdout=self.stdout)
        # Demo products once: never on top of a catalogue someone already has.
        if not Product.objects.exists():
            call_command("seed_products", count=DEMO_PRODUCTS, stdout=self.stdout)
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(self.style.SUCCESS(f"created demo admin user {username!r}"))
            self.stdout.write(f"admin login: {username} / {password}")
            if username == DEFAULT_USERNAME:
                _write_owner_only(PASSWORD_FILE, password + "\n")
            else:  # the file keeps the default admin's, which `make run` prints
                self.stdout.write(f"(not kept in {PASSWORD_FILE.name}: note it now)")
            return
        # The file is this checkout's, the user the database's: after .env names another
        # database, or the password was changed, the file no longer opens the admin.
        kept = PASSWORD_FILE.read_text().strip() if PASSWORD_FILE.exists() else ""
        if kept and user.check_password(kept):
            self.stdout.write(f"admin login: {username} / {kept}")
        else:
            self.stdout.write(
                f"admin user {username!r} exists in this database with a password that "
                f"{PASSWORD_FILE.name} does not hold; set one with "
                f"`scripts/manage.sh changepassword {username}`"
            )


def _write_owner_only(path: Path, text: str) -> None:
    """Write `text` to `path`, a file only its owner may read from the moment it exists.

    Written with open() and then made 0600, it was readable by everyone in between under the
    usual umask (022). A file that was there with a wider mode is narrowed before the write,
    and a symbolic link is not followed (OSError): the password would go where it points.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(path, flags, 0o600), "w") as handle:
        if os.fstat(handle.fileno()).st_mode & 0o077:
            os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
