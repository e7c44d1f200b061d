"""Argument types shared by the project's management commands."""

from __future__ import annotations

import argparse
import math


def seconds(value: str) -> float:
    """A delay or a wait: a finite number of seconds, not negative. Checked when the command
    starts: -1 or nan was taken, and failed (or was read as 0) when first needed."""
    try:
        delay = float(value)
    except ValueError:
        delay = math.nan
    if not math.isfinite(delay) or delay < 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {value!r}")
    return delay
