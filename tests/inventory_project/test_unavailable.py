"""Pages outside the API answer a database failure with a 503 page, not a bug's 500."""

from __future__ import annotations

import html
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from inventory_project.unavailable import DatabaseUnavailableMiddleware
from products.api.errors import LOCK_WAIT_DETAIL
from products.models import Product
from tests.database import WEB_LIMITS, row_lock_held, web_server_connections
from tests.products.conftest import ProductFactory
from tests.products.test_admin import change_url, page_inputs


@pytest.mark.django_db(transaction=True)
def test_an_admin_save_behind_a_row_lock_held_past_the_limit_is_a_503_page_saying_so() -> None:
    """An editor saving a product whose row a shell kept locked got "Server Error (500)"."""
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("boss", "", "pw"))
    product = ProductFactory(price=Decimal("10.00"), stock_level=10)
    form = page_inputs(client, change_url(product))
    with row_lock_held(product.pk), web_server_connections(**WEB_LIMITS):
        response = client.post(change_url(product), {**form, "stock_level": "3"})
    assert (response.status_code, response["Retry-After"]) == (503, "5")
    assert html.escape(LOCK_WAIT_DETAIL) in response.content.decode()
    product.refresh_from_db()
    assert (product.stock_level, product.version) == (10, 1)


def test_any_other_error_is_left_to_djangos_500() -> None:
    middleware = DatabaseUnavailableMiddleware(lambda request: None)  # type: ignore[arg-type,return-value]
    request = RequestFactory().get("/admin/")
    assert middleware.process_exception(request, RuntimeError("a bug")) is None
    assert middleware.process_exception(request, Product.DoesNotExist()) is None
