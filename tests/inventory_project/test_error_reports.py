"""Error reports (DEBUG's page, error e-mails) never show a password from a URL setting."""

from __future__ import annotations

import secrets

import pytest
from django.test import RequestFactory, override_settings
from django.views.debug import technical_500_response

from inventory_project.error_reports import without_passwords

# Made at run time: the page quotes this file's source around the traceback.
PASSWORDS = [secrets.token_hex(8) for _ in range(3)]
URLS = {
    "DATABASE_URL": f"postgres://postgres:{PASSWORDS[0]}@127.0.0.1:5432/inventory",
    "REDIS_URL": f"redis://:{PASSWORDS[1]}@127.0.0.1:6379/0",
    "CELERY_BROKER_URL": f"amqp://guest:{PASSWORDS[2]}@127.0.0.1:5672//",
}


@override_settings(
    DEBUG=True,
    **URLS,
    CACHES={"default": {"BACKEND": "x", "LOCATION": URLS["REDIS_URL"], "OPTIONS": {}}},
)
def test_the_debug_page_shows_url_settings_without_their_passwords() -> None:
    request = RequestFactory().get("/boom")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        page = technical_500_response(request, type(exc), exc, exc.__traceback__)

    text = page.content.decode()
    assert "RuntimeError" in text
    for password in PASSWORDS:
        assert password not in text
    assert "postgres://postgres:********************@127.0.0.1:5432/inventory" in text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:********************@h:6379/0"),
        ("amqp://guest:p%40ss@h//", "amqp://guest:********************@h//"),
        ("postgres://postgres@127.0.0.1/db", "postgres://postgres@127.0.0.1/db"),
        ("postgres://app:p@ss@db:5432/x", "postgres://app:********************@db:5432/x"),
        ("amqp://user@corp:pw1@rabbit//", "amqp://user@corp:********************@rabbit//"),
        ("redis://:s3cr@t@[::1]:6379/0", "redis://:********************@[::1]:6379/0"),
        ("redis://:pw@host", "redis://:********************@host"),
        ("amqp://u:p/w@h//", "amqp://u:********************@h//"),  # unencoded, base64
        ("postgres://app:pa#ss@db/x", "postgres://app:********************@db/x"),
        ("redis://:pa?ss@h:6379/0", "redis://:********************@h:6379/0"),
        # Hidden too (a port, taken for a password): better than a password left.
        ("https://api.example:8443/users/@me", "https://api.example:********************@me"),
        ("https://example.com/a:b@c", "https://example.com/a:b@c"),  # no user info
        ("no url here: a@b", "no url here: a@b"),
    ],
)
def test_only_the_password_of_a_url_is_replaced(text, shown) -> None:
    assert without_passwords(text) == shown
