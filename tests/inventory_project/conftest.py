"""Fixtures for the project-wide tests."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from inventory_project import health
from tests.processes import process_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_readiness() -> None:
    """Each test's /readyz checks its own services, not results kept from the test before."""
    health.forget_results()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gunicorn() -> Iterator[int]:
    """The app under gunicorn, as deployed, on this test's database."""
    with serving() as port:
        yield port


@contextlib.contextmanager
def serving(**settings_env: str) -> Iterator[int]:
    """gunicorn with the project's config on this test's database, `settings_env` on top of
    the test settings' environment; yields its port."""
    port = _free_port()
    env = process_env(
        **{
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WEB_CONCURRENCY": "1",
            "GUNICORN_ACCESSLOG": "",
            **settings_env,
        }
    )
    gunicorn_bin = Path(sys.executable).parent / "gunicorn"
    # Its log goes to a file: a pipe is read by no one while it serves, and once full (64 KiB,
    # a browser's round of pages that each log a 404) gunicorn hung in a write, and the test too.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                str(gunicorn_bin),
                "-c",
                "inventory_project/gunicorn.conf.py",
                "inventory_project.wsgi",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(log.read().decode()) from None
                    time.sleep(0.1)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=30)


def json_request(
    port: int, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any, Any]:
    """One request to the server `serving` started on `port` (JSON `body`, `token` for the
    Authorization header): its status, headers and JSON answer."""
    headers = {"Host": "localhost"}
    if token is not None:
        headers["Authorization"] = f"Token {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        conn.close()


def admin_pages(user: Any = None) -> list[str]:
    """Every registered model's list and add page, third-party apps' as well as ours; with a
    `user`, only the add pages that user may open."""
    request = RequestFactory().get("/admin/")
    request.user = user
    pages = []
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        if user is None or model_admin.has_add_permission(request):
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    return pages
