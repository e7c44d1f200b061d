"""Raw WSGI requests to the application's layers, and a count of those that reach Django."""

from __future__ import annotations

import io
import json
from collections.abc import Collection
from typing import Any
from wsgiref.util import setup_testing_defaults

from django.core.handlers.wsgi import WSGIHandler


class CountingDjango:
    """Django's WSGI handler, counting the requests that reach it."""

    def __init__(self) -> None:
        self.django = WSGIHandler()
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.calls += 1
        return self.django(environ, start_response)


def send(
    app: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    without: Collection[str] = (),
    **environ: str,
) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body `app` answers; `without` names environ keys to leave out.

    `body` is bytes, a stream (read as the server's input, to see how far the app read it), or
    what JSON-encodes to the bytes."""
    if isinstance(body, io.BytesIO):
        stream, raw = body, body.getvalue()
    else:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body else b""
        stream = io.BytesIO(raw)
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "HTTP_HOST": "testserver",
        "wsgi.input": stream,
        "CONTENT_LENGTH": str(len(raw)),
    }
    if raw:
        env["CONTENT_TYPE"] = "application/json"
    env.update(environ)
    setup_testing_defaults(env)
    for name in without:
        del env[name]
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"], captured["headers"] = int(status[:3]), dict(headers)

    answer = app(env, start_response)
    try:
        content = b"".join(answer)
    finally:  # as a server does: Django sends request_finished here
        getattr(answer, "close", lambda: None)()
    return captured["status"], captured["headers"], content
