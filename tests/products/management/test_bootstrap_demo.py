from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from inventory_project.management.commands import bootstrap_demo
from products.models import Product
from tests.concurrency import run_at_once
from tests.files import refuse_chmod, umask
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


@pytest.mark.parametrize(
    ("username", "why"),
    [("", "This field cannot be blank."), ("a" * 151, "at most 150"), ("bad user/x", "valid")],
)
def test_a_username_django_would_refuse_is_a_clear_error(username, why, django_user_model):
    """'' was a ValueError, 151 characters a DataError (tracebacks); 'bad user/x' was created."""
    with pytest.raises(CommandError, match=why):
        call_command("bootstrap_demo", "--username", username, stdout=StringIO())
    assert not django_user_model.objects.exists()


def test_another_usernames_password_is_printed_not_kept() -> None:
    """It overwrote the default admin's kept password, which `make run` prints."""
    ProductFactory()
    _bootstrap()
    kept = bootstrap_demo.PASSWORD_FILE.read_text()
    out = StringIO()
    call_command("bootstrap_demo", "--username", "clerk", stdout=out)
    assert "admin login: clerk / " in out.getvalue()
    assert bootstrap_demo.PASSWORD_FILE.read_text() == kept
    assert f"admin login: admin / {kept.strip()}" in _bootstrap()


def test_two_bootstraps_at_once_seed_once_and_both_succeed(django_user_model) -> None:
    """Both seeded an empty catalogue, and the second failed creating the same user."""
    errors = run_at_once(lambda: call_command("bootstrap_demo", stdout=StringIO()))
    assert errors == []
    assert Product.objects.count() == bootstrap_demo.DEMO_PRODUCTS
    assert django_user_model.objects.filter(username="admin").count() == 1


def test_the_kept_password_is_never_readable_by_others(monkeypatch) -> None:
    """Written, then made 0600: readable by everyone in between under umask 022. Created 0600,
    it needs no chmod (refused here) and is 0600 whatever the umask (0 here)."""
    ProductFactory()
    refuse_chmod(monkeypatch)
    with umask(0):
        _bootstrap()
    assert bootstrap_demo.PASSWORD_FILE.stat().st_mode & 0o777 == 0o600


def test_a_kept_password_file_others_could_read_is_narrowed_before_the_write() -> None:
    ProductFactory()
    bootstrap_demo.PASSWORD_FILE.write_text("an earlier checkout's\n")
    bootstrap_demo.PASSWORD_FILE.chmod(0o644)
    _bootstrap()
    assert bootstrap_demo.PASSWORD_FILE.stat().st_mode & 0o777 == 0o600


def test_the_password_is_not_written_through_a_symbolic_link(tmp_path) -> None:
    """A link put where the file goes would have had the password written where it points."""
    ProductFactory()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("")
    bootstrap_demo.PASSWORD_FILE.symlink_to(elsewhere)
    with pytest.raises(OSError, match="symbolic links"):  # ELOOP: O_NOFOLLOW
        _bootstrap()
    assert elsewhere.read_text() == ""
