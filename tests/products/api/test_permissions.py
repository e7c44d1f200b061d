"""Who may do what: reads are public, writes need the matching model permission."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.products.conftest import make_user, token_client

pytestmark = pytest.mark.django_db

WRITES = {
    "add_product": ("post", "/api/products", {"name": "N", "price": "1.00", "stock_level": 1}),
    "change_product": ("put", "/api/products/{id}", {"price": "2.00", "stock_level": 2}),
    "delete_product": ("delete", "/api/products/{id}", None),
}


def call(client: APIClient, method: str, url: str, body, product) -> int:
    return getattr(client, method)(url.format(id=product.id), body, format="json").status_code


@pytest.mark.parametrize(
    "url", ["/api/products", "/api/products/{id}", "/api/products/search?name=a"]
)
def test_reads_are_public(anon, product, url) -> None:
    assert anon.get(url.format(id=product.id)).status_code == 200


@pytest.mark.parametrize("perm", sorted(WRITES))
def test_anonymous_write_is_401(anon, product, perm) -> None:
    method, url, body = WRITES[perm]
    response = getattr(anon, method)(url.format(id=product.id), body, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("perm", sorted(WRITES))
def test_write_without_the_permission_is_403(reader, product, perm) -> None:
    method, url, body = WRITES[perm]
    response = getattr(reader, method)(url.format(id=product.id), body, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize("perm", sorted(WRITES))
def test_write_with_only_another_permission_is_403(product, perm) -> None:
    others = [p for p in WRITES if p != perm]
    client = token_client(make_user("partial", *others))
    method, url, body = WRITES[perm]
    assert call(client, method, url, body, product) == 403


@pytest.mark.parametrize("perm", sorted(WRITES))
def test_write_with_the_permission_succeeds(product, perm) -> None:
    client = token_client(make_user("allowed", perm))
    method, url, body = WRITES[perm]
    assert call(client, method, url, body, product) in {200, 201, 204}


def test_invalid_token_is_401_authentication_failed(product) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get(f"/api/products/{product.id}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_session_write_without_csrf_token_is_403(product) -> None:
    make_user("sess", "change_product")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="sess", password="pw-sess")
    response = client.patch(f"/api/products/{product.id}", {"stock_level": 1}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]


def test_session_write_with_csrf_token_succeeds(product) -> None:
    make_user("sess", "change_product")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="sess", password="pw-sess")
    client.get("/api/products?format=api")  # the browsable API sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = client.patch(
        f"/api/products/{product.id}", {"stock_level": 1}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 200


def test_browsable_api_shows_a_put_form_with_price_and_stock(product) -> None:
    make_user("sess", "change_product")
    client = APIClient()
    assert client.login(username="sess", password="pw-sess")
    page = client.get(f"/api/products/{product.id}", HTTP_ACCEPT="text/html").content.decode()
    assert 'name="price"' in page
    assert 'name="stock_level"' in page


def test_browsable_api_carries_the_project_name_and_its_links(product) -> None:
    page = APIClient().get("/api/products", HTTP_ACCEPT="text/html").content.decode()
    assert "<title>Product List \u2013 Inventory API</title>" in page
    assert 'href="/api/docs/"' in page
    assert 'href="/admin/"' in page
    assert "href='/api-auth/login/?next=/api/products'>Log in<" in page


def test_browsable_api_login_gives_a_session_that_writes_through_its_forms(product) -> None:
    make_user("sess", "change_product")
    client = APIClient(enforce_csrf_checks=True)
    login_page = client.get("/api-auth/login/?next=/api/products")
    assert login_page.status_code == 200
    response = client.post(
        "/api-auth/login/",
        {
            "username": "sess",
            "password": "pw-sess",
            "next": "/api/products",
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/api/products"
    page = client.get(f"/api/products/{product.id}", HTTP_ACCEPT="text/html").content.decode()
    assert "sess" in page
    assert 'name="stock_level"' in page
    # The form posts with the session and the CSRF token it renders, as the browser would.
    response = client.patch(
        f"/api/products/{product.id}",
        {"stock_level": 7},
        format="json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )
    assert response.status_code == 200
    assert response.json()["stock_level"] == 7
