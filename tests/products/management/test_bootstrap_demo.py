from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from inventory_project.management.commands import bootstrap_demo
from products.models import Product
from tests.products.conftest import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _password_file_in_tmp(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bootstrap_demo, "PASSWORD_FILE", tmp_path / "pw")


def test_bootstrap_seeds_demo_products_into_an_empty_catalogue() -> None:
    call_command("bootstrap_demo", stdout=StringIO())
    assert Product.objects.count() == bootstrap_demo.DEMO_PRODUCTS


def test_bootstrap_leaves_an_existing_catalogue_alone() -> None:
    ProductFactory()
    call_command("bootstrap_demo", stdout=StringIO())
    call_command("bootstrap_demo", stdout=StringIO())
    assert Product.objects.count() == 1
