"""Every web request has an id, which its answer and every line it logs carry.

A client that reports a failed request by the `X-Request-ID` of its answer, or an access line
with a 500, leads to that request's traceback and its other lines: before, a line said which
process wrote it and when, and under load many requests of one process log in the same second.

- `RequestIdApp`, the outermost WSGI layer (inventory_project/wsgi.py), so the answers of the
  layers that answer ahead of Django carry the id too: the proxy's id (`X-Request-ID`, as
  nginx's `$request_id`, Heroku's router or an ingress set it) if it is one, else a new one.
  It goes into the answer's `X-Request-ID`, and back into the environ for the layers below.
- `RequestIdFilter`, on the settings' log handler: each line has `request_id`, "-" outside a
  request (start-up, the listener, commands).
- gunicorn's access line ends with it (`gunicorn.conf.py`).
- A Celery task sent while a request is served (the admin's "Run selected tasks") carries it in
  its message (`TASK_HEADER`), and the worker's lines while the task runs carry it; a task
  sent otherwise (beat, `backfill_ads`) has its lines carry the task's own id, so the lines of
  tasks run at once in one worker can be told apart (inventory_project/celery.py).

An id from the client is kept if it is 1 to 200 of the characters ids are made of (letters,
digits and `-_.:+/=@`; 200: the longest Heroku's router passes on), and replaced otherwise: a
space, a quote or a newline in it would make a log line that reads as two, or as other fields.

Not covered: a line written once the app has returned, while the server sends the body and
closes it (Django's request_finished), has "-"; gunicorn's own lines have no id, and its own
answers (to a request it cannot parse, or to an exception that escaped every layer) none either,
their access line ending with "-".
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

HEADER = "X-Request-ID"
ENVIRON_KEY = "HTTP_X_REQUEST_ID"
# Outside a request: a log line's field is never empty, so the fields after it stay in place.
NONE = "-"
# The message header a task sent during a request carries the request's id in.
TASK_HEADER = "web_request_id"
_VALID = re.compile(r"[A-Za-z0-9._:+/=@-]{1,200}")
# A context variable, not a thread-local: each of gthread's threads has its own context, and it
# would stay right under a worker class that runs requests as coroutines or greenlets.
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def current() -> str | None:
    """The id of the request being served in this thread, None outside one."""
    return _current.get()


def serve(request_id: str | None) -> None:
    """What this thread serves from now on (a task's id, or the request's that sent it); None:
    nothing. For the Celery worker's signals, which have no block to reset it in."""
    _current.set(request_id)


def request_id_of(given: str | None) -> str:
    """The id the request is known by: `given` (the header's value) if it is a valid id, else
    a new one: 128 random bits in hex, as a UUID's digits without its dashes (uuid4() took five
    times as long, on every request)."""
    if given is not None and _VALID.fullmatch(given):
        return given
    return os.urandom(16).hex()


class RequestIdApp:
    """WSGI wrapper: the request's id in the environ, this thread's context and the answer."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request_id = request_id_of(environ.get(ENVIRON_KEY))
        environ[ENVIRON_KEY] = request_id

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, (HEADER, request_id)], exc_info)

        token = _current.set(request_id)
        try:
            return self.app(environ, start_with_id)
        finally:
            _current.reset(token)


class RequestIdFilter(logging.Filter):
    """A handler's filter: the line's `request_id`, for the formatter (NONE outside a
    request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # A line that names its own (`extra={"request_id": ...}`) keeps it.
        if not hasattr(record, "request_id"):
            record.request_id = _current.get() or NONE
        return True
