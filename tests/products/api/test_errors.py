"""Django's own errors, answered by the handlers of products/api/errors.py."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

CSRF_SECRET = "abcdefghijklmnopqrstuvwxyzABCDEF"


@pytest.mark.parametrize("url", ["/admin/login/", "/api-auth/login/"])
def test_a_login_form_that_is_not_utf8_is_a_400_not_a_500(url: str) -> None:
    """Django refuses a URL-encoded form in another charset (BadRequest, a 400); the 400 page's
    requires_csrf_token read the form again, and raised again, a 500 with its traceback."""
    client = Client(enforce_csrf_checks=True)  # as a browser's: CSRF reads the form
    client.cookies["csrftoken"] = CSRF_SECRET

    response = client.post(
        url,
        f"username=a&password=b&csrfmiddlewaretoken={CSRF_SECRET}",
        content_type="application/x-www-form-urlencoded; charset=iso-8859-1",
        HTTP_ORIGIN="http://testserver",
    )

    assert response.status_code == 400
    assert "Bad Request (400)" in response.content.decode()
