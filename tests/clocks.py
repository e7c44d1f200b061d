"""A clock of a test's own, for code that waits with `time.monotonic()` and `time.sleep()`."""

from __future__ import annotations


class SteppingClock:
    """Stands in for a module's `time`: each look at the clock moves it on by a millisecond, so
    a loop that never sleeps still ends; each sleep moves it on by its length, at once, and is
    kept in `naps`."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.naps: list[float] = []

    def monotonic(self) -> float:
        self.now += 0.001
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds
