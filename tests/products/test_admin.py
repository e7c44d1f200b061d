"""The Django admin: list with inline price/stock edits, search, stock filter, validation."""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from products.admin import ProductAdmin
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


class _Inputs(HTMLParser):
    """The inputs a browser would post from a page: name -> value."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if tag == "input" and attrs.get("name") and attrs.get("type") != "submit":
            self.values[attrs["name"]] = attrs.get("value") or ""


def page_inputs_from(response) -> dict[str, str]:
    parser = _Inputs()
    parser.feed(response.content.decode())
    return parser.values


def page_inputs(client, url: str) -> dict[str, str]:
    return page_inputs_from(client.get(url))


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


def change_url(product) -> str:
    return f"/admin/products/product/{product.pk}/change/"


def test_change_form_saves_only_what_the_editor_changed(admin_client) -> None:
    product = ProductFactory(name="Oak Desk", price=Decimal("10.00"), stock_level=10)
    form = page_inputs(admin_client, change_url(product))
    Product.objects.filter(pk=product.pk).update(stock_level=4)  # an order, through the API
    response = admin_client.post(change_url(product), {**form, "price": "12.00", "_save": "Save"})
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.name, product.price, product.stock_level) == ("Oak Desk", Decimal("12.00"), 4)


def test_change_form_refuses_to_write_over_a_concurrent_change_of_the_same_field(
    admin_client,
) -> None:
    product = ProductFactory(price=Decimal("10.00"), stock_level=10)
    form = page_inputs(admin_client, change_url(product))
    Product.objects.filter(pk=product.pk).update(stock_level=4)
    post = {**form, "price": "12.00", "stock_level": "15", "_save": "Save"}
    response = admin_client.post(change_url(product), post)
    assert response.status_code == 200
    assert "Changed to 4 by someone else" in response.content.decode()
    product.refresh_from_db()
    assert (product.price, product.stock_level, product.version) == (Decimal("10.00"), 4, 2)
    # The page shown with the error carries the current value: saving it again is deliberate.
    again = page_inputs_from(response)
    assert again["initial-stock_level"] == "4"
    response = admin_client.post(change_url(product), {**again, "_save": "Save"})
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.price, product.stock_level) == (Decimal("12.00"), 15)


def test_add_form_creates_a_product(admin_client) -> None:
    form = page_inputs(admin_client, "/admin/products/product/add/")
    post = {**form, "name": "Oak Desk", "price": "12.00", "stock_level": "3", "_save": "Save"}
    assert admin_client.post("/admin/products/product/add/", post).status_code == 302
    product = Product.objects.get()
    assert (product.name, product.price, product.stock_level) == ("Oak Desk", Decimal("12.00"), 3)


def test_change_form_without_edits_writes_nothing(admin_client) -> None:
    product = ProductFactory()
    form = page_inputs(admin_client, change_url(product))
    assert admin_client.post(change_url(product), {**form, "_save": "Save"}).status_code == 302
    product.refresh_from_db()
    assert product.version == 1


def test_list_editable_saves_only_what_the_editor_changed(admin_client) -> None:
    product = ProductFactory(price=Decimal("10.00"), stock_level=10)
    other = ProductFactory(price=Decimal("3.00"), stock_level=3)
    form = page_inputs(admin_client, "/admin/products/product/")
    Product.objects.filter(pk=product.pk).update(stock_level=4)
    Product.objects.filter(pk=other.pk).update(price=Decimal("3.50"))
    rows = {form[f"form-{n}-id"]: n for n in range(2)}
    n = rows[str(product.pk)]
    response = admin_client.post(
        "/admin/products/product/", {**form, f"form-{n}-price": "12.00", "_save": "Save"}
    )
    assert response.status_code == 302
    product.refresh_from_db()
    other.refresh_from_db()
    assert (product.price, product.stock_level) == (Decimal("12.00"), 4)
    assert (other.price, other.stock_level, other.version) == (Decimal("3.50"), 3, 2)


def test_list_editable_refuses_to_write_over_a_concurrent_change_of_the_same_field(
    admin_client,
) -> None:
    product = ProductFactory(price=Decimal("10.00"), stock_level=10)
    form = page_inputs(admin_client, "/admin/products/product/")
    Product.objects.filter(pk=product.pk).update(stock_level=4)
    post = {**form, "form-0-price": "12.00", "form-0-stock_level": "15", "_save": "Save"}
    response = admin_client.post("/admin/products/product/", post)
    assert response.status_code == 200
    assert "Changed to 4 by someone else" in response.content.decode()
    product.refresh_from_db()
    assert (product.price, product.stock_level) == (Decimal("10.00"), 4)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("where", ["change form", "list"])
def test_the_row_stays_locked_from_the_check_to_the_save(admin_client, monkeypatch, where) -> None:
    """Committed for real: a write between the admin's check and its save must wait for it."""
    product = ProductFactory(price=Decimal("10.00"), stock_level=10)
    url = change_url(product) if where == "change form" else "/admin/products/product/"
    field = "price" if where == "change form" else "form-0-price"
    form = page_inputs(admin_client, url)
    locked: list[bool] = []
    save_model = ProductAdmin.save_model

    def save_model_when_locked(self, request, obj, form, change) -> None:
        raw = connection.connection
        with psycopg.connect(raw.info.dsn, password=raw.info.password, autocommit=True) as other:
            try:
                other.execute(
                    "SELECT 1 FROM products_product WHERE id = %s FOR UPDATE NOWAIT", [obj.pk]
                )
                locked.append(False)
            except psycopg.errors.LockNotAvailable:
                locked.append(True)
        save_model(self, request, obj, form, change)

    monkeypatch.setattr(ProductAdmin, "save_model", save_model_when_locked)
    response = admin_client.post(url, {**form, field: "12.00", "_save": "Save"})
    assert response.status_code == 302
    assert locked == [True]
    product.refresh_from_db()
    assert product.price == Decimal("12.00")
