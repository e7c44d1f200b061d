"""A clock of a test's own, for code that waits with `time.monotonic()` and `time.sleep()`."""

from __future__ import annotations

import pytest


class FakeClock:
    """Stands in for a module's `time`. A sleep moves the clock on by its length, at once, and
    is kept in `naps`; each look at the clock moves it on by `step`, so that with a step a loop
    that never sleeps still ends, and without one the clock moves only when the code sleeps
    (the same polls on any machine, at no cost).

    A wait that never ends fails its test after `most_naps` sleeps, rather than hang it until
    pytest's timeout: as the clock costs nothing, such a loop comes there within seconds. The
    failure is pytest's own, which no `except Exception` in the code under test takes for an
    error of its own."""

    def __init__(self, start: float = 100.0, step: float = 0.001, most_naps: int = 10_000) -> None:
        self.now = start
        self.step = step
        self.most_naps = most_naps
        self.naps: list[float] = []

    def monotonic(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        if len(self.naps) >= self.most_naps:
            pytest.fail(f"still waiting after {len(self.naps)} sleeps ({sum(self.naps):.1f} s)")
        self.naps.append(seconds)
        self.now += seconds
