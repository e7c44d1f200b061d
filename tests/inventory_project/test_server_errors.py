"""Requests gunicorn refuses before Django sees them get JSON errors too (server_errors.py)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

HEAD = b"GET /api/products/ HTTP/1.1\r\nHost: localhost\r\n"


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send raw bytes; the status, headers and JSON body of the answer, read until closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (x.split(":", 1) for x in lines)}
    assert headers["content-type"] == "application/json", answer
    assert int(headers["content-length"]) == len(body)
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "status", "code", "message"),
    [
        pytest.param(
            b"GET /api/products/?name=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
            414,
            "uri_too_long",
            "Request Line is too large",
            id="request line over limit_request_line",
        ),
        pytest.param(
            HEAD + b"X-Many: 1\r\n" * 120 + b"\r\n",
            431,
            "header_fields_too_large",
            "more than 100 header fields",
            id="too many header fields",
        ),
        pytest.param(
            HEAD + b"X-Long: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            "header_fields_too_large",
            "longer than 8190 bytes",
            id="header field over limit_request_field_size",
        ),
        pytest.param(
            b"G@T /api/products/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
            400,
            "bad_request",
            "Invalid HTTP method",
            id="malformed method",
        ),
        pytest.param(
            HEAD + b"Expect: 200-ok\r\n\r\n",
            417,
            "expectation_failed",
            "200-ok",
            id="expectation other than 100-continue",
        ),
        pytest.param(
            HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "bad_request",
            "Invalid chunk size",
            id="malformed chunk",
        ),
    ],
)
def test_a_request_gunicorn_refuses_gets_a_json_error(
    gunicorn: int, request_bytes: bytes, status: int, code: str, message: str
) -> None:
    answer_status, headers, body = exchange(gunicorn, request_bytes)
    assert (answer_status, body["error"]["code"]) == (status, code)
    assert message in body["error"]["message"]
    assert headers["connection"] == "close"


def test_the_api_answers_on_the_same_server(gunicorn: int) -> None:
    status, _, body = exchange(
        gunicorn, b"GET /api/products/9 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
