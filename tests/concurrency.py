"""Running management commands at the same time, for the tests of what two at once do."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.db.models import Model, QuerySet


def run_at_once(
    step: Callable[[], object], times: int = 2, within_s: float = 120
) -> list[BaseException]:
    """Run `step` in `times` threads at once; what each raised. Each gives its connection back.
    Fails if one is still running after `within_s`."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            step()
        except BaseException as exc:
            raised.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(times)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + within_s
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), f"still running after {within_s} s"
    return raised


def both_look_first(monkeypatch: pytest.MonkeyPatch, model: type[Model]) -> None:
    """Make each `exists()` on `model` wait, after looking, for the other thread to look too.

    The interleaving that lets two runs both find a row missing. At most a second: once the
    code under test serialises the runs, the other is waiting for a lock and never looks.
    """
    both_looked = threading.Barrier(2, timeout=1)
    looked = QuerySet.exists

    def exists_then_wait(self: QuerySet[Any]) -> bool:
        found = looked(self)
        if self.model is model:
            with contextlib.suppress(threading.BrokenBarrierError):
                both_looked.wait()
        return found

    monkeypatch.setattr(QuerySet, "exists", exists_then_wait)
