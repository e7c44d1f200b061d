from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from products.models import Product

PASSWORD_FILE = Path(settings.BASE_DIR) / ".demo-admin-password"
DEMO_PRODUCTS = 3000


class Command(BaseCommand):
    help = (
        "Prepare a development database once: periodic tasks, demo products (only into an empty "
        "catalogue), a demo admin user with a random password (kept in .demo-admin-password, "
        "which git ignores)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: object, **options: object) -> None:
        call_command("ensure_periodic_tasks", stdout=self.stdout)
        # Demo products once: never on top of a catalogue someone already has.
        if not Product.objects.exists():
            call_command("seed_products", count=DEMO_PRODUCTS, stdout=self.stdout)
        username = str(options["username"])
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username=username, email="", password=password)
            PASSWORD_FILE.write_text(password + "\n")
            PASSWORD_FILE.chmod(0o600)
            self.stdout.write(self.style.SUCCESS(f"created demo admin user {username!r}"))
            self.stdout.write(f"admin login: {username} / {password}")
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
