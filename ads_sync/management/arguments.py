"""Argument types shared by the ads_sync commands."""

from __future__ import annotations

import argparse
import datetime as dt


def iso_date(value: str) -> dt.date:
    """A YYYY-MM-DD date. argparse turns ArgumentTypeError into a usage error (exit 2); a
    CommandError raised while parsing escapes Django's handler as a traceback."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc
