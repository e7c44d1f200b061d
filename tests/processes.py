"""The project's commands in processes of their own, ports nothing listens on, and what a
process holds open."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings

from tests.database import database_url

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def open_files(pid: int | str = "self") -> list[str]:
    """What the descriptors of process `pid` point to (/proc's links: a path, `socket:[...]`,
    `pipe:[...]`); those closed while they are read are left out."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:  # closed since it was listed (listdir's own, for "self")
            continue
    return links


def process_env(**env: str) -> dict[str, str]:
    """The environment of a process of the project on the test database, with the test
    settings and this test run's cache keys; `env` laid over it."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "inventory_project.settings.test",
        "DATABASE_URL": database_url(),
        # The test settings' variables, and the ones other settings (production) read.
        "TEST_CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "TEST_CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        **env,
    }


def run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -c code *args` run to its end as `run` runs a command."""
    return run(sys.executable, "-c", code, *args, **env)


def run(*command: str, status: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
    """`command` run to its end with `process_env(**env)`, its output captured; it must exit
    with `status` (its stderr is the failure's message)."""
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=process_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == status, result.stderr
    return result


def manage(*args: str, text: bool = True, **env: str) -> subprocess.Popen[Any]:
    """`manage.py *args` started with `process_env(**env)`, its stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=process_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
    )


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, and SIGKILL if it has not ended 10 s later."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def logged_line(process: subprocess.Popen[str], text: str, *, within_s: float = 60.0) -> str:
    """Read the process's stderr up to the next line that holds `text`; that line.

    A process that has logged no such line `within_s` seconds from now is killed, so the test
    fails then, not at pytest's timeout three minutes on (a read from a pipe cannot time out).
    """
    assert process.stderr is not None
    deadline = threading.Timer(within_s, process.kill)
    deadline.start()
    try:
        while True:
            line = process.stderr.readline()
            assert line, (
                f"the process ended, or was killed after {within_s} s, without logging {text!r}"
            )
            if text in line:
                return line
    finally:
        deadline.cancel()


@contextmanager
def listener(*args: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    """`manage.py listen_product_changes *args` (see `manage`), stopped on the way out."""
    process = manage("listen_product_changes", *args, **env)
    try:
        yield process
    finally:
        stop(process)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
