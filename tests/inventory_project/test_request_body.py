"""Chunked request bodies: read, or refused, but never taken as empty."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.authtoken.models import Token

from inventory_project.wsgi import application
from tests.products.conftest import ProductFactory, make_user

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def token() -> str:
    return Token.objects.create(user=make_user("clerk", "change_product")).key


def send_chunked(body: bytes, *, terminated: bool, **environ: Any) -> tuple[int, dict[str, Any]]:
    """The WSGI environ a server gives a chunked request: decoded body, no CONTENT_LENGTH."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "PATCH",
        "HTTP_HOST": "testserver",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
        **environ,
    }
    if terminated:
        env["wsgi.input_terminated"] = True
    setup_testing_defaults(env)
    env.pop("CONTENT_LENGTH", None)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"] = int(status[:3])

    content = b"".join(application(env, start_response))
    return captured["status"], json.loads(content)


def patch_chunked(
    product_id: int, token: str, body: bytes, *, terminated: bool
) -> tuple[int, dict[str, Any]]:
    return send_chunked(
        body,
        terminated=terminated,
        PATH_INFO=f"/api/products/{product_id}",
        HTTP_AUTHORIZATION=f"Token {token}",
    )


def test_a_chunked_patch_writes_what_it_sends(token: str) -> None:
    product = ProductFactory(price=Decimal("6.08"))
    status, body = patch_chunked(product.pk, token, b'{"price": "77.77"}', terminated=True)
    assert (status, body["price"]) == (200, "77.77")
    product.refresh_from_db()
    assert product.price == Decimal("77.77")


def test_a_chunked_body_the_server_does_not_end_is_refused_with_411(token: str) -> None:
    product = ProductFactory(price=Decimal("6.08"))
    status, body = patch_chunked(product.pk, token, b'{"price": "77.77"}', terminated=False)
    assert (status, body["error"]["code"]) == (411, "length_required")
    product.refresh_from_db()
    assert (product.price, product.version) == (Decimal("6.08"), 1)


def test_a_transfer_coding_other_than_chunked_is_refused_with_501(token: str) -> None:
    product = ProductFactory(price=Decimal("6.08"))
    status, body = send_chunked(
        b"\x1f\x8b...",
        terminated=True,
        PATH_INFO=f"/api/products/{product.pk}",
        HTTP_AUTHORIZATION=f"Token {token}",
        HTTP_TRANSFER_ENCODING="gzip, chunked",
    )
    assert (status, body["error"]["code"]) == (501, "not_implemented")
    assert "gzip" in body["error"]["message"]


def test_a_chunked_body_over_the_upload_limit_is_refused_with_413(token: str, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    product = ProductFactory()
    padded = json.dumps({"price": "1.00", "padding": "x" * 200}).encode()
    status, body = patch_chunked(product.pk, token, padded, terminated=True)
    assert (status, body["error"]["code"]) == (413, "too_large")
    assert "100 bytes" in body["error"]["message"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gunicorn() -> Iterator[int]:
    """The app under gunicorn, as deployed, on this test's database."""
    db = connection.settings_dict
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "inventory_project.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_ACCESSLOG": "",
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
    }
    gunicorn_bin = Path(sys.executable).parent / "gunicorn"
    process = subprocess.Popen(
        [str(gunicorn_bin), "-c", "inventory_project/gunicorn.conf.py", "inventory_project.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(process.stderr.read().decode()) from None  # type: ignore[union-attr]
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_gunicorn_hands_a_chunked_patch_to_the_api_whole(gunicorn: int, token: str) -> None:
    product = ProductFactory(price=Decimal("6.08"), stock_level=3)
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=10)
    conn.request(
        "PATCH",
        f"/api/products/{product.pk}",
        body=iter([b'{"price": ', b'"77.77"}']),  # no length: http.client sends it chunked
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "Host": "localhost",
        },
        encode_chunked=True,
    )
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert (response.status, body["price"], body["stock_level"]) == (200, "77.77", 3)
    product.refresh_from_db()
    assert product.price == Decimal("77.77")
