"""Files in tests: a umask for a while, no chmod, and a disk that fills up."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
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


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Inside, a write past `limit` bytes into any file fails with EFBIG ("File too large"), as
    a write to a full disk fails: the kernel's RLIMIT_FSIZE, with SIGXFSZ (which would end the
    process) ignored. Keep the block short: it holds for every file the process writes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
