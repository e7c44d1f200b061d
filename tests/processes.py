"""The project's long-running commands as separate processes, and ports nothing listens on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from tests.database import database_url

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def listener(*args: str, database: str | None = None) -> Iterator[subprocess.Popen[str]]:
    """`manage.py listen_product_changes` on the test database (or `database`) and this test
    run's cache keys, its stdout and stderr piped; stopped on the way out."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "inventory_project.settings.test",
        "DATABASE_URL": database or database_url(),
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "listen_product_changes", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
