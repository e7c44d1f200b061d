"""Chunked request bodies: read, or refused, but never taken as empty."""

from __future__ import annotations

import gzip
import http.client
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from inventory_project.wsgi import application
from tests.products.api.wsgi_client import send
from tests.products.conftest import ProductFactory, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token() -> str:
    return Token.objects.create(user=make_user("clerk", "change_product")).key


def patch_chunked(
    product_id: int,
    token: str,
    body: bytes,
    *,
    terminated: bool,
    chunked: bool = True,
    **environ: str,
) -> tuple[int, dict[str, Any]]:
    """A PATCH as a server hands it over: chunked, the body decoded and no CONTENT_LENGTH (with
    `chunked` false, a body of CONTENT_LENGTH); `terminated` is gunicorn's wsgi.input_terminated."""
    extra: dict[str, Any] = dict(environ)
    if chunked:
        extra.setdefault("HTTP_TRANSFER_ENCODING", "chunked")
    if terminated:
        extra["wsgi.input_terminated"] = True
    status, _, content = send(
        application,
        "PATCH",
        f"/api/products/{product_id}",
        body,
        without=("CONTENT_LENGTH",) if chunked else (),
        HTTP_AUTHORIZATION=f"Token {token}",
        **extra,
    )
    return status, json.loads(content)


def assert_refused_unchanged(
    product: Any, answer: tuple[int, dict[str, Any]], status: int, code: str
) -> None:
    assert (answer[0], answer[1]["error"]["code"]) == (status, code)
    product.refresh_from_db()
    assert (product.price, product.version) == (Decimal("6.08"), 1)


def test_a_chunked_patch_writes_what_it_sends(token: str) -> None:
    product = ProductFactory(price=Decimal("6.08"))
    status, body = patch_chunked(product.pk, token, b'{"price": "77.77"}', terminated=True)
    assert (status, body["price"]) == (200, "77.77")
    product.refresh_from_db()
    assert product.price == Decimal("77.77")


def test_a_chunked_body_the_server_does_not_end_is_refused_with_411(token: str) -> None:
    product = ProductFactory(price=Decimal("6.08"))
    answer = patch_chunked(product.pk, token, b'{"price": "77.77"}', terminated=False)
    assert_refused_unchanged(product, answer, 411, "length_required")
    assert "Content-Length" in answer[1]["error"]["message"]


def test_a_transfer_coding_other_than_chunked_is_refused_with_501(token: str) -> None:
    product = ProductFactory(price=Decimal("6.08"))
    status, body = patch_chunked(
        product.pk, token, b"\x1f\x8b...", terminated=True, HTTP_TRANSFER_ENCODING="gzip, chunked"
    )
    assert (status, body["error"]["code"]) == (501, "not_implemented")
    assert "gzip" in body["error"]["message"]


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    "body",
    [gzip.compress(b'{"price": "77.77"}', mtime=0), b'{"price": "77.77"}'],
    ids=["gzip", "plain"],  # ids pytest-xdist's workers all collect alike
)
def test_a_content_coding_is_refused_with_415_naming_it(token: str, chunked: bool, body) -> None:
    """Nothing decodes it: gzip reached the parser as bytes, and plain JSON labelled gzip was
    taken as it was."""
    product = ProductFactory(price=Decimal("6.08"))
    answer = patch_chunked(
        product.pk, token, body, terminated=True, chunked=chunked, HTTP_CONTENT_ENCODING="gzip"
    )
    assert_refused_unchanged(product, answer, 415, "unsupported_media_type")
    assert "gzip" in answer[1]["error"]["message"]


def test_a_content_coding_refused_names_identity_as_the_one_accepted(token: str) -> None:
    """RFC 9110, 15.5.16: a 415 for a content coding says which codings are accepted."""
    product = ProductFactory(price=Decimal("6.08"))
    status, headers, content = send(
        application,
        "PATCH",
        f"/api/products/{product.pk}",
        b'{"price": "77.77"}',
        HTTP_AUTHORIZATION=f"Token {token}",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert (status, headers.get("Accept-Encoding")) == (415, "identity")
    assert headers.get("Content-Length") == str(len(content))


@pytest.mark.parametrize("length", ["0", None], ids=["zero", "none"])
def test_a_content_coding_on_a_request_without_a_body_is_not_refused(length) -> None:
    """There is nothing to decode: the header alone is no reason for a 415."""
    ProductFactory(name="anvil")
    status, _, content = send(
        application,
        "GET",
        "/api/products/search",
        QUERY_STRING="name=anvil",
        HTTP_CONTENT_ENCODING="gzip",
        without=() if length else ("CONTENT_LENGTH",),
    )
    assert status == 200, content
    assert [p["name"] for p in json.loads(content)["results"]] == ["anvil"]


def test_identity_is_no_content_coding(token: str) -> None:
    product = ProductFactory(price=Decimal("6.08"))
    status, _ = patch_chunked(
        product.pk, token, b'{"price": "77.77"}', terminated=True, HTTP_CONTENT_ENCODING="identity"
    )
    assert status == 200


def test_a_chunked_body_over_the_upload_limit_is_refused_with_413(token: str, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    product = ProductFactory()
    padded = json.dumps({"price": "1.00", "padding": "x" * 200}).encode()
    status, body = patch_chunked(product.pk, token, padded, terminated=True)
    assert (status, body["error"]["code"]) == (413, "too_large")
    assert "100 bytes" in body["error"]["message"]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_of_exactly_the_upload_limit_is_read(token: str, settings, chunked) -> None:
    body = b'{"price": "77.77"}'
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(body)
    product = ProductFactory(price=Decimal("6.08"))
    status, answer = patch_chunked(product.pk, token, body, terminated=True, chunked=chunked)
    assert (status, answer.get("price")) == (200, "77.77")


def test_a_chunked_body_over_the_upload_limit_is_read_only_one_byte_past_it(
    token: str, settings
) -> None:
    """The refusal needs one byte past the limit, not the rest of the body in memory."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    product = ProductFactory(price=Decimal("6.08"))
    stream = io.BytesIO(json.dumps({"price": "1.00", "padding": "x" * 10_000}).encode())
    answer = patch_chunked(product.pk, token, stream, terminated=True)
    assert_refused_unchanged(product, answer, 413, "too_large")
    assert stream.tell() == 101


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("debug", [False, True])
def test_a_body_over_the_upload_limit_is_the_apis_413_with_debug_on_too(
    token: str, settings, debug: bool, chunked: bool
) -> None:
    """With DEBUG on (make run), Django answered it with its HTML debug page and a 400."""
    settings.DEBUG = debug
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    product = ProductFactory(price=Decimal("6.08"))
    padded = json.dumps({"price": "1.00", "padding": "x" * 200}).encode()
    answer = patch_chunked(product.pk, token, padded, terminated=True, chunked=chunked)
    assert_refused_unchanged(product, answer, 413, "too_large")
    assert "100 bytes" in answer[1]["error"]["message"]


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


def _call(
    method: str,
    path: str,
    content_type: str,
    body: bytes | io.BytesIO = b"",
    query: str = "",
    **extra: str,
) -> tuple[int, str, bytes]:
    """The WSGI application's status, Content-Type and body for a request with a
    Content-Length (that of `body`, unless `extra` says otherwise)."""
    status, headers, content = send(
        application, method, path, body, CONTENT_TYPE=content_type, QUERY_STRING=query, **extra
    )
    return status, headers["Content-Type"], content


def _post(path: str, body: io.BytesIO, length: int, content_type: str) -> tuple[int, str, bytes]:
    return _call("POST", path, content_type, body, CONTENT_LENGTH=str(length))


@pytest.mark.parametrize("path", ["/admin/login/", "/api-auth/login/"])
def test_a_body_over_the_upload_limit_is_refused_unread_outside_the_api_too(path: str) -> None:
    """An anonymous 30-50 MB multipart POST to /admin/login/ was read to its end and its file
    part spooled to disk before the 403: Django counts a form's fields against the limit, not
    its files."""
    part = b"--b\r\nContent-Disposition: form-data; name=f; filename=x\r\n\r\n" + b"x" * 1_000_000
    body = io.BytesIO(part)

    status, content_type, content = _post(
        path, body, 40 * 1024 * 1024, "multipart/form-data; boundary=b"
    )

    assert (status, content_type) == (413, "text/plain; charset=utf-8")
    assert content == b"The request body is larger than 2621440 bytes."
    assert body.tell() == 0


def test_a_login_form_within_the_limit_is_still_read() -> None:
    form = b"username=nobody&password=wrong"
    status, _, content = _post(
        "/admin/login/", io.BytesIO(form), len(form), "application/x-www-form-urlencoded"
    )
    assert status == 403  # past the size check, to Django's CSRF check (no cookie)
    assert b"CSRF" in content


CSRF_SECRET = "abcdefghijklmnopqrstuvwxyzABCDEF"
# A login form as a browser sends it, CSRF cookie and Origin included: CSRF reads the form.
LOGIN_FORM = (
    b"--b\r\nContent-Disposition: form-data; name=username\r\n\r\nnobody\r\n"
    b"--b\r\nContent-Disposition: form-data; name=password\r\n\r\nwrong\r\n"
    b"--b\r\nContent-Disposition: form-data; name=csrfmiddlewaretoken\r\n\r\n"
    + CSRF_SECRET.encode()
    + b"\r\n--b--\r\n"
)
BROWSER = {"HTTP_COOKIE": f"csrftoken={CSRF_SECRET}", "HTTP_ORIGIN": "http://testserver"}


def get_login_page(charset: str) -> tuple[int, str, bytes]:
    return _call("GET", "/admin/login/", f"text/plain{charset}", query="next=/admin/")


def post_login_form(charset: str) -> tuple[int, str, bytes]:
    content_type = f"multipart/form-data; boundary=b{charset}"
    return _call("POST", "/admin/login/", content_type, LOGIN_FORM, **BROWSER)


def search(charset: str) -> tuple[int, str, bytes]:
    return _call("GET", "/api/products/search", f"text/plain{charset}", query="name=anvil")


@pytest.mark.parametrize("send", [get_login_page, post_login_form])
def test_a_charset_that_is_no_text_encoding_is_a_400_naming_it_outside_the_api(send) -> None:
    """Django keeps any codec Python knows as the request's encoding and decodes the query
    string and a multipart form with it: a LookupError, a 500 (under gunicorn, the GET's raised
    where no handler runs)."""
    status, content_type, content = send("; charset=rot13")

    assert (status, content_type) == (400, "text/plain; charset=utf-8")
    assert content == b'Unsupported charset "rot13" in request Content-Type header.'


@pytest.mark.parametrize("fast_reads", [True, False])
@pytest.mark.parametrize("charset", ["hex", "HEX", '"hex"', "bz2_codec"])
def test_a_charset_that_is_no_text_encoding_is_the_apis_400_naming_it(
    settings, fast_reads: bool, charset: str
) -> None:
    settings.PRODUCT_FAST_READS = fast_reads
    status, content_type, content = search(f"; charset={charset}")

    assert (status, content_type) == (400, "application/json")
    error = json.loads(content)["error"]
    assert error["code"] == "parse_error"
    assert error["message"] == (
        f'Unsupported charset "{charset.strip(chr(34))}" in request Content-Type header.'
    )


@pytest.mark.parametrize("charset", ["; charset=utf-8", "; charset=latin-1", ""])
def test_a_text_charset_or_none_still_reaches_the_views(charset: str) -> None:
    ProductFactory(name="anvil")
    status, _, content = search(charset)
    assert status == 200
    assert [p["name"] for p in json.loads(content)["results"]] == ["anvil"]

    assert get_login_page(charset)[0] == 200
    status, _, content = post_login_form(charset)
    assert status == 200  # past CSRF, which read the form, to the login's own answer
    assert b"Please enter the correct username" in content


def test_a_charset_python_does_not_know_is_read_as_utf8() -> None:
    """As Django and the parsers do (tests/inventory_project/test_parsers.py)."""
    ProductFactory(name="anvil")
    assert search("; charset=nonesuch")[0] == 200
    assert get_login_page("; charset=nonesuch")[0] == 200


def test_a_content_type_that_names_no_charset_parameter_still_reaches_the_views() -> None:
    """The word charset in the Content-Type, but not as its parameter: nothing to refuse."""
    ProductFactory(name="anvil")
    for content_type in ("; x-charset=rot13", "; charset", "+charset"):
        status, _, content = search(content_type)
        assert status == 200, content_type
        assert [p["name"] for p in json.loads(content)["results"]] == ["anvil"]


@pytest.mark.parametrize("chunked", [False, True])
def test_without_an_upload_limit_a_body_is_read_whole(token: str, settings, chunked) -> None:
    """DATA_UPLOAD_MAX_MEMORY_SIZE = None is Django's "no limit"."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = None
    product = ProductFactory(price=Decimal("6.08"))
    body = b'{"price": "77.77"}'
    status, answer = patch_chunked(product.pk, token, body, terminated=True, chunked=chunked)
    assert (status, answer["price"]) == (200, "77.77")


def test_a_content_length_that_is_no_number_is_left_to_django() -> None:
    """Django reads it as 0 (gunicorn refuses it before the application)."""
    ProductFactory(name="anvil")
    status, _, content = _call(
        "GET", "/api/products/search", "text/plain", query="name=anvil", CONTENT_LENGTH="12a"
    )
    assert status == 200
    assert [p["name"] for p in json.loads(content)["results"]] == ["anvil"]
