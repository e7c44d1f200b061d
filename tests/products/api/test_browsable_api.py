"""The browsable API in a browser: pages that follow the session, forms that follow the writes."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from tests.products.conftest import make_user

pytestmark = pytest.mark.django_db

HTML = "text/html"


@pytest.fixture
def editor() -> APIClient:
    make_user("editor", "add_product", "change_product")
    client = APIClient()
    assert client.login(username="editor", password="pw-editor")
    return client


def form(page: str, method: str) -> str:
    """The HTML form the page offers for `method`."""
    # The HTML form tab (the raw data tab has no enctype): method="POST", data-method="PUT".
    found = re.search(
        rf'<form[^>]*method="{method}" enctype="multipart/form-data".*?</form>', page, re.S
    )
    assert found, f"no {method} form"
    return found[0]


def submit(client: APIClient, method: str, url: str, data: dict) -> tuple[int, str]:
    """`data` sent as the page's HTML form sends it; the status and the page answered."""
    response = getattr(client, method)(url, data, format="multipart", HTTP_ACCEPT=HTML)
    return response.status_code, response.content.decode()


def input_names(html: str) -> set[str]:
    return set(re.findall(r'<(?:input|textarea|select)[^>]*name="([^"]+)"', html)) - {
        "csrfmiddlewaretoken",
        "_method",
        "_content_type",
        "_content",
    }


def test_detail_page_is_never_answered_304_with_the_json_etag(anon, editor, product) -> None:
    etag = anon.get(f"/api/products/{product.id}")["ETag"]
    for client in (anon, editor):
        page = client.get(f"/api/products/{product.id}", HTTP_ACCEPT=HTML, HTTP_IF_NONE_MATCH=etag)
        assert page.status_code == 200
        assert "ETag" not in page
        assert {"private", "no-store"} <= {
            part.strip() for part in page["Cache-Control"].split(",")
        }


def test_json_detail_still_answers_304_to_its_etag(anon, product) -> None:
    etag = anon.get(f"/api/products/{product.id}")["ETag"]
    assert anon.get(f"/api/products/{product.id}", HTTP_IF_NONE_MATCH=etag).status_code == 304


def test_put_form_after_a_put_is_the_update_form_with_the_new_values(editor, product) -> None:
    code, page = submit(
        editor, "put", f"/api/products/{product.id}", {"price": "15.00", "stock_level": 3}
    )
    assert code == 200
    put_form = form(page, "PUT")
    assert input_names(put_form) == {"price", "stock_level"}
    assert 'value="15.00"' in put_form
    assert 'value="3"' in put_form


def test_post_form_after_a_create_is_a_blank_create_form(editor) -> None:
    body = {"name": "Brass Nail", "price": "0.10", "stock_level": 500}
    code, page = submit(editor, "post", "/api/products", body)
    assert code == 201
    post_form = form(page, "POST")
    assert input_names(post_form) == {"name", "price", "stock_level"}
    assert "Brass Nail" not in post_form


def test_the_forms_csrf_token_is_not_an_unknown_field(editor) -> None:
    body = {"name": "Brass Nail", "price": "0.10", "stock_level": 5, "csrfmiddlewaretoken": "t"}
    code, _ = submit(editor, "post", "/api/products", body)
    assert code == 201


def test_form_after_a_400_keeps_what_was_sent_with_the_error_beside_it(editor, product) -> None:
    code, page = submit(
        editor, "put", f"/api/products/{product.id}", {"price": "-1", "stock_level": 4}
    )
    assert code == 400
    put_form = form(page, "PUT")
    assert 'value="-1"' in put_form
    assert 'value="4"' in put_form
    assert "Ensure this value is greater than or equal to 0." in put_form


def test_json_400_body_is_unchanged_by_the_form_it_carries(clerk, product) -> None:
    response = clerk.put(
        f"/api/products/{product.id}", {"price": "-1", "stock_level": 4}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "Invalid input: price.",
            "fields": {"price": ["Ensure this value is greater than or equal to 0."]},
        }
    }


@pytest.mark.parametrize("path", ["/api/products/{id}", "/api/products/{id}/"])
def test_breadcrumbs_name_each_page_once(anon, product, path: str) -> None:
    page = anon.get(path.format(id=product.id), HTTP_ACCEPT=HTML).content.decode()
    crumbs = re.search(r'<ul class="breadcrumb">(.*?)</ul>', page, re.S)
    assert crumbs
    assert re.findall(r">\s*(Product [A-Za-z]+)\s*<", crumbs[1]) == [
        "Product List",
        "Product Detail",
    ]
