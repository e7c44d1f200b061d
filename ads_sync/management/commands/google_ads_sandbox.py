"""`manage.py google_ads_sandbox`: a local Google Ads API (gRPC + OAuth) for dev and demos."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Serve a local stand-in for the Google Ads API (TLS gRPC SearchStream and an OAuth "
        "token endpoint) and print the environment that points the app at it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from ads_sync.sandbox.cli import add_arguments

        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        # Imported here: only this command (never production code) loads the sandbox.
        from ads_sync.sandbox.cli import SandboxError, run

        try:
            run(options, out=self.stdout)
        except SandboxError as exc:
            raise CommandError(str(exc)) from exc
