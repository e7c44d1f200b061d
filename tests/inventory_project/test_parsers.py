"""The API's parsers (inventory_project/parsers.py): what a request's charset does to them."""

from __future__ import annotations

from typing import Any

import pytest

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
