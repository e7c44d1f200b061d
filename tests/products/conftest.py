"""Products test helpers: users with and without model permissions, tokens, a product factory."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import factory
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from products import cache
from products.models import Product


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Widget {n:05d}")
    price = Decimal("9.99")
    stock_level = 10


def make_user(username: str, *perms: str) -> object:
    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    if perms:
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="products", codename__in=perms)
        )
    return user


def token_client(user: object) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def clerk(db) -> APIClient:
    """Token auth, every product permission."""
    return token_client(make_user("clerk", "add_product", "change_product", "delete_product"))


@pytest.fixture
def reader(db) -> APIClient:
    """Token auth, no permission at all."""
    return token_client(make_user("reader"))


@pytest.fixture
def product(db) -> Product:
    return ProductFactory(name="Steel Hammer", price=Decimal("12.50"), stock_level=7)


@pytest.fixture
def fresh_cache_state(monkeypatch) -> Iterator[None]:
    """Outage state of the test's own, and no wait after a failure.

    The cache client and near cache are the test's own already: the autouse `_clean_cache`
    (tests/conftest.py) resets them around every test.
    """
    monkeypatch.setattr(cache, "RETRY_AFTER_FAILURE_S", 0.0)
    cache._state.suspect = False
    yield
    cache._state.suspect = False
