"""Each web request's id: in its answer, in the lines it logs (inventory_project/request_ids.py).

The access line's id is tested with gunicorn (test_foundation)."""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token

from inventory_project import request_ids
from inventory_project.celery import app as celery_app
from inventory_project.request_ids import RequestIdApp
from inventory_project.wsgi import application
from tests.processes import run_python
from tests.products.api.wsgi_client import send
from tests.products.conftest import ProductFactory, make_user
from tests.workers import left_in_cache

NEW_ID = re.compile(r"[0-9a-f]{32}")


def test_an_answer_carries_a_new_id_for_each_request() -> None:
    ids = [send(application, "GET", "/healthz")[1]["X-Request-ID"] for _ in range(2)]
    assert all(NEW_ID.fullmatch(request_id) for request_id in ids), ids
    assert ids[0] != ids[1]


@pytest.mark.parametrize(
    "given",
    [
        "lb-7f3a",
        "0b6e7d0c-5c2e-4f0e-9a8e-2f1e4b9c7a11",
        "7",
        "Root=1-67891233-abc.de_f:g+h/i@j",
        "x" * 200,
    ],
)
def test_the_proxys_id_is_kept(given: str) -> None:
    """Every character and length the docstring allows: 200 is the longest that Heroku's router
    passes on from a client, with `+/=` (base64); a shorter limit logged another id than its
    router's log line."""
    _, headers, _ = send(application, "GET", "/healthz", HTTP_X_REQUEST_ID=given)
    assert headers["X-Request-ID"] == given


@pytest.mark.parametrize(
    "given", ["", "two words", 'a"quote', "line\nforged", "x" * 201, "caf\u00e9", "a,b"]
)
def test_an_id_that_could_break_a_log_line_is_replaced(given: str) -> None:
    _, headers, _ = send(application, "GET", "/healthz", HTTP_X_REQUEST_ID=given)
    assert NEW_ID.fullmatch(headers["X-Request-ID"]), headers


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/products/{id}", 200),  # the second GET: a hit answered ahead of Django
        ("GET", "/api/products/", 200),  # a page (fast_reads), then a hit
        ("PUT", "/api/products/{id}", 200),  # a token update (fast_writes)
        ("GET", "/api/products/0", 404),  # Django
        ("HEAD", "/api/products/{id}", 200),
    ],
)
def test_every_layers_answer_carries_the_id(method: str, path: str, status: int) -> None:
    path = path.format(id=ProductFactory().pk)
    body, auth = None, {}
    if method == "PUT":
        token = Token.objects.create(user=make_user("clerk", "change_product")).key
        body, auth = {"price": "9.99", "stock_level": 3}, {"HTTP_AUTHORIZATION": f"Token {token}"}
    for n in range(2):
        answer_status, headers, _ = send(
            application, method, path, body, HTTP_X_REQUEST_ID=f"r{n}", **auth
        )
        assert (answer_status, headers["X-Request-ID"]) == (status, f"r{n}")


@pytest.mark.django_db
def test_the_lines_a_request_logs_carry_its_id(logged) -> None:
    """Django's line for a 404 is written while the request is served, by the settings'
    handler; a line outside a request has "-" in its place."""
    _, headers, _ = send(application, "GET", "/nowhere")
    logging.getLogger("tests").warning("after the request")
    request_line, after_line = logged.getvalue().splitlines()
    assert f" {headers['X-Request-ID']} Not Found: /nowhere" in request_line
    assert after_line.endswith(f" {request_ids.NONE} after the request")
    assert request_ids.current() is None


def test_the_environ_below_holds_the_id_the_answer_carries() -> None:
    """Django reads it as request.META["HTTP_X_REQUEST_ID"], the new one when it was made."""
    seen = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append((environ[request_ids.ENVIRON_KEY], request_ids.current()))
        start_response("200 OK", [])
        return []

    _, headers, _ = send(RequestIdApp(app), "GET", "/", HTTP_X_REQUEST_ID="bad id")
    assert seen == [(headers["X-Request-ID"], headers["X-Request-ID"])]


def test_an_error_answer_started_again_keeps_the_id_and_the_error() -> None:
    """PEP 3333: an app that fails after start_response calls it again with exc_info, which
    the server needs to replace the headers it has not sent (gunicorn refuses a second call
    without it), and to raise the error again if it has."""
    calls = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        try:
            raise ValueError("failed after the headers")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        calls.append((status, dict(headers)["X-Request-ID"], exc_info and exc_info[0]))

    RequestIdApp(app)({"HTTP_X_REQUEST_ID": "r1"}, start_response)
    assert calls == [("200 OK", "r1", None), ("500 Internal Server Error", "r1", ValueError)]


def test_requests_served_at_once_in_two_threads_each_log_their_own_id() -> None:
    """gthread serves a worker's requests in threads: one id per process would give each
    request's lines the id of whichever request started last."""
    both_in = threading.Barrier(2, timeout=10)
    seen: dict[str, str | None] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        both_in.wait()
        seen[environ["PATH_INFO"]] = request_ids.current()
        start_response("200 OK", [])
        return []

    wrapped = RequestIdApp(app)
    threads = [
        threading.Thread(
            target=send, args=(wrapped, "GET", f"/{n}"), kwargs={"HTTP_X_REQUEST_ID": f"id{n}"}
        )
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert seen == {"/0": "id0", "/1": "id1"}


def test_a_line_that_names_its_own_request_id_keeps_it(logged) -> None:
    logging.getLogger("tests").warning("for another request", extra={"request_id": "other"})
    assert logged.getvalue().rstrip("\n").endswith(" other for another request")


# The in-process worker (`celery_worker`) runs with this process's app: it knows these tasks.
@celery_app.task(name="tests.request_id_seen", bind=True)
def _request_id_seen(self: Any, key: str) -> None:
    cache.set(key, [request_ids.current(), self.request.id], timeout=60)


@celery_app.task(name="tests.sends_another")
def _sends_another(key: str) -> None:
    _request_id_seen.delay(key)


@pytest.mark.django_db(transaction=True)
def test_a_task_sent_while_a_request_is_served_runs_with_the_requests_id(celery_worker) -> None:
    """The admin's "Run selected tasks": the worker's lines name the request that sent it, and
    those of the tasks it sends in turn."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        _request_id_seen.delay("seen-from-request")
        _sends_another.delay("seen-from-its-task")
        start_response("200 OK", [])
        return []

    send(RequestIdApp(app), "GET", "/", HTTP_X_REQUEST_ID="lb-7f3a")
    assert left_in_cache("seen-from-request")[0] == "lb-7f3a"
    assert left_in_cache("seen-from-its-task")[0] == "lb-7f3a"


@pytest.mark.django_db(transaction=True)
def test_a_task_sent_outside_a_request_runs_with_its_own_id(celery_worker) -> None:
    """beat's and backfill_ads' tasks, and the days a detection fans out: the lines of tasks
    run at once can be told apart."""
    sent = _request_id_seen.delay("seen-alone")
    _sends_another.delay("seen-from-a-task")
    assert left_in_cache("seen-alone") == [sent.id, sent.id]
    request_id, task_id = left_in_cache("seen-from-a-task")
    assert request_id == task_id


# A worker's logging as `celery worker` sets it up, a line in a task, then one after it.
WORKER_LINES = """
import django, logging
django.setup()
from inventory_project.celery import app
app.log.setup(loglevel="INFO")

@app.task(name="tests.logs_a_line")
def logs_a_line():
    logging.getLogger("ads_sync").warning("inside the task")

logs_a_line.apply(task_id="task-5e1d")
logging.getLogger("ads_sync").warning("after the task")
"""


def test_a_workers_lines_carry_the_id_of_the_task_they_were_written_in() -> None:
    stderr = run_python(WORKER_LINES).stderr
    assert "] task-5e1d inside the task" in stderr, stderr
    assert f"] {request_ids.NONE} after the task" in stderr, stderr


# billiard's logger (the prefork pool's: "Pool process ... error"), which the worker gives a
# handler with its format too.
POOL_LINE = """
import django, logging
django.setup()
from inventory_project.celery import app
app.log.setup(loglevel="INFO")
logging.getLogger("multiprocessing").error("a pool child failed")
"""


def test_the_prefork_pools_own_lines_are_written_with_the_workers_format() -> None:
    """Celery gives billiard's logger a handler of its own with CELERY_WORKER_LOG_FORMAT and
    sends no signal for it: without the filter, a pool child's fatal line became a logging
    error's traceback."""
    stderr = run_python(POOL_LINE).stderr
    assert f"] {request_ids.NONE} a pool child failed" in stderr, stderr


def test_a_task_applied_while_a_request_is_served_leaves_the_request_its_id() -> None:
    """A task run in place (`apply()`, in a request or in another task) serves its own id while
    it runs; then the lines are the request's again, and so are the tasks it sends."""
    after: list[str | None] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        _request_id_seen.apply(args=("seen-applied",))
        after.append(request_ids.current())
        start_response("200 OK", [])
        return []

    send(RequestIdApp(app), "GET", "/", HTTP_X_REQUEST_ID="lb-7f3a")
    assert after == ["lb-7f3a"]
