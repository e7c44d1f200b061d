"""Write a combined CSV of the synced Google Ads rows from the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ads_sync import services
from ads_sync.management.arguments import iso_date


class Command(BaseCommand):
    help = "Write one CSV from the database: per campaign and day, or per account and day."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--start", type=iso_date)
        parser.add_argument("--end", type=iso_date)
        parser.add_argument("--out", help="file to write (default: <ADS_SYNC_OUTPUT_DIR>/...)")
        parser.add_argument("--by", choices=["campaign", "day"], default="campaign")

    def handle(self, *args: Any, **options: Any) -> None:
        start, end, by = options["start"], options["end"], options["by"]
        if start and end and start > end:
            raise CommandError(f"--start {start} is after --end {end}")
        out = Path(options["out"] or Path(settings.ADS_SYNC_OUTPUT_DIR) / f"ads_export_by_{by}.csv")
        try:
            count = services.combined_csv_write(out=out, start=start, end=end, by=by)
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc}") from exc
        self.stdout.write(f"wrote {count} line(s) to {out}")
