"""The outbound token bucket shared by every worker (ads_sync/integrations/rate_limit.py).

The spacing across processes is checked end to end in test_google_ads.py; these pin the
bucket's own arithmetic, whose waits are what acquire() returns (Redis's clock, not ours).
"""

from __future__ import annotations

import logging
import time
import uuid
from types import SimpleNamespace

from django.conf import settings as django_settings

from ads_sync.integrations import rate_limit
from tests.processes import closed_port


def test_a_fresh_bucket_lets_one_call_through_then_spaces_the_next_at_the_rate(
    monkeypatch,
) -> None:
    name = f"ads_sync:test-bucket:{uuid.uuid4()}"
    slept: list[tuple[float, float]] = []  # (when, how long)
    clock = SimpleNamespace(
        monotonic=time.monotonic, sleep=lambda s: slept.append((time.monotonic(), s))
    )
    monkeypatch.setattr(rate_limit, "time", clock)
    started = time.monotonic()
    assert rate_limit.acquire(name, 2.0) == 0.0
    wait = rate_limit.acquire(name, 2.0)
    ((asked_at, slept_s),) = slept
    assert slept_s == wait  # it returns once its slot comes
    # Half a second after the first, less the time between the two calls: measured, not
    # assumed to be a few milliseconds (a loaded machine may stall this test longer), and
    # a millisecond for the script's rounding to microseconds.
    assert 0.5 - (asked_at - started) - 0.001 <= wait <= 0.5


def test_with_redis_down_each_process_spaces_its_own_calls(settings, monkeypatch, caplog) -> None:
    """Stopping the sync for a cache outage would be worse than a brief excess: each process
    keeps to the rate on its own, and says so once."""
    settings.CACHES = {
        "default": {
            **django_settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
        }
    }
    slept: list[float] = []
    clock = SimpleNamespace(monotonic=lambda: 100.0, sleep=slept.append)
    monkeypatch.setattr(rate_limit, "time", clock)
    monkeypatch.setattr(rate_limit, "_local_next", 0.0)
    caplog.set_level(logging.WARNING, logger=rate_limit.__name__)

    waits = [rate_limit.acquire("ads-test-bucket", rate=2.0) for _ in range(3)]

    assert waits == [0.0, 0.5, 1.0]
    assert slept == [0.5, 1.0]
    (said,) = [r.getMessage() for r in caplog.records if r.name == rate_limit.__name__]
    assert "Redis unavailable" in said
    assert "limiting per process" in said
