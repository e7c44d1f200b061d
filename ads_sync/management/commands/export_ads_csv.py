"""Write a combined CSV of the synced Google Ads rows from the database."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from ads_sync import services
from ads_sync.management.arguments import iso_date
from inventory_project.management.database import DatabaseCommand


class Command(DatabaseCommand):
    help = "Write one CSV from the database: per campaign and day, or per account and day."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--start", type=iso_date, help="first day, YYYY-MM-DD (default: the earliest stored)"
        )
        parser.add_argument(
            "--end",
            type=iso_date,
            help="last day, YYYY-MM-DD, included (default: the latest stored)",
        )
        parser.add_argument(
            "--out", help="file to write, - for standard output (default: in ADS_SYNC_OUTPUT_DIR)"
        )
        parser.add_argument(
            "--by",
            choices=["campaign", "day"],
            default="campaign",
            help="a row per campaign and day (default), or per account and day",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        start, end, by = options["start"], options["end"], options["by"]
        if start and end and start > end:
            raise CommandError(f"--start {start} is after --end {end}")
        if options["out"] == "-":
            # The CSV alone on standard output (for a pipe); the count on standard error.
            try:
                count = services.combined_csv_lines(
                    csv.writer(self.stdout), start=start, end=end, by=by
                )
                self.stdout.flush()
            except BrokenPipeError:
                # The reader stopped early (`| head`): stop quietly, as other tools do. What is
                # still buffered goes nowhere, rather than into a second traceback at exit.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                raise SystemExit(1) from None
            except OSError as exc:  # a full disk behind a redirection
                raise CommandError(f"cannot write to standard output: {exc}") from exc
            self.stderr.write(f"wrote {count} line(s) to standard output")
            return
        if options["out"]:
            out = Path(options["out"])
            if not out.parent.is_dir():  # a typo in a path is not a folder to create
                raise CommandError(f"cannot write {out}: no folder {out.parent}")
        else:
            out = Path(settings.ADS_SYNC_OUTPUT_DIR) / f"ads_export_by_{by}.csv"
        # The file is written beside itself and renamed over the old one, so readers never see
        # half of it. That is for a regular file: a link is followed (it stays a link to the
        # new file), and a device or a named pipe (`/dev/stdout`, a FIFO) is written as a
        # stream. Renamed over, it was replaced by a regular file (as root, /dev/full too).
        target = Path(os.path.realpath(out))
        if target.is_dir():
            raise CommandError(f"cannot write {out}: it is a folder")
        try:
            if target.exists() and not target.is_file():
                with target.open("w", newline="", encoding="utf-8") as stream:
                    count = services.combined_csv_lines(
                        csv.writer(stream), start=start, end=end, by=by
                    )
            else:
                count = services.combined_csv_write(out=target, start=start, end=end, by=by)
        except OSError as exc:  # a full disk, a pipe whose reader left, no permission
            raise CommandError(f"cannot write {out}: {exc}") from exc
        self.stdout.write(f"wrote {count} line(s) to {out}")
