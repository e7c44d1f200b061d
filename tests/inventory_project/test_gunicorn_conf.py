"""inventory_project/gunicorn.conf.py, read as gunicorn reads it: a file run on its own."""

from __future__ import annotations

import http.client
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.processes import closed_port, process_env

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "inventory_project" / "gunicorn.conf.py"
NUMBERS = (
    "PORT",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_WORKER_CONNECTIONS",
    "GUNICORN_KEEPALIVE",
    "GUNICORN_TIMEOUT",
    "GUNICORN_READ_TIMEOUT_S",
)


def _read(monkeypatch, **env: str) -> dict[str, Any]:
    for name in (*NUMBERS, "HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("WEB_CONCURRENCY", "0", "1.."),  # gunicorn listened with no worker: requests hung
        ("GUNICORN_WORKER_CONNECTIONS", "0", "1.."),  # each worker accepted none: the same
        ("GUNICORN_THREADS", "0", "1.."),  # "Worker failed to boot", again and again
        ("GUNICORN_KEEPALIVE", "-1", "0.."),
        ("GUNICORN_TIMEOUT", "-1", "0.."),
        ("GUNICORN_READ_TIMEOUT_S", "-1", "0..2147483"),
        ("GUNICORN_READ_TIMEOUT_S", "2147484", "0..2147483"),  # as every duration setting
        ("PORT", "70000", "1..65535"),
    ],
)
def test_a_number_gunicorn_cannot_serve_with_is_refused_naming_it(
    monkeypatch, name, value, accepted
) -> None:
    message = f"{name} must be an integer in {accepted}, got '{value}'"
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        _read(monkeypatch, **{name: value})


@pytest.mark.parametrize("name", NUMBERS)
@pytest.mark.parametrize("value", ["abc", "1.5"])
def test_a_number_that_is_none_is_refused_naming_it(monkeypatch, name, value) -> None:
    """A bare int() traceback, which named no variable."""
    with pytest.raises(ImproperlyConfigured, match=f"{name} must be an integer, got '{value}'"):
        _read(monkeypatch, **{name: value})


@pytest.mark.parametrize(
    ("name", "setting", "default"),
    [
        ("PORT", "bind", "127.0.0.1:8000"),
        ("GUNICORN_THREADS", "threads", 4),
        ("GUNICORN_WORKER_CONNECTIONS", "worker_connections", 1000),
        ("GUNICORN_KEEPALIVE", "keepalive", 5),
        ("GUNICORN_TIMEOUT", "timeout", 30),
        ("GUNICORN_READ_TIMEOUT_S", "_read_timeout", 10),
    ],
)
def test_an_empty_number_is_the_default(monkeypatch, name, setting, default) -> None:
    assert _read(monkeypatch, **{name: ""})[setting] == default


@pytest.mark.parametrize(
    ("env", "bind"),
    [
        ({}, "127.0.0.1:8000"),
        ({"HOST": ""}, "127.0.0.1:8000"),
        ({"HOST": "0.0.0.0"}, "0.0.0.0:8000"),
    ],
)
def test_gunicorn_listens_on_loopback_unless_host_says_otherwise(monkeypatch, env, bind) -> None:
    """It listened on every interface: a server started by hand, with the local settings'
    DEBUG pages or not, was reachable from the network over plain HTTP."""
    assert _read(monkeypatch, **env)["bind"] == bind


def test_zero_keeps_its_meaning_for_keep_alive_and_the_timeout(monkeypatch) -> None:
    """gunicorn's: no keep-alive, no timeout."""
    conf = _read(monkeypatch, GUNICORN_KEEPALIVE="0", GUNICORN_TIMEOUT="0")
    assert (conf["keepalive"], conf["timeout"]) == (0, 0)


def test_gunicorn_stops_at_start_naming_the_variable() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            *("-c", str(CONF), "inventory_project.wsgi"),
        ],
        cwd=ROOT,
        env=process_env(HOST="127.0.0.1", PORT=str(closed_port()), GUNICORN_THREADS="0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: GUNICORN_THREADS must be an integer in 1.., got '0'" in (
        result.stderr
    )


def _start_log(**env: str) -> str:
    """What gunicorn with the project's config logs up to its first worker's boot."""
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            *("-c", str(CONF), "inventory_project.wsgi"),
        ],
        cwd=ROOT,
        env=process_env(HOST="127.0.0.1", PORT=str(closed_port()), WEB_CONCURRENCY="1", **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "Booting worker" in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=30)
    return "".join(lines)


@pytest.mark.parametrize(
    ("env", "warned"),
    [
        ({"GUNICORN_WORKER_CLASS": "gthread"}, True),  # the read limit's default, 10 s
        ({"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_READ_TIMEOUT_S": "0"}, False),
        ({"GUNICORN_WORKER_CLASS": "inventory_project.gunicorn_worker.ThreadWorker"}, False),
    ],
)
def test_a_read_limit_the_worker_class_does_not_apply_is_told_at_start(env, warned) -> None:
    log = _start_log(**env)
    assert "Booting worker" in log
    message = (
        "GUNICORN_READ_TIMEOUT_S=10 is not applied: only "
        "inventory_project.gunicorn_worker.ThreadWorker reads it, and GUNICORN_WORKER_CLASS is "
        "gthread"
    )
    said = [line for line in log.splitlines() if "GUNICORN_READ_TIMEOUT_S" in line]
    assert len(said) == warned
    assert all("[WARNING]" in line and message in line for line in said)


def _get(port: int, path: str, **headers: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers={"Host": "localhost", **headers})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_a_script_name_header_from_a_trusted_peer_moves_nothing(gunicorn: int) -> None:
    """A proxy that passes a client's underscore headers on (HAProxy, Envoy) let the client
    serve the admin under any prefix (past the proxy's rules for /admin/), or get a 500 for a
    prefix the path lacks. The tests connect from 127.0.0.1, which FORWARDED_ALLOW_IPS trusts."""
    assert _get(gunicorn, "/x/admin/login/", SCRIPT_NAME="/x") == 404
    assert _get(gunicorn, "/admin/login/", SCRIPT_NAME="/zzz") == 200
