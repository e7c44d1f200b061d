"""A clock of a test's own, for code that waits with `time.monotonic()` and `time.sleep()`."""

from __future__ import annotations


class FakeClock:
    """Stands in for a module's `time`. A sleep moves the clock on by its length, at once, and
    is kept in `naps`; each look at the clock moves it on by `step`, so that with a step a loop
    that never sleeps still ends, and without one the clock moves only when the code sleeps
    (the same polls on any machine, at no cost)."""

    def __init__(self, start: float = 100.0, step: float = 0.001) -> None:
        self.now = start
        self.step = step
        self.naps: list[float] = []

    def monotonic(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds
