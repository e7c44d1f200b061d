"""The Django admin: list with inline price/stock edits, search, stock filter, validation."""

from __future__ import annotations

import contextlib
import threading
from decimal import Decimal
from html.parser import HTMLParser

import psycopg
import pytest
from django.contrib import messages
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from products.admin import ProductAdmin, ProductAdminForm
from products.models import Product
from tests.database import other_connection
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


@pytest.mark.parametrize(
    ("query", "left_out"), [("hammer", "Oak Desk"), ("%27steel+ham%27", "Hammer of steel")]
)
def test_search_by_name(admin_client, query: str, left_out: str) -> None:
    """A phrase in single quotes is one, as the admin's own search reads it (and double
    quotes)."""
    for name in ("Steel Hammer", "Hammer of steel", "Oak Desk"):
        ProductFactory(name=name)
    page = admin_client.get(f"/admin/products/product/?q={query}").content.decode()
    assert "Steel Hammer" in page
    assert left_out not in page


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
    assert any("products_search_pieces" in q["sql"] for q in captured.captured_queries)
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


@pytest.mark.django_db(transaction=True)
def test_a_change_form_whose_product_is_deleted_while_it_saves_says_so(
    admin_client, monkeypatch
) -> None:
    """Deleted by another user after the admin read the product, before the form's check
    locked it: the check finds no row."""
    product = ProductFactory(stock_level=10)
    form = page_inputs(admin_client, change_url(product))
    get_object = ProductAdmin.get_object

    def get_object_then_deleted(self, request, object_id, from_field=None):
        found = get_object(self, request, object_id, from_field)
        if request.method == "POST":
            with other_connection() as other:
                other.execute("DELETE FROM products_product WHERE id = %s", [product.pk])
        return found

    monkeypatch.setattr(ProductAdmin, "get_object", get_object_then_deleted)
    response = admin_client.post(change_url(product), {**form, "stock_level": "9", "_save": "1"})
    assert response.status_code == 200
    assert "This product was deleted after the page was loaded." in response.content.decode()
    assert not Product.objects.filter(pk=product.pk).exists()  # and not written back


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


def test_a_list_save_reads_only_the_rows_the_editor_changed(admin_client) -> None:
    """A page's save sends all of its rows back: those returned as shown cost no query of the
    form's (each was a locking read; Django's own check of each row's id remains)."""
    products = [ProductFactory(price=Decimal("10.00"), stock_level=n) for n in range(20)]
    form = page_inputs(admin_client, "/admin/products/product/")
    n = next(n for n in range(20) if form[f"form-{n}-id"] == str(products[7].pk))
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.post(
            "/admin/products/product/", {**form, f"form-{n}-stock_level": "70", "_save": "Save"}
        )
    assert response.status_code == 302
    locking_reads = [q["sql"] for q in queries.captured_queries if "FOR UPDATE" in q["sql"]]
    # The save's lock of every posted row, then the changed row's check.
    assert len(locking_reads) == 2
    products[7].refresh_from_db()
    assert products[7].stock_level == 70


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
        with other_connection() as other:
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


def test_a_name_stored_with_outer_spaces_can_be_changed(admin_client) -> None:
    product = ProductFactory(name="  Oak Desk ")  # written outside the admin
    form = page_inputs(admin_client, change_url(product))
    response = admin_client.post(change_url(product), {**form, "name": "Pine Desk", "_save": "1"})
    assert response.status_code == 302
    product.refresh_from_db()
    assert product.name == "Pine Desk"


def test_a_refused_list_save_shows_each_error_on_its_own_row(admin_client) -> None:
    """The refused change can move rows out of the filtered list: the page keeps the posted ones."""
    a = ProductFactory(name="Alpha", stock_level=3)
    b = ProductFactory(name="Bravo", stock_level=5)
    c = ProductFactory(name="Charlie", stock_level=7)
    url = "/admin/products/product/?stock=low"
    form = page_inputs(admin_client, url)
    n = {form[f"form-{i}-id"]: i for i in range(3)}
    Product.objects.filter(pk=a.pk).update(stock_level=50)  # leaves the filter
    Product.objects.filter(pk=b.pk).update(stock_level=6)
    response = admin_client.post(
        url, {**form, f"form-{n[str(b.pk)]}-stock_level": "7", "_save": "1"}
    )
    assert response.status_code == 200
    rows = response.content.decode().split("<tr")
    (row,) = [row for row in rows if "Changed to 6 by someone else" in row]
    assert f"/admin/products/product/{b.pk}/change/" in row
    again = page_inputs_from(response)
    assert admin_client.post(url, {**again, "_save": "1"}).status_code == 302
    stock = dict(Product.objects.values_list("pk", "stock_level"))
    assert stock == {a.pk: 50, b.pk: 7, c.pk: 7}


def test_history_names_only_the_fields_written(admin_client) -> None:
    product = ProductFactory(price=Decimal("10.00"), stock_level=10)
    other = ProductFactory(price=Decimal("3.00"), stock_level=3)
    form = page_inputs(admin_client, "/admin/products/product/")
    n = {form[f"form-{i}-id"]: i for i in range(2)}
    Product.objects.filter(pk=product.pk).update(stock_level=4)
    response = admin_client.post(
        "/admin/products/product/",
        {**form, f"form-{n[str(product.pk)]}-price": "12.00", "_save": "1"},
        follow=True,
    )
    assert "1 product was changed successfully." in response.content.decode()
    entries = LogEntry.objects.all()
    assert [(int(e.object_id), e.get_change_message()) for e in entries] == [
        (product.pk, "Changed Price.")
    ]
    assert other.pk not in [int(e.object_id) for e in entries]


def test_history_of_a_post_without_the_shown_values_names_only_the_fields_written(
    admin_client,
) -> None:
    """A script posts the list without the values the page showed."""
    product = ProductFactory(price=Decimal("10.00"), stock_level=10)
    unchanged = ProductFactory(price=Decimal("3.00"), stock_level=3)
    post = changelist_post([product, unchanged])
    post["form-0-price"] = "12.00"
    response = admin_client.post("/admin/products/product/", post, follow=True)
    assert "1 product was changed successfully." in response.content.decode()
    assert [(int(e.object_id), e.get_change_message()) for e in LogEntry.objects.all()] == [
        (product.pk, "Changed Price.")
    ]
    unchanged.refresh_from_db()
    assert unchanged.version == 1


@pytest.mark.django_db(transaction=True)
def test_two_editors_saving_one_list_in_opposite_orders_do_not_deadlock(monkeypatch) -> None:
    """Each editor's first form has locked its row when both meet at the barrier: without the
    list's rows locked up front in id order, each would then wait for the other's row."""
    editor = get_user_model().objects.create_superuser("boss", "", "pw")
    first = ProductFactory(price=Decimal("10.00"), stock_level=10)
    second = ProductFactory(price=Decimal("20.00"), stock_level=20)
    pages = {"?o=1": Client(), "?o=-1": Client()}  # ids ascending, ids descending
    posts = {}
    for order, client in pages.items():
        client.force_login(editor)
        form = page_inputs(client, f"/admin/products/product/{order}")
        field = "price" if order == "?o=1" else "stock_level"
        posts[order] = {
            **form,
            **{
                f"form-{n}-{field}": str(int(Decimal(form[f"form-{n}-{field}"])) + 1)
                for n in (0, 1)
            },
            "_save": "1",
        }
    barrier = threading.Barrier(2)
    met = threading.local()
    clean = ProductAdminForm.clean

    def clean_then_meet(self):
        cleaned = clean(self)
        if not getattr(met, "done", False):
            met.done = True
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=3)  # with the fix, the other editor waits for our locks
        return cleaned

    monkeypatch.setattr(ProductAdminForm, "clean", clean_then_meet)
    outcomes: dict[str, object] = {}

    def save(order: str) -> None:
        try:
            response = pages[order].post(f"/admin/products/product/{order}", posts[order])
            outcomes[order] = response.status_code
        except Exception as exc:  # a deadlock reaches the test client as the view's exception
            outcomes[order] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(order,)) for order in pages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == {"?o=1": 302, "?o=-1": 302}
    prices = dict(Product.objects.values_list("pk", "price"))
    assert prices == {first.pk: Decimal("11.00"), second.pk: Decimal("21.00")}
    stock = dict(Product.objects.values_list("pk", "stock_level"))
    assert stock == {first.pk: 11, second.pk: 21}


def test_a_list_save_leaves_out_a_row_deleted_meanwhile_and_saves_the_others(
    admin_client,
) -> None:
    kept = ProductFactory(price=Decimal("10.00"), stock_level=10)
    deleted = ProductFactory(price=Decimal("3.00"), stock_level=3)
    later = ProductFactory(price=Decimal("5.00"), stock_level=5)
    form = page_inputs(admin_client, "/admin/products/product/")
    rows = {form[f"form-{n}-id"]: n for n in range(3)}
    deleted_id = deleted.pk
    deleted.delete()
    edits = {
        f"form-{rows[str(kept.pk)]}-price": "12.00",
        f"form-{rows[str(deleted_id)]}-price": "4.00",
        f"form-{rows[str(later.pk)]}-stock_level": "6",
    }
    response = admin_client.post("/admin/products/product/", {**form, **edits, "_save": "Save"})
    assert response.status_code == 302
    kept.refresh_from_db()
    later.refresh_from_db()
    assert (kept.price, kept.stock_level) == (Decimal("12.00"), 10)
    assert (later.price, later.stock_level) == (Decimal("5.00"), 6)
    shown = [str(m) for m in admin_client.get(response["Location"]).context["messages"]]
    assert any(f"Product {deleted_id} does not exist" in m for m in shown), shown


def test_a_list_save_naming_a_product_that_never_existed_does_not_say_someone_deleted_it(
    admin_client,
) -> None:
    """It said "Product N was deleted by someone else" of an id no product ever had: the save
    cannot tell a deleted product from one that never was."""
    kept = ProductFactory(price=Decimal("10.00"), stock_level=10)
    never = kept.pk + 1000
    post = changelist_post([kept], price="12.00")
    post.update({"form-TOTAL_FORMS": "2", "form-INITIAL_FORMS": "2", "form-1-id": str(never)})
    post.update({"form-1-price": "4.00", "form-1-stock_level": "4"})

    response = admin_client.post("/admin/products/product/", post)

    assert response.status_code == 302
    kept.refresh_from_db()
    assert kept.price == Decimal("12.00")
    shown = [str(m) for m in admin_client.get(response["Location"]).context["messages"]]
    said = [m for m in shown if str(never) in m]
    assert len(said) == 1, shown
    assert f"Product {never} does not exist" in said[0]
    assert "someone else" not in said[0]


def test_a_name_stored_with_a_line_break_does_not_block_saving_its_stock(admin_client) -> None:
    product = ProductFactory(name="Blue Widget\nLarge", stock_level=10)  # stored before refused
    form = page_inputs(admin_client, change_url(product))
    # As a browser sends the page back: the text box drops the line break, and the hidden copy
    # of the value shown sends it as CRLF.
    post = {**form, "name": "Blue WidgetLarge", "initial-name": "Blue Widget\r\nLarge"}
    response = admin_client.post(change_url(product), {**post, "stock_level": "9", "_save": "1"})
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.name, product.stock_level) == ("Blue Widget\nLarge", 9)


def test_a_name_stored_with_a_tab_does_not_block_saving_its_stock(admin_client) -> None:
    product = ProductFactory(name="Blue\tWidget", stock_level=10)  # stored before refused
    form = page_inputs(admin_client, change_url(product))
    response = admin_client.post(change_url(product), {**form, "stock_level": "9", "_save": "1"})
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.name, product.stock_level) == ("Blue\tWidget", 9)


def test_a_line_break_in_a_new_name_is_refused(admin_client) -> None:
    product = ProductFactory(name="Oak Desk")
    form = page_inputs(admin_client, change_url(product))
    response = admin_client.post(change_url(product), {**form, "name": "Oak\tDesk", "_save": "1"})
    assert response.status_code == 200
    assert "Names cannot contain control characters" in response.content.decode()


def test_a_list_save_with_a_brace_in_a_field_name_leaves_out_a_deleted_row(admin_client) -> None:
    kept = ProductFactory(price=Decimal("10.00"))
    deleted = ProductFactory()
    form = page_inputs(admin_client, "/admin/products/product/")
    rows = {form[f"form-{n}-id"]: n for n in range(2)}
    deleted.delete()
    row = rows[str(kept.pk)]
    edits = {f"form-{row}-price": "12.00", f"form-{row}-{{x}}": "odd"}
    response = admin_client.post("/admin/products/product/", {**form, **edits, "_save": "Save"})
    assert response.status_code == 302
    kept.refresh_from_db()
    assert kept.price == Decimal("12.00")


@pytest.mark.parametrize(
    ("garble", "status"),
    [
        ({"form-TOTAL_FORMS": None}, 200),  # Django: "ManagementForm data is missing"
        ({"form-TOTAL_FORMS": "two"}, 200),
        ({"form-TOTAL_FORMS": "5"}, 302),  # more than posted: the rest are empty extra forms
        ({"form-0-id": "abc"}, 200),
        ({"form-0-id": ""}, 200),
    ],
)
def test_a_malformed_list_save_is_answered_never_a_server_error(
    admin_client, garble, status
) -> None:
    first = ProductFactory(stock_level=10)
    second = ProductFactory(stock_level=20)
    post = {**changelist_post([first, second]), "form-1-stock_level": "21"}
    for key, value in garble.items():
        if value is None:
            del post[key]
        else:
            post[key] = value
    response = admin_client.post("/admin/products/product/", post)
    assert response.status_code == status
    second.refresh_from_db()
    assert second.stock_level == (21 if status == 302 else 20)  # all the list or none of it


def test_view_site_leads_to_the_api(admin_client) -> None:
    assert 'href="/api/products"' in admin_client.get("/admin/").content.decode()


@pytest.mark.parametrize("codenames", [[], ["view_product"]])
def test_a_list_save_without_the_change_permission_locks_nothing_and_says_nothing(
    client, codenames
) -> None:
    product = ProductFactory(price=Decimal("10.00"), stock_level=10)
    clerk = get_user_model().objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.login(username="clerk", password="pw")
    missing = Product(id=product.pk + 1_000, price=Decimal("1.00"), stock_level=1)

    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            "/admin/products/product/", changelist_post([product, missing], stock_level="0")
        )

    assert response.status_code == 403
    assert not [q["sql"] for q in queries if "FOR UPDATE" in q["sql"]]
    product.refresh_from_db()
    assert product.stock_level == 10
    assert [str(m) for m in client.get("/admin/").context["messages"]] == []


def test_the_stock_filters_counts_take_one_scan_of_the_catalogue(admin_client) -> None:
    """Django counted each choice as `id IN (the choice's queryset)`, which PostgreSQL ran as
    a scan of the subquery per row: hours over a million products (a 503 at the web's
    statement limit)."""
    for stock_level in (0, 3, 3, 300):
        ProductFactory(stock_level=stock_level)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/admin/products/product/?_facets=True").content.decode()
    for shown in ("Out of stock (1)", "Low stock (1-9) (2)", "In stock (1)"):
        assert shown in page
    (counting,) = [q["sql"] for q in queries.captured_queries if "FILTER (WHERE" in q["sql"]]
    assert counting.count("SELECT") == 1, counting  # no subquery


@pytest.mark.parametrize(
    ("stock_level", "choice"), [(0, "out"), (1, "low"), (9, "low"), (10, "in")]
)
def test_each_stock_level_is_in_one_filter_choice_only(admin_client, stock_level, choice) -> None:
    """The edges of "Low stock (1-9)": a product with 10 is in stock, and not low as well."""
    ProductFactory(name="Edge Lamp", stock_level=stock_level)
    for stock in ("out", "low", "in"):
        page = admin_client.get(f"/admin/products/product/?stock={stock}").content.decode()
        assert ("Edge Lamp" in page) is (stock == choice), stock


def test_the_add_form_refuses_a_name_with_a_control_character(admin_client) -> None:
    """The model's validators judge a new product whole: no field of it was stored before."""
    form = page_inputs(admin_client, "/admin/products/product/add/")
    post = {**form, "name": "Oak\tDesk", "price": "12.00", "stock_level": "3", "_save": "Save"}
    response = admin_client.post("/admin/products/product/add/", post)
    assert response.status_code == 200
    assert "Names cannot contain control characters" in response.content.decode()
    assert not Product.objects.exists()


def test_a_list_save_with_a_stock_level_that_is_not_a_number_is_refused_on_its_row(
    admin_client,
) -> None:
    """The field's own error: not a 500 from the check for a concurrent change."""
    product = ProductFactory(stock_level=1)
    response = admin_client.post(
        "/admin/products/product/", changelist_post([product], stock_level="many")
    )
    assert response.status_code == 200
    assert "Enter a whole number." in response.content.decode()
    product.refresh_from_db()
    assert product.stock_level == 1


def test_an_edit_to_the_value_someone_else_saved_meanwhile_is_not_refused(admin_client) -> None:
    """Both set the stock level to 4: no change of the other's would be lost."""
    product = ProductFactory(stock_level=10)
    form = page_inputs(admin_client, change_url(product))
    Product.objects.filter(pk=product.pk).update(stock_level=4)
    response = admin_client.post(change_url(product), {**form, "stock_level": "4", "_save": "1"})
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.stock_level, product.version) == (4, 2)  # nothing written by the admin


def test_a_name_stored_with_a_line_break_can_be_changed(admin_client) -> None:
    """As a browser sends the page back: it would otherwise read as changed by someone else."""
    product = ProductFactory(name="Blue Widget\nLarge")  # stored before refused
    form = page_inputs(admin_client, change_url(product))
    post = {**form, "name": "Blue Widget Large", "initial-name": "Blue Widget\r\nLarge"}
    response = admin_client.post(change_url(product), {**post, "_save": "1"})
    assert response.status_code == 302
    product.refresh_from_db()
    assert product.name == "Blue Widget Large"


def test_a_page_posted_back_as_served_saves_the_stock_beside_a_name_with_a_line_break(
    admin_client,
) -> None:
    """A script posts the inputs as the page gave them, the line break kept: the name is not
    edited, so its line break is not judged."""
    product = ProductFactory(name="Blue Widget\nLarge", stock_level=10)
    form = page_inputs(admin_client, change_url(product))
    assert form["name"] == "Blue Widget\nLarge"
    response = admin_client.post(change_url(product), {**form, "stock_level": "9", "_save": "1"})
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.name, product.stock_level) == ("Blue Widget\nLarge", 9)


def test_a_shown_value_that_cannot_be_read_counts_as_not_sent(admin_client) -> None:
    """A garbled copy of the value shown is no evidence of a change by someone else."""
    product = ProductFactory(price=Decimal("10.00"))
    form = page_inputs(admin_client, change_url(product))
    post = {**form, "price": "12.00", "initial-price": "ten", "_save": "1"}
    response = admin_client.post(change_url(product), post)
    assert response.status_code == 302
    product.refresh_from_db()
    assert product.price == Decimal("12.00")


def test_the_list_shows_each_product_s_id_and_name(admin_client) -> None:
    product = ProductFactory(name="Oak Desk")
    page = admin_client.get("/admin/products/product/").content.decode()
    for column in ("column-id", "column-name"):
        assert column in page
    assert f'<a href="/admin/products/product/{product.pk}/change/">{product.pk}</a>' in page


def test_the_list_has_a_search_box(admin_client) -> None:
    page = admin_client.get("/admin/products/product/").content.decode()
    assert 'id="searchbar"' in page


def test_the_list_is_in_id_order(admin_client) -> None:
    """The order its saves lock rows in, and one that pages stably under edits of a price."""
    names = ["Zinc Tray", "Oak Desk", "Maple Shelf"]
    ids = [ProductFactory(name=name).pk for name in names]
    page = admin_client.get("/admin/products/product/").content.decode()
    assert sorted(ids) == ids
    assert [page.index(name) for name in names] == sorted(page.index(name) for name in names)


def test_the_change_page_shows_the_version_and_times_read_only(admin_client) -> None:
    product = ProductFactory()
    page = admin_client.get(change_url(product)).content.decode()
    for field in ("version", "created_at", "updated_at"):
        assert f"field-{field}" in page, field
        assert f'name="{field}"' not in page, field


def test_a_filtered_list_does_not_count_the_whole_catalogue(admin_client) -> None:
    """Its "(N total)" is a count of every product: a scan of a million rows on each page."""
    ProductFactory(name="Steel Hammer", stock_level=0)
    with CaptureQueriesContext(connection) as queries:
        admin_client.get("/admin/products/product/?stock=out")
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"]]
    assert counts
    assert all("WHERE" in sql for sql in counts), counts


def test_a_list_page_shows_fifty_products(admin_client) -> None:
    ProductFactory.create_batch(51)
    page = admin_client.get("/admin/products/product/").content.decode()
    assert page.count('name="_selected_action"') == 50


def test_a_list_save_that_leaves_out_rows_names_each_in_a_warning(admin_client) -> None:
    kept = ProductFactory(price=Decimal("10.00"))
    never = [kept.pk + 1000, kept.pk + 1001]
    post = changelist_post([kept, *(Product(pk=pk, price=1, stock_level=1) for pk in never)])
    response = admin_client.post("/admin/products/product/", post)
    assert response.status_code == 302
    (said,) = list(admin_client.get(response["Location"]).context["messages"])
    assert str(said).startswith(f"Product {never[0]}, {never[1]} does not exist")
    assert str(said).endswith("its row was left out of the save.")
    assert said.level == messages.WARNING


@pytest.mark.parametrize("q", ['"steel', "steel'", '"', "'steel\""])
def test_a_search_with_an_unmatched_quote_is_answered_never_a_server_error(admin_client, q) -> None:
    ProductFactory(name="Steel Hammer")
    response = admin_client.get("/admin/products/product/", {"q": q})
    assert response.status_code == 200


def test_an_action_posted_from_a_list_whose_row_was_deleted_says_nothing_of_a_save(
    admin_client,
) -> None:
    """The list's page is one form: an action sends its rows' inputs too, but saves nothing."""
    kept = ProductFactory()
    deleted = ProductFactory()
    form = page_inputs(admin_client, "/admin/products/product/")
    deleted.delete()
    post = {**form, "action": "delete_selected", "_selected_action": [kept.pk], "index": "0"}
    response = admin_client.post("/admin/products/product/", post)
    assert response.status_code == 200  # the confirmation page
    said = [str(m) for m in response.context["messages"]]
    said += [str(m) for m in admin_client.get("/admin/").context["messages"]]
    assert not [m for m in said if "does not exist" in m], said


def test_a_list_save_leaving_out_a_deleted_row_keeps_a_concurrent_change_of_another_row(
    admin_client,
) -> None:
    """The rows renumbered after the deleted one keep the values their page showed: without
    them, a stock level changed meanwhile would read as the editor's and be written over."""
    deleted = ProductFactory(price=Decimal("3.00"), stock_level=3)
    kept = ProductFactory(price=Decimal("10.00"), stock_level=10)
    form = page_inputs(admin_client, "/admin/products/product/")
    n = {form[f"form-{i}-id"]: i for i in range(2)}[str(kept.pk)]
    deleted.delete()
    Product.objects.filter(pk=kept.pk).update(stock_level=4)
    response = admin_client.post(
        "/admin/products/product/", {**form, f"form-{n}-price": "12.00", "_save": "Save"}
    )
    assert response.status_code == 302
    kept.refresh_from_db()
    assert (kept.price, kept.stock_level) == (Decimal("12.00"), 4)
