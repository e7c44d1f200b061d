"""Login POSTs are limited per client IP and per username (inventory_project/logins.py)."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import authenticate, get_user_model
from django.test import Client, RequestFactory, override_settings

from products import cache as product_cache

pytestmark = pytest.mark.django_db

CLOSED_PORT = 1
ADMIN_LOGIN = "/admin/login/"
API_LOGIN = "/api-auth/login/"


@pytest.fixture(autouse=True)
def three_per_hour(settings) -> None:
    # An hour's window: a minute's could roll over in the middle of a test.
    settings.RATELIMIT_LOGINS = "3/h"
    get_user_model().objects.create_superuser("boss", "", "right")


def guess(client: Client, url: str = ADMIN_LOGIN, username: str = "boss", **extra):
    return client.post(url, {"username": username, "password": "wrong"}, **extra)


@pytest.mark.parametrize("url", [ADMIN_LOGIN, API_LOGIN])
def test_the_fourth_guess_from_one_client_gets_429_before_any_password_check(url) -> None:
    client = Client()
    for n in range(3):
        assert guess(client, url, username=f"user{n}").status_code == 200  # the form, again
    response = client.post(url, {"username": "boss", "password": "right"})
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many login attempts" in response.content.decode()
    assert f"Try again in {response['Retry-After']} seconds." in response.content.decode()
    assert f'<a href="{url}">Back to the login page</a>' in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get(url).status_code == 200  # the page itself is not limited


def test_guesses_at_one_username_from_many_addresses_are_limited() -> None:
    client = Client()
    for n in range(3):
        assert guess(client, REMOTE_ADDR=f"10.0.0.{n + 1}").status_code == 200
    assert guess(client, REMOTE_ADDR="10.0.0.9").status_code == 429
    assert guess(client, username="someone", REMOTE_ADDR="10.0.0.10").status_code == 200


def test_guesses_from_one_ipv6_64_count_as_one_client() -> None:
    client = Client()
    for n in range(3):
        address = f"2001:db8:7:1::{n + 1}"
        assert guess(client, username=f"user{n}", REMOTE_ADDR=address).status_code == 200
    assert guess(client, username="user9", REMOTE_ADDR="2001:db8:7:1::99").status_code == 429
    assert guess(client, username="user9", REMOTE_ADDR="2001:db8:7:2::1").status_code == 200


def test_posts_to_other_pages_do_not_count_as_logins() -> None:
    client = Client()
    statuses = [client.post("/admin/logout/").status_code for _ in range(5)]
    assert 429 not in statuses


def test_a_failed_authentication_outside_a_login_form_is_not_counted_and_raises_nothing() -> None:
    """authenticate() from a shell or a script: no request to count it against, or no
    username to count it for."""
    assert authenticate(None, username="boss", password="wrong") is None
    assert authenticate(RequestFactory().post(ADMIN_LOGIN), password="wrong") is None


def test_a_users_own_logins_do_not_count_against_the_username() -> None:
    for n in range(5):
        response = Client().post(
            ADMIN_LOGIN, {"username": "boss", "password": "right"}, REMOTE_ADDR=f"10.0.1.{n}"
        )
        assert response.status_code == 302


def test_a_look_alike_username_counts_as_the_username_it_logs_in_as() -> None:
    client = Client()
    for n in range(3):
        assert guess(client, REMOTE_ADDR=f"10.0.2.{n}").status_code == 200
    full_width_b = "\uff42oss"  # the login form's NFKC makes it "boss"
    response = client.post(
        ADMIN_LOGIN, {"username": full_width_b, "password": "right"}, REMOTE_ADDR="10.0.2.9"
    )
    assert response.status_code == 429


def test_posts_refused_for_their_ip_add_nothing_to_a_usernames_count() -> None:
    client = Client()
    for n in range(3):
        assert guess(client, username=f"user{n}", REMOTE_ADDR="10.0.3.1").status_code == 200
    for _ in range(5):
        assert guess(client, REMOTE_ADDR="10.0.3.1").status_code == 429
    response = Client().post(
        ADMIN_LOGIN, {"username": "boss", "password": "right"}, REMOTE_ADDR="10.0.3.2"
    )
    assert response.status_code == 302


def test_posts_refused_for_their_csrf_token_do_not_count() -> None:
    client = Client(enforce_csrf_checks=True)
    for _ in range(5):
        assert guess(client).status_code == 403
    client.get(ADMIN_LOGIN)
    token = client.cookies["csrftoken"].value
    response = client.post(
        ADMIN_LOGIN, {"username": "boss", "password": "right", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302


def test_no_limit_with_rate_limits_off(settings, caplog) -> None:
    """And no counter asked is no outage: the product cache goes on using Redis, and no
    outage is logged."""
    settings.RATELIMIT_ENABLE = False
    client = Client()
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert guess(client).status_code == 200
    assert not product_cache.redis_resting()
    assert "logins unlimited" not in caplog.text


def test_logins_counted_in_redis_log_no_outage(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert guess(Client()).status_code == 200
    assert "logins unlimited" not in caplog.text


def test_with_redis_down_logins_are_not_limited_and_the_outage_is_logged(caplog) -> None:
    caches = {"default": {**django_settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    client = Client()
    with override_settings(CACHES=caches), caplog.at_level(logging.WARNING):
        statuses = {guess(client).status_code for _ in range(5)}
    assert statuses == {200}
    assert "logins unlimited" in caplog.text


def test_a_browsable_api_login_without_next_lands_on_the_api() -> None:
    response = Client().post(API_LOGIN, {"username": "boss", "password": "right"})
    assert response.status_code == 302
    assert response["Location"] == "/api/products"


def test_the_servers_address_leads_to_the_api() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/api/products"


def test_the_browsable_api_login_page_carries_the_project_name() -> None:
    page = Client().get(API_LOGIN).content.decode()
    assert "<title>Log in \u2013 Inventory API</title>" in page
    assert "Django REST framework" not in page


PASSWORD_CHANGE = "/admin/password_change/"


def change_password(client: Client, old: str, **extra):
    new = {"new_password1": "Tq8-vexing-lantern", "new_password2": "Tq8-vexing-lantern"}
    return client.post(PASSWORD_CHANGE, {"old_password": old, **new}, **extra)


def signed_in(username: str = "boss") -> Client:
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return client


def test_guesses_at_the_password_behind_a_session_get_429_before_any_password_check() -> None:
    client = signed_in()
    for n in range(3):
        assert change_password(client, f"guess{n}").status_code == 200  # the form, again
    response = change_password(client, "right")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many password attempts" in response.content.decode()
    assert f'<a href="{PASSWORD_CHANGE}">Back to the password change page</a>' in (
        response.content.decode()
    )
    assert get_user_model().objects.get(username="boss").check_password("right")


def test_guesses_behind_one_session_from_many_addresses_are_limited() -> None:
    client = signed_in()
    for n in range(3):
        assert change_password(client, f"guess{n}", REMOTE_ADDR=f"10.0.4.{n}").status_code == 200
    assert change_password(client, "right", REMOTE_ADDR="10.0.4.9").status_code == 429


def test_password_changes_and_logins_from_one_client_share_its_limit() -> None:
    client = signed_in()
    for n in range(3):
        assert guess(Client(), username=f"user{n}", REMOTE_ADDR="10.0.5.1").status_code == 200
    assert change_password(client, "right", REMOTE_ADDR="10.0.5.1").status_code == 429


def test_a_password_change_is_not_held_up_by_another_account_s_changes() -> None:
    get_user_model().objects.create_superuser("other", "", "other-right")
    other = signed_in("other")
    for n in range(3):
        assert change_password(other, f"guess{n}", REMOTE_ADDR=f"10.0.6.{n}").status_code == 200
    response = change_password(signed_in(), "right", REMOTE_ADDR="10.0.6.9")
    assert response.status_code == 302
    assert get_user_model().objects.get(username="boss").check_password("Tq8-vexing-lantern")
