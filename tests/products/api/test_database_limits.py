"""A web request that reaches one of its database limits (the settings' WEB_DB_*) is a 503
saying which, on the fast paths as in the views, and changes nothing.

The limits are those of a gunicorn worker's connections (`tests.database.web_server_connections`,
shortened); the locks are held by a connection of the test's own, as a shell or a migration
would hold them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import override_settings
from rest_framework.authtoken.models import Token

from products.api import errors
from products.models import Product
from tests.database import (
    WEB_LIMITS,
    lock_holder,
    wait_until_session_ended,
    web_server_connections,
)
from tests.products.api.wsgi_client import send
from tests.products.conftest import ProductFactory, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_cache_state")]


@pytest.fixture
def token() -> str:
    return Token.objects.create(user=make_user("clerk", "change_product", "delete_product")).key


@pytest.fixture
def holder() -> Iterator[psycopg.Connection[Any]]:
    with lock_holder() as conn:
        yield conn


def put(app: Any, product: Product, token: str, stock_level: int) -> Any:
    return send(
        app,
        "PUT",
        f"/api/products/{product.pk}",
        {"price": "1.00", "stock_level": stock_level},
        HTTP_AUTHORIZATION=f"Token {token}",
    )


def assert_503(answer: Any, message: str) -> None:
    status, headers, content = answer
    assert (status, headers["Retry-After"], headers["Content-Type"]) == (
        503,
        "5",
        "application/json",
    )
    assert json.loads(content) == {"error": {"code": "service_unavailable", "message": message}}


def test_a_put_behind_a_row_lock_held_past_the_limit_is_a_503_saying_so(
    stack, token, holder
) -> None:
    app, django = stack
    product = ProductFactory(stock_level=1)
    holder.execute("SELECT 1 FROM products_product WHERE id = %s FOR UPDATE", [product.pk])
    with web_server_connections(**WEB_LIMITS):
        fast = put(app, product, token, 2)
        with override_settings(PRODUCT_FAST_WRITES=False):
            view = put(app, product, token, 3)
    holder.rollback()
    assert django.calls == 1  # the fast path answered the first itself
    assert_503(fast, errors.LOCK_WAIT_DETAIL)
    assert_503(view, errors.LOCK_WAIT_DETAIL)
    product.refresh_from_db()
    assert (product.stock_level, product.version) == (1, 1)


def test_with_no_lock_limit_the_statement_limit_still_ends_the_wait(stack, token, holder) -> None:
    app, _ = stack
    product = ProductFactory(stock_level=1)
    holder.execute("SELECT 1 FROM products_product WHERE id = %s FOR UPDATE", [product.pk])
    with web_server_connections(**{**WEB_LIMITS, "lock_timeout": "0"}):
        answer = put(app, product, token, 2)
    holder.rollback()
    assert_503(answer, errors.STATEMENT_DETAIL)


@override_settings(PRODUCT_CACHE_ENABLED=False)
def test_a_page_behind_a_migrations_table_lock_is_a_503_saying_so(stack, holder) -> None:
    app, django = stack
    ProductFactory()
    holder.execute("LOCK TABLE products_product IN ACCESS EXCLUSIVE MODE")
    with web_server_connections(**WEB_LIMITS):
        answer = send(app, "GET", "/api/products", QUERY_STRING="page=1")
    holder.rollback()
    assert django.calls == 0
    assert_503(answer, errors.LOCK_WAIT_DETAIL)


def test_a_delete_whose_transaction_stalls_past_the_limit_is_a_503_and_deletes_nothing(
    stack, token, monkeypatch
) -> None:
    """A request stuck between two statements of its transaction: the server ends the
    session, with its locks; Django raises an InternalError (SQLSTATE class 25), not an
    OperationalError."""
    app, _ = stack
    product = ProductFactory()
    delete = Product.delete

    def stalled_delete(self: Product, *args: Any, **kwargs: Any) -> Any:
        wait_until_session_ended(connection.connection.info.backend_pid)
        return delete(self, *args, **kwargs)

    monkeypatch.setattr(Product, "delete", stalled_delete)
    with web_server_connections(**WEB_LIMITS):
        answer = send(
            app, "DELETE", f"/api/products/{product.pk}", HTTP_AUTHORIZATION=f"Token {token}"
        )
    assert_503(answer, errors.IDLE_TRANSACTION_DETAIL)
    assert Product.objects.filter(pk=product.pk).exists()
