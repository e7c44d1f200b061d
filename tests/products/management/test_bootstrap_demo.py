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


def _bootstrap() -> str:
    out = StringIO()
    call_command("bootstrap_demo", stdout=out)
    return out.getvalue()


def test_bootstrap_prints_the_demo_admins_password_that_logs_in() -> None:
    ProductFactory()
    first = _bootstrap()
    password = bootstrap_demo.PASSWORD_FILE.read_text().strip()
    assert f"admin login: admin / {password}" in first
    assert f"admin login: admin / {password}" in _bootstrap()


def test_bootstrap_does_not_print_a_kept_password_this_database_refuses(django_user_model) -> None:
    """The file is the checkout's, the user the database's: after .env named another database,
    the password printed did not log in."""
    ProductFactory()
    django_user_model.objects.create_superuser(username="admin", email="", password="other")
    bootstrap_demo.PASSWORD_FILE.write_text("kept-for-another-database\n")
    out = _bootstrap()
    assert "kept-for-another-database" not in out
    assert "scripts/manage.sh changepassword admin" in out
