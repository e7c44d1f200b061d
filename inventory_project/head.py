"""HEAD requests answered with GET's headers and no body.

Django and DRF answer HEAD by running the GET view, with its body and the headers that describe
that body (Content-Length, ETag), as HTTP asks of a HEAD answer (RFC 9110, 9.3.2). Django's own
server drops the body; gunicorn drops it too, but logs a warning for each one ("WSGI app sent
body bytes on a no-body response"), so a load balancer's HEAD probe of /healthz wrote a warning
line every few seconds. `HeadWithoutBodyApp`, the outermost WSGI layer but one (the request id's),
passes the headers on as they are and returns no body, closing the one the layers below
returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class HeadWithoutBodyApp:
    """WSGI wrapper: a HEAD request's answer, without its body."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") != "HEAD":
            return self.app(environ, start_response)
        started = False

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal started
            started = True
            return start_response(status, headers, exc_info)

        body = self.app(environ, start)
        try:
            if not started:
                # An app written as a generator gives its headers with its first item.
                for _ in body:
                    break
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return []
