"""The Django admin: list with inline price/stock edits, search, stock filter, validation."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from products.models import Product
from tests.products.conftest import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    get_user_model().objects.create_superuser("boss", "", "pw")
    client.login(username="boss", password="pw")
    return client


def changelist_post(products, **overrides) -> dict:
    data = {
        "form-TOTAL_FORMS": str(len(products)),
        "form-INITIAL_FORMS": str(len(products)),
        "_save": "Save",
    }
    for n, product in enumerate(products):
        data[f"form-{n}-id"] = str(product.id)
        data[f"form-{n}-price"] = overrides.get("price", str(product.price))
        data[f"form-{n}-stock_level"] = overrides.get("stock_level", str(product.stock_level))
    return data


def test_changelist_shows_the_columns(admin_client) -> None:
    ProductFactory(name="Oak Desk")
    page = admin_client.get("/admin/products/product/").content.decode()
    assert "Oak Desk" in page
    for column in ("column-price", "column-stock_level", "column-updated_at"):
        assert column in page


def test_list_editable_saves_and_bumps_version(admin_client) -> None:
    product = ProductFactory(price=Decimal("1.00"), stock_level=1)
    response = admin_client.post(
        "/admin/products/product/", changelist_post([product], price="2.50", stock_level="9")
    )
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.price, product.stock_level, product.version) == (Decimal("2.50"), 9, 2)


def test_list_editable_rejects_negative_stock(admin_client) -> None:
    product = ProductFactory(stock_level=1)
    response = admin_client.post(
        "/admin/products/product/", changelist_post([product], stock_level="-3")
    )
    assert response.status_code == 200  # the list again, with the error
    assert "greater than or equal to 0" in response.content.decode()
    product.refresh_from_db()
    assert product.stock_level == 1


def test_search_by_name(admin_client) -> None:
    ProductFactory(name="Steel Hammer")
    ProductFactory(name="Oak Desk")
    page = admin_client.get("/admin/products/product/?q=hammer").content.decode()
    assert "Steel Hammer" in page
    assert "Oak Desk" not in page


def test_search_matches_every_word_or_a_quoted_phrase_through_the_search_keys(
    admin_client,
) -> None:
    ProductFactory(name="Steel Hammer")
    ProductFactory(name="Hammer of steel")
    ProductFactory(name="Oak Desk")
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get("/admin/products/product/?q=ham+STEEL").content.decode()
    assert "Steel Hammer" in page
    assert "Hammer of steel" in page
    assert "Oak Desk" not in page
    assert any("products_search_keys" in q["sql"] for q in captured.captured_queries)
    page = admin_client.get("/admin/products/product/?q=%22steel+ham%22").content.decode()
    assert "Steel Hammer" in page
    assert "Hammer of steel" not in page


@pytest.mark.parametrize(("stock", "shown"), [("out", "Empty Box"), ("low", "Few Left")])
def test_stock_filter(admin_client, stock, shown) -> None:
    ProductFactory(name="Empty Box", stock_level=0)
    ProductFactory(name="Few Left", stock_level=3)
    ProductFactory(name="Plenty", stock_level=300)
    page = admin_client.get(f"/admin/products/product/?stock={stock}").content.decode()
    assert shown in page
    assert "Plenty" not in page
    assert Product.objects.count() == 3
