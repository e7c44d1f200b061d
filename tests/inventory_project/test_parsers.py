"""The API's parsers (inventory_project/parsers.py): what a request's charset does to them."""

from __future__ import annotations

from typing import Any

import pytest

from inventory_project.parsers import NOT_UNICODE
from products.models import Product
from tests.products.conftest import make_user, token_client

pytestmark = pytest.mark.django_db

BODIES = {
    "application/json": b'{"name": "Hammer", "price": "1.00", "stock_level": 1}',
    "application/x-www-form-urlencoded": b"name=Hammer&price=1.00&stock_level=1",
}


def _post(content_type: str, charset: str) -> Any:
    clerk = token_client(make_user("clerk", "add_product"))
    clerk.raise_request_exception = False
    return clerk.generic(
        "POST",
        "/api/products",
        BODIES[content_type],
        content_type=f"{content_type}; charset={charset}",
    )


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [
        ("application/json", "rot13"),
        ("application/json", "hex"),
        ("application/json", "base64"),
        ("application/json", "bz2_codec"),
        ("application/x-www-form-urlencoded", "rot13"),
    ],
)
def test_a_charset_that_is_no_text_encoding_is_a_400_naming_it(content_type, charset) -> None:
    """Django keeps any codec Python knows as the request's encoding: decoding the body with
    one was a LookupError, a 500."""
    response = _post(content_type, charset)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert f'Unsupported charset "{charset}"' in error["message"]
    assert not Product.objects.exists()


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [
        ("application/json", "utf-8"),
        ("application/json", "nonesuch"),  # unknown to Python: Django reads it as UTF-8
        ("application/x-www-form-urlencoded", "latin-1"),
    ],
)
def test_a_text_charset_still_reads_the_body(content_type, charset) -> None:
    response = _post(content_type, charset)

    assert response.status_code == 201, response.content
    assert response.json()["name"] == "Hammer"


def test_a_form_in_another_text_charset_is_read_in_it() -> None:
    """Only a UTF-8 form is checked for bytes that are not UTF-8: `caf%E9` is café in
    Latin-1, not a name to refuse, nor one to store with a U+FFFD."""
    clerk = token_client(make_user("clerk", "add_product"))
    response = clerk.generic(
        "POST",
        "/api/products",
        b"name=caf%E9&price=1.00&stock_level=1",
        content_type="application/x-www-form-urlencoded; charset=latin-1",
    )

    assert response.status_code == 201, response.content
    assert response.json()["name"] == "café"
    assert Product.objects.get().name == "café"


def _post_json(body: bytes) -> Any:
    clerk = token_client(make_user("clerk", "add_product"))
    return clerk.generic("POST", "/api/products", body, content_type="application/json")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"name": ', "Expecting value: line 1 column 10 (char 9)"),
        (b'"\\ud800"', NOT_UNICODE),
        (b"[" * 100_000, "nested too deeply"),
    ],
    ids=["malformed", "lone-surrogate", "nested-too-deeply"],
)
def test_a_body_the_parser_cannot_read_is_a_parse_error_saying_why(body, message) -> None:
    """The code is the same for every such body: the message is all that tells them apart."""
    clerk = token_client(make_user("clerk", "add_product"))
    response = clerk.generic("POST", "/api/products", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "parse_error",
        "message": f"JSON parse error - {message}",
    }


def test_a_body_that_is_no_object_holding_a_surrogate_pair_is_the_serializers_400() -> None:
    """A pair of escapes is one character, no lone surrogate: nothing for the parser to refuse,
    and the list is not looked into as an object would be (an AttributeError, a 500)."""
    response = _post_json(b'["\\ud83d\\udca1"]')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_a_lone_surrogate_nested_in_a_field_is_a_400_naming_the_field() -> None:
    response = _post_json(b'{"name": {"k": "\\udfff"}, "price": "1.00", "stock_level": 1}')
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"name": [NOT_UNICODE]}
    assert not Product.objects.exists()
