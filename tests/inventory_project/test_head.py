"""HEAD answers through the WSGI stack: GET's headers, no body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from inventory_project.head import HeadWithoutBodyApp
from inventory_project.wsgi import application
from tests.products.api.wsgi_client import send
from tests.products.conftest import ProductFactory


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/products/{id}"])
def test_a_head_request_has_the_gets_headers_and_no_body(path: str) -> None:
    """Each HEAD's body reached gunicorn, which dropped it and logged a warning: a HEAD probe
    wrote a warning line every time."""
    path = path.format(id=ProductFactory().pk)
    # The same id for both, or each answer has its own.
    get_status, get_headers, get_body = send(application, "GET", path, HTTP_X_REQUEST_ID="r1")
    head_status, head_headers, head_body = send(application, "HEAD", path, HTTP_X_REQUEST_ID="r1")
    assert get_body
    assert head_body == b""
    # Expires (never_cache on the probes) is the time of the answer.
    get_headers.pop("Expires", None)
    head_headers.pop("Expires", None)
    assert (head_status, head_headers) == (get_status, get_headers)
    assert head_headers["Content-Length"] == str(len(get_body))


def test_a_head_answers_body_is_closed_unsent_even_from_a_generator() -> None:
    """An app written as a generator gives its headers with its first item."""
    closed = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "5")])
        try:
            yield b"hello"
        finally:
            closed.append(True)

    started = []
    sent = HeadWithoutBodyApp(app)(
        {"REQUEST_METHOD": "HEAD"}, lambda *args: started.append(args[:2])
    )
    assert list(sent) == []
    assert started == [("200 OK", [("Content-Length", "5")])]
    assert closed == [True]
