from __future__ import annotations

import logging
import signal
import time
from types import FrameType

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


class Command(BaseCommand):
    help = (
        "Invalidate the product cache for writes PostgreSQL reports (LISTEN product_changes): "
        "raw SQL, other services, anything that bypasses Django's signals."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reconnect-delay", type=seconds, default=1.0, help="seconds between reconnects"
        )

    def handle(self, *args: object, **options: object) -> None:
        self._running = True

        def stop(signum: int, frame: FrameType | None) -> None:
            self._running = False

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        params = connection.get_connection_params()
        params.pop("pool", None)
        while self._running:
            try:
                self._listen(params)
            except psycopg.OperationalError as exc:
                logger.warning("lost the PostgreSQL connection, reconnecting: %s", exc)
                time.sleep(float(options["reconnect_delay"]))  # type: ignore[arg-type]

    def _listen(self, params: dict[str, object]) -> None:
        with psycopg.connect(**params, autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute(f"LISTEN {CHANNEL}")
            # Whatever changed while nobody listened was never announced to us: start clean.
            cache.invalidate_all()
            self.stdout.write(f"listening on {CHANNEL!r}", ending="\n")
            self.stdout.flush()
            while self._running:
                for notify in conn.notifies(timeout=PROBE_INTERVAL_S, stop_after=500):
                    apply_notification(notify.payload)
                cache.probe()


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
