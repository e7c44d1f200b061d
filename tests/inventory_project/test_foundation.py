from __future__ import annotations

import datetime as dt
import http.client
import io
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from celery.beat import Scheduler
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from kombu import Connection
from psycopg import sql
from psycopg_pool import ConnectionPool

from ads_sync import history
from inventory_project import health, tasks
from inventory_project.celery import app as celery_app
from inventory_project.settings.base import (
    SECONDS_MAX,
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_rate,
    env_seconds,
    env_time_of_day,
)
from products.models import Product
from tests.concurrency import both_look_first, run_at_once
from tests.database import database_url
from tests.inventory_project.conftest import serving
from tests.processes import closed_port, process_env
from tests.workers import left_in_cache

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("inventory_project", "products", "ads_sync", "templates")

HOUR = dt.timedelta(hours=1)
CLOSED_PORT = 1  # nothing listens on tcpmux here; connections are refused at once


def test_settings_use_postgresql_and_redis_never_sqlite_or_local_memory() -> None:
    # Django's PostgreSQL backend with a cheaper check of pooled connections.
    assert settings.DATABASES["default"]["ENGINE"] == "inventory_project.postgresql"
    assert connection.vendor == "postgresql"
    assert settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"] >= 8
    assert settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache"
    assert settings.CELERY_BROKER_URL.startswith("amqp://")


@pytest.mark.django_db
def test_database_round_trip() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text || 'ok'", ["round-trip "])
        assert cursor.fetchone() == ("round-trip ok",)
        cursor.execute("SHOW server_version_num")
        assert int(cursor.fetchone()[0]) >= 150000


def test_cache_round_trip() -> None:
    key = f"round-trip-{uuid.uuid4()}"
    cache.set(key, {"value": 42}, timeout=30)
    assert cache.get(key) == {"value": 42}
    cache.delete(key)
    assert cache.get(key) is None


def test_healthz_is_200(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_probes_answer_head_as_get(client, path: str) -> None:
    """Uptime checkers and load balancers often probe with HEAD: a 405 would mark us down."""
    assert client.head(path).status_code == 200
    assert client.post(path).status_code == 405


def test_the_favicon_browsers_ask_every_page_for_is_served_without_a_warning(
    client, logged
) -> None:
    """Each page of the admin, the browsable API and Swagger was followed by a 404 for it, and a
    "Not Found: /favicon.ico" warning in the log."""
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an icon file
    assert "favicon" not in logged.getvalue()


@pytest.mark.django_db
def test_readyz_is_200_when_every_service_answers(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_the_database_probe_waits_its_own_timeout_for_a_connection(client, monkeypatch) -> None:
    """Not the requests' DB_POOL_TIMEOUT_S: with PostgreSQL down, /readyz took 10 s."""
    pool = connection.pool
    asked: list[float | None] = []
    real = pool.connection

    def spy(timeout: float | None = None) -> Any:
        asked.append(timeout)
        return real(timeout=timeout)

    monkeypatch.setattr(pool, "connection", spy)
    assert client.get("/readyz").status_code == 200
    assert asked == [health.CHECK_TIMEOUT_S]
    assert health.CHECK_TIMEOUT_S < settings.DB_POOL_TIMEOUT_S
    # ... nor longer than the requests' own wait once the database was found down.
    monkeypatch.setattr(pool, "timeout", settings.DB_POOL_OUTAGE_TIMEOUT_S)
    health.forget_results()
    assert client.get("/readyz").status_code == 200
    assert asked[-1] == settings.DB_POOL_OUTAGE_TIMEOUT_S


@pytest.mark.django_db
def test_readyz_may_be_a_processs_first_request(client, monkeypatch) -> None:
    """Django opens its pool on its first connection; a fresh process's first request may be
    the probe, which found the pool closed."""
    params = {**connection.get_connection_params(), "autocommit": True}
    fresh = ConnectionPool(kwargs=params, open=False, min_size=1, max_size=1)
    monkeypatch.setitem(connections["default"]._connection_pools, "default", fresh)
    try:
        response = client.get("/readyz")
    finally:
        fresh.close()
    assert response.status_code == 200, response.json()


# The API answers from PostgreSQL with Redis down, and needs the broker only for the admin's
# "run task": naming them is enough; a 503 would take every web process out at once.
@pytest.mark.django_db
def test_readyz_is_200_degraded_naming_the_cache_when_redis_is_unreachable(client) -> None:
    caches = {"default": {**settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    with override_settings(CACHES=caches):
        response = client.get("/readyz")
        health = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["failing"]) == ("degraded", ["cache"])
    assert body["checks"]["database"] == "ok"
    assert health.status_code == 200


@pytest.mark.django_db
def test_readyz_is_200_degraded_naming_the_broker_when_rabbitmq_is_unreachable(
    client, monkeypatch
) -> None:
    monkeypatch.setattr(
        celery_app.conf, "broker_url", f"amqp://guest:guest@127.0.0.1:{CLOSED_PORT}//"
    )
    response = client.get("/readyz")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["failing"]) == ("degraded", ["broker"])


class _CountedConnection(Connection):
    """kombu's Connection, counting the broker connections the probe opens."""

    opened: list[str] = []

    def ensure_connection(self, *args: Any, **kwargs: Any) -> Any:
        type(self).opened.append(self.as_uri())
        return super().ensure_connection(*args, **kwargs)


@pytest.fixture
def broker_connections(monkeypatch) -> list[str]:
    monkeypatch.setattr(health, "Connection", _CountedConnection)
    monkeypatch.setattr(_CountedConnection, "opened", [])
    return _CountedConnection.opened


@pytest.mark.django_db
@pytest.mark.parametrize("broker", ["up", "down"])
def test_readyz_calls_within_a_second_check_the_services_once(
    client, monkeypatch, broker_connections, broker
) -> None:
    """Each call opened a RabbitMQ connection (and three threads, and a database checkout):
    one client made about 250 broker connections a second. A failure is kept as long."""
    if broker == "down":
        monkeypatch.setattr(
            celery_app.conf, "broker_url", f"amqp://guest:guest@127.0.0.1:{CLOSED_PORT}//"
        )
    monkeypatch.setattr(health, "RESULT_TTL_S", 3600)  # "within the second", however slow

    first, second = client.get("/readyz"), client.get("/readyz")

    assert len(broker_connections) == 1
    assert first.json() == second.json()
    assert (second.json()["failing"] == ["broker"]) is (broker == "down")


@pytest.mark.django_db
def test_readyz_checks_again_once_its_results_are_older_than_their_time(
    client, monkeypatch, broker_connections
) -> None:
    monkeypatch.setattr(health, "RESULT_TTL_S", 0)

    client.get("/readyz")
    client.get("/readyz")

    assert len(broker_connections) == 2


@pytest.mark.django_db
def test_readyz_is_503_naming_a_database_that_hangs(client, monkeypatch) -> None:
    released = threading.Event()
    monkeypatch.setitem(health.CHECKS, "database", lambda: released.wait(60) and None)
    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.1)
    try:
        response = client.get("/readyz")
        hung = [t for t in threading.enumerate() if t.name == "readyz-database"]
    finally:
        released.set()
    # Left behind while its service hangs, it does not keep the process from exiting.
    assert [t.daemon for t in hung] == [True]
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "error: timed out"


@pytest.mark.django_db(transaction=True)
def test_a_task_runs_in_a_real_worker_over_the_real_broker(celery_worker) -> None:
    token = uuid.uuid4().hex
    tasks.heartbeat.delay(token)
    assert left_in_cache(tasks.HEARTBEAT_KEY.format(token=token)) is not None


@pytest.mark.django_db
def test_ensure_periodic_tasks_creates_missing_entries_and_keeps_operator_edits(settings) -> None:
    settings.PERIODIC_TASKS = [
        {
            "name": "test heartbeat",
            "task": "inventory_project.heartbeat",
            "crontab": {"minute": "0", "hour": "3"},
            "kwargs": {"token": "beat"},
        }
    ]
    call_command("ensure_periodic_tasks")
    entry = PeriodicTask.objects.get(name="test heartbeat")
    assert (entry.crontab.hour, entry.crontab.minute) == ("3", "0")

    entry.enabled = False
    entry.kwargs = '{"token": "edited"}'
    entry.save()
    call_command("ensure_periodic_tasks")

    entry.refresh_from_db()
    assert entry.enabled is False
    assert entry.kwargs == '{"token": "edited"}'
    assert PeriodicTask.objects.filter(name="test heartbeat").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_ensure_periodic_tasks_at_once_create_each_entry_once(settings, monkeypatch) -> None:
    """Both found it missing and the second failed on the unique name (IntegrityError)."""
    settings.PERIODIC_TASKS = [
        {
            "name": "test sessions",
            "task": "inventory_project.clear_expired_sessions",
            "crontab": {"minute": "30", "hour": "4"},
        }
    ]
    both_look_first(monkeypatch, PeriodicTask)
    errors = run_at_once(lambda: call_command("ensure_periodic_tasks", stdout=io.StringIO()))
    assert errors == []
    assert PeriodicTask.objects.filter(name="test sessions").count() == 1


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")  # read by the command only
def test_ensure_database_without_a_database_name_is_a_clear_error(settings) -> None:
    """It sent CREATE DATABASE "" (a syntax error, with a traceback)."""
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "NAME": ""}}
    with pytest.raises(CommandError, match="names no database"):
        call_command("ensure_database")


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")  # read by the command only
def test_ensure_database_creates_a_missing_database_then_finds_it(settings) -> None:
    name = f"{connection.settings_dict['NAME']}_ensured"  # this test run's own
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "NAME": name}}
    params = {**connection.get_connection_params(), "dbname": "postgres"}
    with psycopg.connect(**params, autocommit=True) as server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        try:
            created, found = io.StringIO(), io.StringIO()
            call_command("ensure_database", stdout=created)
            call_command("ensure_database", stdout=found)
            exists = server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            assert exists.fetchone() is not None
        finally:
            server.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    assert created.getvalue().strip().endswith(f"created database {name!r}")
    assert found.getvalue().strip() == f"database {name!r} exists"


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")  # read by the command only
def test_ensure_database_created_by_another_process_after_its_look_is_found(
    settings, monkeypatch
) -> None:
    """`make run` and `make migrate` started together: both saw no database, and the second
    CREATE DATABASE failed."""
    name = f"{connection.settings_dict['NAME']}_ensured_meanwhile"  # this test run's own
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "NAME": name}}
    params = {**connection.get_connection_params(), "dbname": "postgres"}
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    connect = psycopg.connect

    def connect_then_race(*args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
        conn = connect(*args, **kwargs)
        execute = conn.execute

        def execute_then_race(query: Any, *rest: Any, **named: Any) -> Any:
            result = execute(query, *rest, **named)
            if "FROM pg_database" in str(query):  # the command looked, and found none
                with connect(**params, autocommit=True) as other:
                    other.execute(create)
            return result

        conn.execute = execute_then_race  # type: ignore[method-assign]
        return conn

    with connect(**params, autocommit=True) as server:
        server.execute(drop)
        try:
            out = io.StringIO()
            with monkeypatch.context() as patched:
                patched.setattr(psycopg, "connect", connect_then_race)
                call_command("ensure_database", stdout=out)
        finally:
            server.execute(drop)
    assert out.getvalue().strip() == f"database {name!r} exists (created meanwhile)"


def test_ensure_database_connects_with_the_urls_options() -> None:
    """It took the host, port, user and password alone: a server that needs `sslmode` (or
    `options`) was asked without them."""
    result = _manage(
        "ensure_database",
        DJANGO_SETTINGS_MODULE="inventory_project.settings.local",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres?sslmode=require",
    )
    assert result.returncode != 0, result.stdout  # this server speaks no TLS
    assert "cannot reach PostgreSQL" in result.stderr
    assert "SSL" in result.stderr


def _manage(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    """manage.py in a process of its own, under the test settings unless `env` says otherwise;
    `env` is laid over this process's environment (None: the variable left out)."""
    merged = {**os.environ, "DJANGO_SETTINGS_MODULE": "inventory_project.settings.test", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={name: value for name, value in merged.items() if value is not None},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_test_settings_never_take_the_prefix_and_queue_of_make_run() -> None:
    # A shell that exported `.env` (direnv, `set -a`) gave pytest the running server's names.
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings as s; "
        "print(s.CACHES['default']['KEY_PREFIX'], s.CELERY_TASK_DEFAULT_QUEUE)",
        CACHE_KEY_PREFIX="make-run-prefix",
        CELERY_TASK_DEFAULT_QUEUE="make-run-queue",
        TEST_CACHE_KEY_PREFIX=None,
        TEST_CELERY_TASK_DEFAULT_QUEUE=None,
        PYTEST_XDIST_WORKER=None,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["inv-test", "inventory-tests"]


@pytest.mark.parametrize(
    ("given", "queue"),
    [
        (
            {
                "TEST_CACHE_KEY_PREFIX": None,
                "TEST_CELERY_TASK_DEFAULT_QUEUE": None,
                "TEST_ADS_SYNC_OUTPUT_DIR": None,
            },
            "inventory-tests-gw7",
        ),
        # A process a worker's test starts: given the worker's names, and its variable.
        (
            {
                "TEST_CACHE_KEY_PREFIX": "inv-test-gw7",
                "TEST_CELERY_TASK_DEFAULT_QUEUE": "q-gw7",
                "TEST_ADS_SYNC_OUTPUT_DIR": ".test-output-gw7",
            },
            "q-gw7",
        ),
    ],
)
def test_each_pytest_xdist_worker_takes_names_of_its_own_once(given, queue) -> None:
    """Two workers on one prefix deleted each other's keys at every test."""
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings as s; "
        "print(s.CACHES['default']['KEY_PREFIX'], s.CELERY_TASK_DEFAULT_QUEUE, "
        "s.ADS_SYNC_OUTPUT_DIR.name)",
        PYTEST_XDIST_WORKER="gw7",
        **given,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["inv-test-gw7", queue, ".test-output-gw7"]


def test_pytest_under_other_settings_stops_before_any_test() -> None:
    """A shell that exported .env's DJANGO_SETTINGS_MODULE gave pytest `make run`'s settings
    over pyproject.toml's, and every test's fixtures deleted the running server's cache keys."""
    small = "tests/inventory_project/test_logs.py"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", small],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "inventory_project.settings.local"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "not 'inventory_project.settings.local'" in result.stderr
    assert "Unset DJANGO_SETTINGS_MODULE" in result.stderr


def test_production_settings_pass_the_deploy_check() -> None:
    result = _manage(
        *("check", "--deploy", "--fail-level", "WARNING"),
        DJANGO_SETTINGS_MODULE="inventory_project.settings.production",
        SECRET_KEY="x7!" + uuid.uuid4().hex + uuid.uuid4().hex,
        ALLOWED_HOSTS="inventory.example.com",
        CSRF_TRUSTED_ORIGINS="https://inventory.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("value", "secure"), [(None, "True True"), ("false", "False False")])
def test_production_cookies_are_https_only_unless_turned_off(value, secure) -> None:
    """docker/compose.yaml serves plain HTTP without a proxy: browsers dropped the admin's
    Secure cookies there, and no login could pass the CSRF check."""
    code = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
    )
    result = _manage(
        *("shell", "--no-imports", "-c", code),
        DJANGO_SETTINGS_MODULE="inventory_project.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        SECURE_COOKIES=value,
    )
    assert result.stdout.strip() == secure, result.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("proxies", "proto", "status"),
    [
        ("127.0.0.1", "https", 404),
        ("10.9.9.9", "https", 301),
        # Two proxies, the inner one appending: the first says how the client came.
        ("127.0.0.1", "https, https", 404),
        ("127.0.0.1", "http", 301),
    ],
)
def test_https_is_believed_only_from_the_trusted_proxies(proxies, proto, status) -> None:
    """Django read X-Forwarded-Proto from any client: one that reached the server directly,
    past the proxy, was answered as over https (no redirect, and HSTS)."""
    production = {
        "DJANGO_SETTINGS_MODULE": "inventory_project.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "true",
        "FORWARDED_ALLOW_IPS": proxies,
    }
    with serving(**production) as port:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        client.request("GET", "/api/products/999999", headers={"X-Forwarded-Proto": proto})
        answer = client.getresponse()
    assert answer.status == status  # 404: taken as https; 301: sent to https
    assert ("Strict-Transport-Security" in answer.headers) == (status == 404)


def test_compose_names_each_variable_it_sets_over_docker_env() -> None:
    """Its header said that any variable of docker/.env reached the containers, while its
    `environment:` set five of them over it; and a docker/.env PORT moved gunicorn off the port
    that the web's `ports` publishes."""
    text = (ROOT / "docker" / "compose.yaml").read_text()
    header = text.partition("\nname:")[0]
    compose = yaml.safe_load(text)
    environment = compose["x-app"]["environment"]
    fixed = [name for name, value in environment.items() if "${" not in str(value)]
    assert "PORT" in fixed
    assert [name for name in fixed if not re.search(rf"\b{name}\b", header)] == []
    (published,) = compose["services"]["web"]["ports"]
    assert published.rpartition(":")[2] == environment["PORT"]


def _compose(**env: str) -> Any:
    """docker/compose.yaml with its values interpolated from `env` as Compose does it, for the
    forms the file uses: ${NAME}, ${NAME:-default}, and ${NAME:?message} (LookupError)."""

    def one(match: re.Match[str]) -> str:
        name, form, text = match.groups()
        if env.get(name):
            return env[name]
        if form == ":?":
            raise LookupError(text)
        return text if form == ":-" else ""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return (
            re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, value) if isinstance(value, str) else value
        )

    return walk(yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text()))


COMPOSE_SECRETS = {
    "SECRET_KEY": "k" * 50,
    "POSTGRES_PASSWORD": "pg-s3cret",
    "RABBITMQ_USER": "inventory",
    "RABBITMQ_PASSWORD": "mq-s3cret",
}


def test_compose_takes_the_service_passwords_from_docker_env() -> None:
    """postgres/postgres and guest/guest were set under `environment:`, which docker/.env
    cannot change; and the image lets guest in from any address."""
    compose = _compose(**COMPOSE_SECRETS)
    app, services = compose["x-app"]["environment"], compose["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pg-s3cret"
    assert app["DATABASE_URL"] == "postgres://postgres:pg-s3cret@postgres:5432/inventory"
    assert services["rabbitmq"]["environment"] == {
        "RABBITMQ_DEFAULT_USER": "inventory",
        "RABBITMQ_DEFAULT_PASS": "mq-s3cret",
    }
    assert app["CELERY_BROKER_URL"] == "amqp://inventory:mq-s3cret@rabbitmq:5672//"


@pytest.mark.parametrize("name", ["POSTGRES_PASSWORD", "RABBITMQ_USER", "RABBITMQ_PASSWORD"])
def test_compose_refuses_to_start_without_a_service_password(name) -> None:
    with pytest.raises(LookupError, match=f"set {name}"):
        _compose(**{**COMPOSE_SECRETS, name: ""})


@pytest.mark.parametrize(
    ("publish", "ports"), [(None, "127.0.0.1:8000:8000"), ("0.0.0.0:8080", "0.0.0.0:8080:8000")]
)
def test_compose_publishes_the_web_on_loopback_unless_told(publish, ports) -> None:
    """`8000:8000` published plain HTTP on every interface of the host."""
    env = COMPOSE_SECRETS if publish is None else {**COMPOSE_SECRETS, "WEB_PUBLISH": publish}
    assert _compose(**env)["services"]["web"]["ports"] == [ports]
    header = (ROOT / "docker" / "compose.yaml").read_text().partition("\nname:")[0]
    assert "WEB_PUBLISH" in header


def test_the_access_log_says_how_long_each_request_took_and_its_id(tmp_path) -> None:
    """The id is the one the answer carries, the proxy's or a new one: the request's other
    lines carry it too (test_request_ids)."""
    log = tmp_path / "access.log"
    with serving(GUNICORN_ACCESSLOG=str(log)) as port:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        client.request("GET", "/healthz", headers={"X-Request-ID": "lb-7f3a"})
        client.getresponse().read()
        client.request("GET", "/healthz")
        made = client.getresponse()
        made.read()
    given, new = log.read_text().splitlines()
    ends = r'.*"GET /healthz HTTP/1.1" 200 \d+ "-" "[^"]*" \d+ms '
    assert re.fullmatch(ends + "lb-7f3a", given), given
    assert re.fullmatch(ends + "[0-9a-f]{32}", new), new
    assert new.endswith(" " + made.headers["X-Request-ID"])


def test_requests_for_other_hosts_are_a_line_a_minute_without_tracebacks() -> None:
    # In a process of its own, as configured: what reaches its standard error.
    result = _manage(
        "shell",
        "-c",
        "from django.test import Client\n"
        "for _ in range(3):\n"
        "    assert Client().get('/healthz', HTTP_HOST='scan.ex').status_code == 400",
    )
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "Invalid HTTP_HOST" in line]
    assert len(said) == 1, result.stderr
    assert " django.security.DisallowedHost " in said[0]  # the project's format
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "setting", "default"),
    [
        # The customer folders and ads_daily_totals.csv were written into the project folder.
        ("ADS_SYNC_OUTPUT_DIR", "ADS_SYNC_OUTPUT_DIR", str(ROOT / "output")),
        # Every request was a 400.
        ("ALLOWED_HOSTS", "ALLOWED_HOSTS", "['localhost', '127.0.0.1', '[::1]']"),
        # Celery configured no queue at all: its tasks were routed to none.
        ("CELERY_TASK_DEFAULT_QUEUE", "CELERY_TASK_DEFAULT_QUEUE", "celery"),
        # The keys had no prefix at all (`:1:products:...`).
        ("CACHE_KEY_PREFIX", 'CACHES["default"]["KEY_PREFIX"]', "inv"),
        # Every token refresh failed: google-auth posted to an empty address.
        ("GOOGLE_ADS_TOKEN_URI", "GOOGLE_ADS_TOKEN_URI", "https://oauth2.googleapis.com/token"),
    ],
)
@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_value_is_the_default(name, setting, default, value) -> None:
    assert _production_setting(setting, **{name: value}) == default


@pytest.mark.parametrize("name", ["ADS_SYNC_OUTPUT_DIR", "STATIC_ROOT"])
def test_a_folder_under_tilde_is_in_the_home_folder(name, tmp_path) -> None:
    # STATIC_ROOT=~/static was a folder named `~` in the checkout.
    found = _production_setting(name, HOME=str(tmp_path), **{name: "~/files"})
    assert found == str(tmp_path / "files")


def _production_setting(setting: str, **env: str) -> str:
    """What the production settings make of `setting` (Python, printed) with `env`."""
    result = _manage(
        "shell",
        "-c",
        f"from django.conf import settings; print(settings.{setting})",
        DJANGO_SETTINGS_MODULE="inventory_project.settings.production",
        SECRET_KEY="x7!" + uuid.uuid4().hex + uuid.uuid4().hex,
        **env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("name", "setting", "default"),
    [
        ("TEST_DATABASE_NAME", 'DATABASES["default"]["TEST"]["NAME"]', "test_inventory"),
        ("TEST_CACHE_KEY_PREFIX", 'CACHES["default"]["KEY_PREFIX"]', "inv-test"),
        ("TEST_CELERY_TASK_DEFAULT_QUEUE", "CELERY_TASK_DEFAULT_QUEUE", "inventory-tests"),
        ("TEST_ADS_SYNC_OUTPUT_DIR", "ADS_SYNC_OUTPUT_DIR", str(ROOT / ".test-output")),
    ],
)
def test_an_empty_test_name_is_its_default(name, setting, default) -> None:
    result = _manage(
        "shell",
        "-c",
        f"from django.conf import settings; print(settings.{setting})",
        DJANGO_SETTINGS_MODULE="inventory_project.settings.test",
        PYTEST_XDIST_WORKER=None,
        **{name: " "},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == default


# Where the project reads its environment: the settings, gunicorn's config, the entry points'
# DJANGO_SETTINGS_MODULE, and the Procfile's `${NAME:-default}` (the worker's concurrency, the
# sandbox's ports).
_READS_VARIABLE = re.compile(
    r"""(?:env_\w+|os\.environ\.get|os\.environ\.setdefault)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
)


def test_env_example_names_every_variable_read_and_no_other() -> None:
    """.env.example is the list of every variable the project reads (its header, the README's
    Configuration): a setting added without its line, or a line left for a setting removed,
    makes it wrong without a word."""
    example = re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    project = ROOT / "inventory_project"
    python = [
        *(project / "settings").glob("*.py"),
        *(project / name for name in ("gunicorn.conf.py", "wsgi.py", "celery.py")),
        ROOT / "manage.py",
    ]
    read = {name for path in python for name in _READS_VARIABLE.findall(path.read_text())}
    read |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "Procfile").read_text()))
    read -= {"PYTEST_XDIST_WORKER"}  # pytest-xdist's own, in its workers (settings/test.py)
    assert len(example) == len(set(example)), "a variable named twice"
    assert sorted(set(example) - read) == [], "named in .env.example, read nowhere"
    assert sorted(read - set(example)) == [], "read, but not in .env.example"


@pytest.mark.parametrize("module", ["inventory_project.wsgi", "inventory_project.celery"])
def test_the_web_and_celery_apps_take_the_production_settings_unless_told(module) -> None:
    """They took the local ones: a server or worker started without DJANGO_SETTINGS_MODULE
    showed DEBUG pages and signed with the public development key."""
    code = f"import {module}; from django.conf import settings; print(settings.SETTINGS_MODULE)"
    env = process_env(SECRET_KEY=secrets.token_urlsafe(50))
    del env["DJANGO_SETTINGS_MODULE"]
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "inventory_project.settings.production"


def test_manage_py_takes_the_local_settings_unless_told() -> None:
    code = "from django.conf import settings; print(settings.SETTINGS_MODULE)"
    result = _manage("shell", "--no-imports", "-c", code, DJANGO_SETTINGS_MODULE=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "inventory_project.settings.local"


def test_production_settings_refuse_to_start_without_a_secret_key() -> None:
    result = _manage(
        "check", DJANGO_SETTINGS_MODULE="inventory_project.settings.production", SECRET_KEY=None
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1:6379",
        "http://127.0.0.1:6379/0",
        "REDIS://127.0.0.1:6379/0",  # what redis-py refuses, urlsplit would take
        " redis://127.0.0.1:6379/0",
        "unix:/tmp/redis.sock",
    ],
)
def test_settings_refuse_a_redis_url_without_its_scheme(value) -> None:
    result = _manage("check", REDIS_URL=value)
    assert result.returncode != 0
    assert "ImproperlyConfigured: REDIS_URL must be a redis://" in result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # Both passed `check`: every API read was then a 500 (urllib's ValueError), or the
        # cache was silently db 0.
        ("redis://127.0.0.1:notaport/0", "its port is not a number"),
        ("redis://127.0.0.1:6379/cache", "a whole number (redis://host:6379/0)"),
        ("redis://127.0.0.1:6379/-1", "a whole number (redis://host:6379/0)"),
        # A password with an unencoded `/` lands in the path: the message must not show it.
        ("redis://:12/s3cret@127.0.0.1:6379/0", "a whole number (redis://host:6379/0)"),
        ("redis://127.0.0.1:6379/0,redis://:s3cret@h:6379/x", "a whole number"),
    ],
)
def test_a_redis_url_redis_py_would_misread_is_refused_naming_it(value, message) -> None:
    result = _manage("check", REDIS_URL=value)
    assert result.returncode != 0
    assert "ImproperlyConfigured: REDIS_URL" in result.stderr
    assert message in result.stderr
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize(
    "value",
    [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/15",
        "unix:///tmp/redis.sock",
        # django-redis's primary and replicas; redis-py's `?db=`, which wins over the path.
        "redis://127.0.0.1:6379/0,redis://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/x?db=2",
    ],
)
def test_redis_urls_redis_py_reads_are_taken(value) -> None:
    result = _manage("check", REDIS_URL=value)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("info", "INFO"),
        (" Warning ", "WARNING"),
        ("", "INFO"),
        ("warn", "WARNING"),
        ("fatal", "CRITICAL"),
    ],
)
def test_the_log_level_is_taken_in_any_case_and_empty_is_the_default(value, level) -> None:
    """`info` (which celery's --loglevel takes) stopped every Django process with
    logging.config's "Unable to configure root logger"."""
    result = _manage(
        "shell",
        "-c",
        "import logging; print(logging.getLevelName(logging.getLogger().level))",
        LOG_LEVEL=value,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == level


@pytest.mark.parametrize("value", ["verbose", "10", "NOTSET"])
def test_a_log_level_logging_does_not_name_is_refused_naming_it(value) -> None:
    result = _manage("check", LOG_LEVEL=value)
    assert result.returncode != 0
    assert (
        "ImproperlyConfigured: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
        f"WARN, FATAL (any case), got '{value}'"
    ) in result.stderr


@pytest.mark.parametrize(("min_size", "max_size"), [("2", "1"), ("5", "4")])
def test_a_pool_max_below_its_min_is_refused_naming_both(min_size, max_size) -> None:
    """It passed `check`; then every request was a 500, and /readyz a 503, with psycopg_pool's
    "max_size must be greater or equal than min_size"."""
    result = _manage("check", DB_POOL_MIN_SIZE=min_size, DB_POOL_MAX_SIZE=max_size)
    assert result.returncode != 0
    assert (
        f"ImproperlyConfigured: DB_POOL_MAX_SIZE must be at least DB_POOL_MIN_SIZE ({min_size}), "
        f"got {max_size}"
    ) in result.stderr


def test_a_pool_max_equal_to_its_min_is_taken() -> None:
    assert _manage("check", DB_POOL_MIN_SIZE="3", DB_POOL_MAX_SIZE="3").returncode == 0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        # A traceback from urllib that named neither the variable nor the URL; the worker
        # and beat stopped with it, the web started with its /readyz failing.
        ("CELERY_BROKER_URL", "amqp://guest:s3cret@127.0.0.1:notaport//", "its port is not"),
        ("CELERY_BROKER_URL", "amqp://guest:s3cret@[::1//", "IPv6 address is malformed"),
        # urllib cuts at the `/` and took the password's start for the port, in its message.
        ("CELERY_BROKER_URL", "amqp://guest:s3cret/more@127.0.0.1:5672//", "percent-encode"),
        ("CELERY_BROKER_URL", "guest:s3cret@127.0.0.1", "a transport Celery knows"),
        ("CELERY_BROKER_URL", "http://guest:s3cret@127.0.0.1//", "got 'http'"),
        (
            "CELERY_BROKER_URL",
            "amqp://guest:guest@127.0.0.1//;amqp://guest:s3cret@127.0.0.1:x//",
            "its port is not",
        ),
        ("DATABASE_URL", "postgres://u:s3cret@[::1/inventory", "IPv6 address is malformed"),
        ("DATABASE_URL", "postgres://u:s3cret/more@127.0.0.1/inventory", "percent-encode"),
    ],
)
def test_a_url_python_cannot_read_is_refused_naming_it_but_not_its_password(
    name, value, message
) -> None:
    result = _manage("check", **{name: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name}" in result.stderr
    assert message in result.stderr
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize(
    "value",
    [
        "AMQP://guest:guest@127.0.0.1:5672//;amqp://guest:guest@127.0.0.2:5672//",
        "redis+socket:///var/run/redis/redis.sock",  # kombu's redis transport
    ],
)
def test_broker_urls_kombu_takes_are_taken(value) -> None:
    assert _manage("check", CELERY_BROKER_URL=value).returncode == 0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GOOGLE_ADS_CUSTOMER_IDS", "123-456-7890,12345", "got '12345'"),
        ("GOOGLE_ADS_CUSTOMER_IDS", "123-456-789O", "got '123-456-789O'"),
        ("GOOGLE_ADS_LOGIN_CUSTOMER_ID", "1234567890,1234567891", "takes one customer id"),
    ],
)
def test_settings_refuse_a_customer_id_that_is_not_ten_digits(name, value, message) -> None:
    result = _manage("check", **{name: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name}" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"), [("03:00", (3, 0)), ("3:05", (3, 5)), ("23:59", (23, 59)), ("7", (7, 0))]
)
def test_the_daily_sync_time_is_read_as_hour_and_minute(monkeypatch, value, expected) -> None:
    monkeypatch.setenv("ADS_SYNC_DAILY_AT", value)
    assert env_time_of_day("ADS_SYNC_DAILY_AT", "03:00") == expected


@pytest.mark.parametrize("value", ["25:00", "24:00", "03:60", "03:00:00", "3am", "-1:00"])
def test_a_daily_sync_time_beat_could_never_run_is_refused_naming_it(monkeypatch, value) -> None:
    """Beat took "25:00", and the daily detection then never ran."""
    monkeypatch.setenv("ADS_SYNC_DAILY_AT", value)
    with pytest.raises(ImproperlyConfigured, match=f"ADS_SYNC_DAILY_AT .* got '{value}'"):
        env_time_of_day("ADS_SYNC_DAILY_AT", "03:00")


@pytest.mark.parametrize("value", ["100/m", "5/10s", "1000/h", "1/d", " 50/m "])
def test_a_rate_limit_is_read_as_django_ratelimit_reads_it(monkeypatch, value) -> None:
    monkeypatch.setenv("RATELIMIT_READS", value)
    assert env_rate("RATELIMIT_READS", "100/m") == value.strip()


@pytest.mark.parametrize("value", ["abc", "5/x", "5/mx", "100", "100/", "0/m", "5/0m", "-5/m"])
def test_a_rate_limit_it_would_misread_or_fail_on_is_refused_naming_it(monkeypatch, value) -> None:
    """ "abc" passed `check` and made every API read a 500; "5/x" was taken as 5 a second."""
    monkeypatch.setenv("RATELIMIT_READS", value)
    with pytest.raises(
        ImproperlyConfigured, match=f"RATELIMIT_READS must be a rate.*got '{value}'"
    ):
        env_rate("RATELIMIT_READS", "100/m")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0"])
def test_a_timeout_or_rate_that_is_no_positive_number_is_refused_naming_it(
    monkeypatch, value
) -> None:
    """ADS_SYNC_TIMEOUT_S=nan stopped every worker at start with "cannot convert float NaN to
    integer", which named no setting."""
    monkeypatch.setenv("ADS_SYNC_TIMEOUT_S", value)
    with pytest.raises(ImproperlyConfigured, match=f"ADS_SYNC_TIMEOUT_S must be .* got '{value}'"):
        env_float("ADS_SYNC_TIMEOUT_S", 60.0, positive=True)


@pytest.mark.parametrize(
    ("read", "name", "value", "message"),
    [
        (env_bool, "DEBUG", "maybe", "a boolean (true/false)"),
        (env_int, "DB_POOL_MIN_SIZE", "two", "an integer"),
        (env_float, "ADS_SYNC_TIMEOUT_S", "1,5", "a number"),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_naming_its_variable(
    monkeypatch, read, name: str, value: str, message: str
) -> None:
    """Python's own error ("invalid literal for int() with base 10: 'two'") names no
    variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=f"^{name} must be {re.escape(message)}, got"):
        read(name, 1)


def test_a_database_url_that_is_not_postgresql_is_refused_naming_it() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_URL must be a postgres:// URL"):
        database_from_url("mysql://root@127.0.0.1:3306/inventory")


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("0.5", 0.5), ("2", 2.0)])
def test_a_delay_may_be_zero(monkeypatch, value, expected) -> None:
    monkeypatch.setenv("ADS_SYNC_RETRY_BASE_S", value)
    assert env_float("ADS_SYNC_RETRY_BASE_S", 1.0) == expected


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_a_delay_below_zero_or_not_a_number_is_refused(monkeypatch, value) -> None:
    monkeypatch.setenv("ADS_SYNC_RETRY_BASE_S", value)
    with pytest.raises(ImproperlyConfigured, match="ADS_SYNC_RETRY_BASE_S must be"):
        env_float("ADS_SYNC_RETRY_BASE_S", 1.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ADS_SYNC_HISTORY_DAYS", "0"),  # planned nothing, every day
        # Every gap detection failed (OverflowError): the dates went back past the year 1.
        ("ADS_SYNC_HISTORY_DAYS", "1000000"),
        ("ADS_SYNC_LOOKBACK_DAYS", "-1"),
        ("ADS_SYNC_LOOKBACK_DAYS", "1000000"),
        ("DB_PREPARE_THRESHOLD", "-1"),  # taken as 0, silently
        ("DB_PREPARED_MAX", "0"),
        ("ADS_SYNC_MAX_ATTEMPTS", "0"),
        # The failure that reached it failed too: the date of the next try overflowed.
        ("ADS_SYNC_FAILED_BACKOFF_MAX_DAYS", "3000000"),
        ("PRODUCT_CACHE_TTL_S", "2147484"),  # as every duration setting
        ("PORT", "70000"),
        ("RATELIMIT_IPV4_MASK", "33"),
    ],
)
def test_a_count_out_of_its_range_is_refused_naming_it(name, value) -> None:
    result = _manage("check", **{name: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} must be an integer in " in result.stderr
    assert f"got '{value}'" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        # OverflowError on every Redis call, and on every Google Ads call.
        ("REDIS_SOCKET_TIMEOUT_S", "1e10", "at most 2147483 seconds"),
        ("ADS_SYNC_TIMEOUT_S", "1e10", "at most 2147483 seconds"),
        # Every call's wait was infinite, and its sleep raised OverflowError.
        ("ADS_SYNC_MAX_QPS", "1e-320", "at least 0.001"),
    ],
)
def test_a_duration_or_rate_beyond_what_its_callers_take_is_refused_naming_it(
    name, value, message
) -> None:
    result = _manage("check", **{name: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} must be {message}, got '{value}'" in result.stderr


def test_a_duration_may_be_as_long_as_postgresqls_longest_timeout(monkeypatch) -> None:
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT_S", str(SECONDS_MAX))
    assert env_seconds("REDIS_SOCKET_TIMEOUT_S", 0.25, positive=True) == SECONDS_MAX
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT_S", str(SECONDS_MAX + 1))
    with pytest.raises(ImproperlyConfigured, match="at most"):
        env_seconds("REDIS_SOCKET_TIMEOUT_S", 0.25, positive=True)


# Twelve hours behind UTC and fourteen ahead: at any hour, one of them is on another date.
@pytest.mark.parametrize("machine_tz", ["UTC", "Etc/GMT+12", "Etc/GMT-14"])
def test_a_history_of_googles_37_months_is_taken_and_no_more(machine_tz) -> None:
    """Counted from the UTC date, as `backfill_ads --days`: the bound was the machine's date,
    so west of UTC the documented value was refused for part of each day. Past 37 months Google
    Ads serves no daily rows: each older day failed at every detection."""
    days = history.DAYS_SERVED_MOST
    taken = _manage("check", ADS_SYNC_HISTORY_DAYS=str(days), TZ=machine_tz)
    refused = _manage("check", ADS_SYNC_HISTORY_DAYS=str(days + 1), TZ=machine_tz)
    assert taken.returncode == 0, taken.stderr
    assert "ADS_SYNC_HISTORY_DAYS must be an integer in " in refused.stderr


def _history_days_on(day: dt.date, days: int) -> subprocess.CompletedProcess[str]:
    """The settings read with ADS_SYNC_HISTORY_DAYS=`days` by a process started on `day`."""
    script = (
        "import datetime, importlib\n"
        "class Day(datetime.datetime):\n"
        "    @classmethod\n"
        "    def now(cls, tz=None):\n"
        f"        return cls({day.year}, {day.month}, {day.day}, 12, tzinfo=tz)\n"
        "datetime.datetime = Day\n"
        "print(importlib.import_module('inventory_project.settings.test').ADS_SYNC_HISTORY_DAYS)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "ADS_SYNC_HISTORY_DAYS": str(days)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("taken_on", "later"),
    [(dt.date(2027, 2, 28), dt.date(2027, 3, 1)), (dt.date(2026, 11, 30), dt.date(2026, 12, 1))],
)
def test_a_history_the_settings_take_one_day_is_taken_the_next(taken_on, later) -> None:
    """37 months are 1126 days on some days and 1123 on others: the most the settings took on
    one day made every process (web, workers, beat, manage.py) fail to start on the next."""
    days = history.days_served(taken_on)
    taken = _history_days_on(taken_on, days)
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.split() == [str(days)]
    again = _history_days_on(later, days)
    assert again.returncode == 0, again.stderr[-300:]


@pytest.mark.parametrize(("soft", "hard"), [("360", "360"), ("400", "360")])
def test_a_soft_time_limit_not_below_the_hard_one_is_refused(soft, hard) -> None:
    """The hard limit killed the task's process before its soft limit could let it end."""
    result = _manage("check", CELERY_TASK_SOFT_TIME_LIMIT=soft, CELERY_TASK_TIME_LIMIT=hard)
    assert result.returncode != 0
    assert (
        "ImproperlyConfigured: CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT "
        f"({hard}), got {soft}"
    ) in result.stderr


@pytest.mark.parametrize(
    "name",
    [
        "MIGRATION_LOCK_TIMEOUT_S",
        "WEB_DB_LOCK_TIMEOUT_S",
        "WEB_DB_STATEMENT_TIMEOUT_S",
        "WEB_DB_IDLE_IN_TRANSACTION_TIMEOUT_S",
    ],
)
@pytest.mark.parametrize("value", ["0.0001", "3000000"])
def test_a_postgresql_timeout_postgresql_would_misread_is_refused(name, value) -> None:
    """Below a millisecond it read 0 (no limit); past 2^31 - 1 ms every migration or web
    connection that set it failed."""
    result = _manage("check", **{name: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} must be 0 (no limit) or" in result.stderr
    assert f"got '{value}'" in result.stderr


@pytest.mark.parametrize(("answer", "statement"), [("10", "10"), ("5", "10"), ("2", "3")])
def test_an_answer_limit_not_above_the_statement_limit_is_refused(answer, statement) -> None:
    """A slow statement would lose its connection before PostgreSQL's own limit answered."""
    result = _manage("check", WEB_DB_ANSWER_TIMEOUT_S=answer, WEB_DB_STATEMENT_TIMEOUT_S=statement)
    assert result.returncode != 0
    assert "ImproperlyConfigured: WEB_DB_ANSWER_TIMEOUT_S must be above" in result.stderr


@pytest.mark.parametrize(("answer", "statement"), [("0", "10"), ("2", "0"), ("11", "10")])
def test_an_answer_limit_above_the_statement_limit_or_either_off_is_accepted(
    answer, statement
) -> None:
    result = _manage("check", WEB_DB_ANSWER_TIMEOUT_S=answer, WEB_DB_STATEMENT_TIMEOUT_S=statement)
    assert result.returncode == 0, result.stderr


def test_bad_numbers_stop_the_service_at_start_naming_them() -> None:
    for name, value in [("ADS_SYNC_TIMEOUT_S", "nan"), ("ADS_SYNC_HISTORY_DAYS", "0")]:
        result = _manage("check", **{name: value})
        assert result.returncode != 0
        assert f"ImproperlyConfigured: {name} must be" in result.stderr


def test_a_bad_rate_limit_stops_the_service_at_start() -> None:
    result = _manage("check", RATELIMIT_WRITES="5/x")
    assert result.returncode != 0
    assert "ImproperlyConfigured: RATELIMIT_WRITES must be a rate" in result.stderr


@pytest.mark.django_db
def test_beat_clears_expired_sessions_daily_and_keeps_live_ones() -> None:
    call_command("ensure_periodic_tasks")
    entry = PeriodicTask.objects.get(name="sessions: clear expired")
    assert entry.task in celery_app.tasks
    now = timezone.now()
    Session.objects.create(session_key="e" * 32, session_data="", expire_date=now - HOUR)
    Session.objects.create(session_key="l" * 32, session_data="", expire_date=now + HOUR)

    celery_app.tasks[entry.task].apply().get()

    assert list(Session.objects.values_list("session_key", flat=True)) == ["l" * 32]


def test_beat_adds_no_result_cleanup_task_of_its_own() -> None:
    scheduler = Scheduler(app=celery_app, lazy=True)
    scheduler.install_default_entries(scheduler.data)
    assert "celery.backend_cleanup" not in scheduler.data


@pytest.mark.parametrize(
    "command",
    [
        ["seed_products", "--count", "1"],
        ["ensure_periodic_tasks"],
        ["export_ads_csv", "--out", "-"],
    ],
)
def test_a_command_whose_database_is_unreachable_says_where_in_one_line(command) -> None:
    """It was the pool's traceback: "couldn't get a connection after 10.00 sec", no server."""
    done = _manage(
        *command, DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere", DB_POOL_TIMEOUT_S="1"
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert "CommandError: PostgreSQL at 127.0.0.1:1 (database 'nowhere') failed" in done.stderr


@pytest.mark.django_db
@pytest.mark.parametrize(
    "command",
    [
        ["seed_products", "--count", "1"],
        # A CSV on standard output held its header before the error.
        ["export_ads_csv", "--out", "-"],
        ["export_ads_csv", "--out", "-", "--by", "day"],
    ],
)
def test_a_command_on_a_database_not_migrated_says_to_migrate(command) -> None:
    """It was a ProgrammingError traceback: relation ... does not exist."""
    db = connection.settings_dict
    name = f"{db['NAME']}_unmigrated"
    with psycopg_connect(db) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        done = _manage(*command, DATABASE_URL=database_url(name), DB_POOL_TIMEOUT_S="1")
    finally:
        with psycopg_connect(db) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert "is not migrated" in done.stderr
    assert "scripts/manage.sh migrate" in done.stderr
    assert done.stdout == ""


def psycopg_connect(db: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )


@pytest.mark.parametrize("port", ["abc", "99999"])
def test_a_database_url_with_a_bad_port_names_the_setting(port: str) -> None:
    """It was urllib's ValueError, a traceback naming neither the setting nor the URL's part."""
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL: its port is not a number"):
        database_from_url(f"postgres://postgres@127.0.0.1:{port}/x")


def _dotenv(tmp_path: Path, content: str, script: str) -> subprocess.CompletedProcess[str]:
    """`script` in bash after scripts/dotenv.sh has read `content` as .env, GUNICORN_ACCESSLOG
    set in the shell."""
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "dotenv.sh").symlink_to(ROOT / "scripts" / "dotenv.sh")
    (tmp_path / ".env").write_text(content)
    return subprocess.run(
        ["bash", "-c", f"set -eu; source scripts/dotenv.sh; {script}"],
        cwd=tmp_path,
        env={**os.environ, "GUNICORN_ACCESSLOG": "-"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("line", "value"),
    [
        # honcho's parser, which read it before, cut the value at `#`: Django's
        # get_random_secret_key() puts one in most keys.
        ("SECRET_KEY=ab#cd$ef", "ab#cd$ef"),
        # A bare `NAME=` sets nothing, as honcho's parser read it (a .env copied from an
        # older .env.example has `SECRET_KEY=`, `GOOGLE_ADS_REFRESH_TOKEN=` ...); `NAME=""`
        # sets an empty value, which honcho could not.
        ("GUNICORN_ACCESSLOG=", "-"),
        ("GUNICORN_ACCESSLOG=   # off", "-"),
        ('GUNICORN_ACCESSLOG=""', ""),
        ("export SECRET_KEY=abc", "abc"),  # dropped too
        ("SECRET_KEY = ab cd ", "ab cd"),  # "abcd"
        ("SECRET_KEY=' ab # cd '", " ab # cd "),
        ('SECRET_KEY=""', ""),
        # A comment after a value, as python-dotenv and Docker Compose read one.
        ("PORT=8001  # the web's", "8001"),
        ("SECRET_KEY='abc' # the key", "abc"),
        # Escapes in double quotes, as honcho, python-dotenv and Compose read them.
        ('SECRET_KEY="ab\\"cd\\\\e # f"', 'ab"cd\\e # f'),
    ],
)
def test_dotenv_gives_each_value_as_written(tmp_path, line, value) -> None:
    name = line.removeprefix("export ").partition("=")[0].strip()
    result = _dotenv(tmp_path, f"# a comment\n\n{line}\n", f'printf "[%s]" "${name}"')
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"[{value}]"


def test_a_byte_order_mark_before_the_first_line_is_not_part_of_it(tmp_path) -> None:
    """Notepad writes one; the first line, a comment, was refused as not NAME=value."""
    result = _dotenv(
        tmp_path, "\ufeff# copied from .env.example\nPORT=8001\n", 'printf "[%s]" "$PORT"'
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[8001]"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("SECRET_KEY", "not NAME=value"),
        ("1KEY=abc", "not NAME=value"),
        ("SECRET_KEY='abc' def", "SECRET_KEY's value starts with a quote that does not end"),
        ('SECRET_KEY="abc', "SECRET_KEY's value starts with a quote that does not end"),
    ],
)
def test_a_dotenv_line_it_cannot_read_stops_it_naming_the_line(tmp_path, line, message) -> None:
    result = _dotenv(tmp_path, f"PORT=8001\n{line}\n", "echo went on")
    assert result.returncode != 0
    assert result.stderr.startswith(f".env, line 2: {message}")
    assert "went on" not in result.stdout


def test_ensure_services_passes_no_service_url_on_a_command_line(tmp_path) -> None:
    """It gave each URL, password and all, to `python3 -c` as an argument: every user of the
    machine can read a process's arguments (/proc/<pid>/cmdline)."""
    python3 = shutil.which("python3")
    (tmp_path / "python3").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{tmp_path}/arguments"\nexec {python3} "$@"\n'
    )
    (tmp_path / "python3").chmod(0o755)
    # Another host (a documentation address): the script starts nothing for it, whatever runs here.
    urls = {
        "DATABASE_URL": "postgres://app:pg-s3cret@192.0.2.1:5432/inventory",
        "REDIS_URL": "redis://:redis-s3cret@192.0.2.1:6379/0",
        "CELERY_BROKER_URL": "amqp://app:mq-s3cret@192.0.2.1:5672//",
    }
    result = subprocess.run(
        ["scripts/ensure_services.sh"],
        cwd=ROOT,
        env={**os.environ, **urls, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    arguments = (tmp_path / "arguments").read_text()
    assert arguments.count("urlsplit") == 3  # each URL was looked at
    assert [word for word in ("s3cret", "192.0.2.1") if word in arguments] == []


def _ensure_browser(
    tmp_path: Path,
    *,
    uid: int,
    sudo: str | None = "asks",
    apt_get: str | None = "installs",
    packaged: tuple[str, ...] = ("chromium", "chromium-driver"),
) -> tuple[subprocess.CompletedProcess[str], str]:
    """scripts/ensure_browser.sh on a PATH of fakes with no browser on it: `id -u` prints `uid`;
    `sudo` (None: none) asks for a password, or runs the command ("runs") in an environment
    without DEBIAN_FRONTEND, as sudo's env_reset; `apt-get` (None: none) "installs" chromium
    and chromedriver onto the PATH, or "fails"; `apt-cache madison` lists the `packaged` ones.
    Returns the run and what sudo and apt-get were called with (one line per call)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    fakes = {
        "id": f"echo {uid}",
        "apt-cache": (
            '[ "$1" = madison ] || exit 100\n'
            f'case " {" ".join(packaged)} " in *" $2 "*) echo " $2 | 1.0 | debian";; esac'
        ),
    }
    if sudo is not None:
        fakes["sudo"] = (
            f'echo "sudo $*" >> {calls}\n'
            '[ "$1" = -n ] || { read -rp "[sudo] password: "; exit 1; }\n'
            + (
                'shift; unset DEBIAN_FRONTEND; "$@"'
                if sudo == "runs"
                else "echo 'a password is required'; exit 1"
            )
        )
    if apt_get is not None:
        install = (
            ""
            if apt_get == "fails"
            else (
                "for name in chromium chromedriver; do\n"
                f"  printf '#!/bin/sh\\n' > {bin_dir}/$name; /bin/chmod +x {bin_dir}/$name\n"
                "done\n"
            )
        )
        fakes["apt-get"] = f'echo "apt-get $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >> {calls}\n' + (
            '[ "$1" = install ] || exit 0\n' + install + ("exit 100" if apt_get == "fails" else "")
        )
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "env").symlink_to(shutil.which("env") or "/usr/bin/env")
    result = subprocess.run(
        ["/bin/bash", "scripts/ensure_browser.sh"],
        cwd=ROOT,
        env={"PATH": str(bin_dir), "DEBIAN_FRONTEND": ""},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, calls.read_text() if calls.exists() else ""


def test_ensure_browser_installs_chromium_with_apt_get_as_root(tmp_path) -> None:
    result, calls = _ensure_browser(tmp_path, uid=0, sudo=None)
    assert result.returncode == 0, result.stderr
    assert calls.splitlines() == [
        "apt-get update -qq DEBIAN_FRONTEND=noninteractive",
        "apt-get install -y -qq chromium chromium-driver DEBIAN_FRONTEND=noninteractive",
    ]


def test_ensure_browser_installs_through_a_sudo_without_password(tmp_path) -> None:
    # sudo resets the environment: an exported DEBIAN_FRONTEND never reached apt-get.
    result, calls = _ensure_browser(tmp_path, uid=1000, sudo="runs")
    assert result.returncode == 0, result.stderr
    installs = [line for line in calls.splitlines() if line.startswith("apt-get install")]
    assert installs == [
        "apt-get install -y -qq chromium chromium-driver DEBIAN_FRONTEND=noninteractive"
    ]
    assert all(line.startswith("sudo -n ") for line in calls.splitlines() if "sudo" in line)


def test_ensure_browser_skips_rather_than_wait_for_a_sudo_password(tmp_path) -> None:
    # A sudo that asked stopped `make test` at a password prompt.
    result, calls = _ensure_browser(tmp_path, uid=1000, sudo="asks")
    assert result.returncode == 0, result.stderr
    assert "sudo asks for a password" in result.stderr
    assert "browser tests will be skipped" in result.stderr
    assert "apt-get" not in calls


@pytest.mark.parametrize(
    ("uid", "sudo", "apt_get", "reason"),
    [(0, None, None, "no apt-get"), (1000, None, "installs", "not root and no sudo")],
)
def test_ensure_browser_skips_where_it_cannot_install(tmp_path, uid, sudo, apt_get, reason) -> None:
    result, calls = _ensure_browser(tmp_path, uid=uid, sudo=sudo, apt_get=apt_get)
    assert result.returncode == 0, result.stderr
    assert f"and {reason} to install them" in result.stderr
    assert calls == ""


def test_ensure_browser_skips_where_apt_has_no_such_packages(tmp_path) -> None:
    # Ubuntu: no chromium package (a snap), and the install failed `make test`.
    result, calls = _ensure_browser(tmp_path, uid=0, sudo=None, packaged=("chromium-browser",))
    assert result.returncode == 0, result.stderr
    assert "apt's sources have no chromium chromium-driver (Ubuntu's" in result.stderr
    assert "browser tests will be skipped" in result.stderr
    assert calls.splitlines() == ["apt-get update -qq DEBIAN_FRONTEND=noninteractive"]


def test_ensure_browser_fails_when_apt_get_fails(tmp_path) -> None:
    # Skipped without a word, CI would pass with no browser test run.
    result, _ = _ensure_browser(tmp_path, uid=0, sudo=None, apt_get="fails")
    assert result.returncode != 0


GOOGLE_ADS_CREDENTIALS = {
    "GOOGLE_ADS_CLIENT_ID": "client-id",
    "GOOGLE_ADS_CLIENT_SECRET": "client-secret",
    "GOOGLE_ADS_REFRESH_TOKEN": "refresh-token",
    "GOOGLE_ADS_DEVELOPER_TOKEN": "developer-token",
    "GOOGLE_ADS_CUSTOMER_IDS": "1234567890",
}


def _make_run(tmp_path: Path, dotenv: str) -> subprocess.CompletedProcess[str]:
    """`make run` in a checkout of this one in `tmp_path` whose .env is `dotenv`, with no
    GOOGLE_ADS_* variable from this process's environment."""
    for name in ("Makefile", "scripts", "manage.py", ".venv", *PACKAGES):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".env").write_text(dotenv)
    # -o install: this checkout's virtualenv is the one installed already.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "install", "run"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_ADS_")},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_make_run_with_its_port_in_use_refuses_before_touching_the_database(tmp_path) -> None:
    """It created and migrated the database its .env names, then refused: a second checkout
    whose .env still names the first one's database migrated it with its own branch."""
    db = connection.settings_dict
    name = f"{db['NAME']}_second_checkout"
    with psycopg_connect(db) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = _make_run(
            tmp_path,
            f"PORT={busy.getsockname()[1]}\nDATABASE_URL={database_url(name)}\n"
            # Real credentials, so that no sandbox ports are checked.
            + "".join(f"{key}={value}\n" for key, value in GOOGLE_ADS_CREDENTIALS.items()),
        )
    with psycopg_connect(db) as admin:
        created = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert done.returncode != 0
    assert "is in use" in done.stderr, done.stderr
    assert created is None


def _make_run_with_credentials(
    tmp_path: Path, given: Iterable[str]
) -> subprocess.CompletedProcess[str]:
    """`make run` with these Google Ads credentials set and its port in use, so that, going on,
    it stops at its port check."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        return _make_run(
            tmp_path,
            f"PORT={busy.getsockname()[1]}\n"
            + "".join(f"{key}={GOOGLE_ADS_CREDENTIALS[key]}\n" for key in given),
        )


def test_make_run_with_some_google_ads_credentials_stops_naming_the_others(tmp_path) -> None:
    """Without a refresh token it ran the sandbox, whatever else was set: with a deployment's
    settings and credentials, the sandbox's rows landed in its database."""
    given = ("GOOGLE_ADS_CLIENT_ID", "GOOGLE_ADS_REFRESH_TOKEN", "GOOGLE_ADS_CUSTOMER_IDS")
    done = _make_run_with_credentials(tmp_path, given)
    assert done.returncode != 0
    assert (
        "make run: Google Ads credentials incomplete: set GOOGLE_ADS_CLIENT_SECRET too"
    ) in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("given", "said"),
    [
        # Google sunset developer tokens: a project new to the API has none to set. It went on
        # to its port check (busy here), with the credentials given.
        (
            (
                "GOOGLE_ADS_CLIENT_ID",
                "GOOGLE_ADS_CLIENT_SECRET",
                "GOOGLE_ADS_REFRESH_TOKEN",
                "GOOGLE_ADS_CUSTOMER_IDS",
            ),
            "is in use",
        ),
        # One set alone is still some set and others not.
        (
            ("GOOGLE_ADS_DEVELOPER_TOKEN",),
            "make run: Google Ads credentials incomplete: set GOOGLE_ADS_CLIENT_ID, "
            "GOOGLE_ADS_CLIENT_SECRET, GOOGLE_ADS_REFRESH_TOKEN, GOOGLE_ADS_CUSTOMER_IDS too",
        ),
    ],
)
def test_make_run_needs_no_developer_token(tmp_path, given, said) -> None:
    done = _make_run_with_credentials(tmp_path, given)
    assert done.returncode != 0
    assert said in done.stderr, done.stderr


def test_make_run_with_the_production_settings_starts_no_sandbox(tmp_path) -> None:
    """No credentials and the production settings: the sandbox would fill that database."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = _make_run(
            tmp_path,
            "DJANGO_SETTINGS_MODULE=inventory_project.settings.production\n"
            f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
            f"PORT={closed_port()}\nADS_SANDBOX_GRPC_PORT={busy.getsockname()[1]}\n"
            # Past its port check, it stops at the database.
            f"DATABASE_URL=postgres://postgres@127.0.0.1:{CLOSED_PORT}/inventory\n",
        )
    assert done.returncode != 0
    assert "ADS_SANDBOX_GRPC_PORT" not in done.stderr  # the sandbox's ports were not checked
    assert "cannot reach PostgreSQL" in done.stderr, done.stderr


@pytest.mark.django_db
@pytest.mark.parametrize(
    "settings_env",
    [
        f"DJANGO_SETTINGS_MODULE=inventory_project.settings.production\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n",
        "DJANGO_SETTINGS_MODULE=inventory_project.settings.local\nDEBUG=false\n",
    ],
    ids=["production", "local-without-debug"],
)
def test_make_run_with_debug_off_loads_no_demo_data_but_the_periodic_tasks(
    tmp_path, settings_env: str
) -> None:
    """bootstrap_demo ran whatever the settings: with the production ones, 3,000 demo products
    and a superuser `admin`, whose password went to a file, landed in that database. Then,
    with bootstrap_demo left out, so were the periodic tasks it creates: beat ran nothing."""
    db = connection.settings_dict
    name = f"{db['NAME']}_debug_off"
    with psycopg_connect(db) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    try:
        done = _make_run(
            tmp_path,
            settings_env + f"PORT={closed_port()}\nDATABASE_URL={database_url(name)}\n"
            # The demo data, if loaded, bumps the cache's generation: under the test's prefix.
            f"CACHE_KEY_PREFIX={settings.CACHES['default']['KEY_PREFIX']}\n"
            # Past the demo data, it stops where it queues the gap detection.
            f"CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:{CLOSED_PORT}//\n",
        )
        with psycopg.connect(database_url(name)) as made:
            users = made.execute("SELECT count(*) FROM auth_user").fetchone()
            products = made.execute(f"SELECT count(*) FROM {Product._meta.db_table}").fetchone()
            tasks = made.execute(f"SELECT name FROM {PeriodicTask._meta.db_table}").fetchall()
    finally:
        with psycopg_connect(db) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert done.returncode != 0
    module = settings_env.split("\n")[0].split("=")[1]
    assert (
        f"make run: DEBUG is off in {module}: no demo products and no demo admin user.\n"
        in done.stdout
    ), done.stdout + done.stderr
    assert (users, products) == ((0,), (0,))
    assert sorted(name for (name,) in tasks) == sorted(t["name"] for t in settings.PERIODIC_TASKS)
