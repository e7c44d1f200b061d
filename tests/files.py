"""File modes in tests: a umask for a while, and no chmod."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """The process's umask is `mask` inside."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def refuse_chmod(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any chmod fails the test: a file private from the moment it exists needs none."""

    def refused(*args: object) -> None:
        raise AssertionError("a chmod after the file was created")

    monkeypatch.setattr(os, "chmod", refused)
    monkeypatch.setattr(os, "fchmod", refused)
