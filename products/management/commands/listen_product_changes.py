"""`manage.py listen_product_changes` (the Procfile's `listener`): invalidate the product cache
for the writes PostgreSQL announces on `product_changes`, those that bypass Django's signals."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from inventory_project.management.arguments import seconds
from products import cache

logger = logging.getLogger(__name__)

CHANNEL = "product_changes"
# How often the listener asks Redis whether it is there (cache.probe): after an outage, entries
# cached before it are dropped this soon after Redis answers again.
PROBE_INTERVAL_S = 0.1
# The longest wait between reconnects unless told otherwise.
RECONNECT_DELAY_MAX_S = 10.0


class Command(BaseCommand):
    help = (
        "Invalidate the product cache for writes PostgreSQL reports (LISTEN product_changes): "
        "raw SQL, other services, anything that bypasses Django's signals."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reconnect-delay",
            type=seconds,
            default=1.0,
            help="seconds before the first reconnect of an outage, doubled after each failed one "
            "(default: 1)",
        )
        parser.add_argument(
            "--reconnect-delay-max",
            type=seconds,
            help=f"the longest wait between reconnects (default: {RECONNECT_DELAY_MAX_S:g}, or "
            "--reconnect-delay if longer; an outage's writes outside Django are invalidated "
            "only once the listener is back)",
        )

    def handle(self, *args: object, **options: Any) -> None:
        self._running = True

        def stop(signum: int, frame: FrameType | None) -> None:
            self._running = False

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        params = connection.get_connection_params()
        first, most = options["reconnect_delay"], options["reconnect_delay_max"]
        if most is None:
            most = max(first, RECONNECT_DELAY_MAX_S)
        delays = reconnect_delays(first, most)
        while self._running:
            self._connected = False
            try:
                self._listen(params)
            except psycopg.OperationalError as exc:
                if self._connected:  # a new outage: from the first delay again
                    delays = reconnect_delays(first, most)
                delay = next(delays)
                logger.warning("PostgreSQL connection failed, retrying in %g s: %s", delay, exc)
                self._pause(delay)

    def _pause(self, delay: float) -> None:
        """Wait `delay` seconds, or less if the command is told to stop (time.sleep resumes
        after a signal handler: SIGTERM waited out the whole delay)."""
        deadline = time.monotonic() + delay
        while self._running and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    def _listen(self, params: dict[str, object]) -> None:
        with psycopg.connect(**params, autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute(f"LISTEN {CHANNEL}")
            self._connected = True
            # Whatever changed while nobody listened was never announced to us: start clean.
            cache.invalidate_all()
            self.stdout.write(f"listening on {CHANNEL!r}", ending="\n")
            self.stdout.flush()
            while self._running:
                for notify in conn.notifies(timeout=PROBE_INTERVAL_S, stop_after=500):
                    apply_notification(notify.payload)
                cache.probe()


def reconnect_delays(first: float, most: float) -> Iterator[float]:
    """The waits before each reconnect of one outage: `first`, doubled each time, at most
    `most`. A server that stays down (or refuses the login) is asked every `most` seconds, not
    every second, with a warning each time."""
    delay = min(first, most)
    while True:
        yield delay
        delay = min(delay * 2, most)


def apply_notification(payload: str) -> None:
    """`*` means "too many rows to list": drop everything; otherwise comma-separated ids."""
    if payload == "*":
        cache.invalidate_all()
        return
    try:
        ids = [int(part) for part in payload.split(",") if part]
    except ValueError:
        logger.warning("unexpected %s payload %r: dropping every cached product", CHANNEL, payload)
        cache.invalidate_all()
        return
    if ids:
        cache.invalidate(ids)
