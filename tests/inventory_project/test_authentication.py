"""Token authentication with the user's permissions loaded in the token query."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.products.conftest import ProductFactory, make_user, token_client

pytestmark = pytest.mark.django_db

CHANGE = {"price": "3.00", "stock_level": 7}


def change_product() -> Permission:
    return Permission.objects.get(content_type__app_label="products", codename="change_product")


def test_a_token_write_is_authorized_without_further_permission_queries() -> None:
    product = ProductFactory()
    client = token_client(make_user("clerk", "change_product"))
    with CaptureQueriesContext(connection) as queries:
        response = client.put(f"/api/products/{product.pk}", CHANGE, format="json")
    assert response.status_code == 200, response.content
    touching_permissions = [q["sql"] for q in queries if "auth_permission" in q["sql"]]
    assert len(touching_permissions) == 1  # the token query itself
    assert "authtoken_token" in touching_permissions[0]


def test_a_permission_granted_through_a_group_authorizes_a_token_write() -> None:
    product = ProductFactory()
    user = make_user("grouped")
    group = Group.objects.create(name="stock clerks")
    group.permissions.add(change_product())
    user.groups.add(group)
    response = token_client(user).put(f"/api/products/{product.pk}", CHANGE, format="json")
    assert response.status_code == 200, response.content


def test_a_revoked_permission_refuses_the_next_token_write() -> None:
    product = ProductFactory()
    user = make_user("clerk", "change_product")
    client = token_client(user)
    assert client.put(f"/api/products/{product.pk}", CHANGE, format="json").status_code == 200
    user.user_permissions.remove(change_product())
    response = client.put(f"/api/products/{product.pk}", CHANGE, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_an_unknown_token_or_an_inactive_user_is_refused_with_401() -> None:
    product = ProductFactory()
    unknown = APIClient()
    unknown.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert unknown.put(f"/api/products/{product.pk}", CHANGE, format="json").status_code == 401
    user = make_user("left", "change_product")
    client = token_client(user)
    user.is_active = False
    user.save()
    assert client.put(f"/api/products/{product.pk}", CHANGE, format="json").status_code == 401


def test_a_superuser_authenticated_by_token_has_every_permission() -> None:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from inventory_project.authentication import TokenAuthentication

    admin = get_user_model().objects.create_superuser("root", password="pw-root")
    token = Token.objects.create(user=admin)
    user, _ = TokenAuthentication().authenticate_credentials(token.key)
    everything = {
        f"{app}.{codename}"
        for app, codename in Permission.objects.values_list("content_type__app_label", "codename")
    }
    assert user.get_all_permissions() == everything
