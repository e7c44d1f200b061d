"""The HTML pages' Content-Security-Policy (inventory_project/csp.py): sent with every page, and
no page needs what it refuses, an inline script or event handler. test_browser.py runs the pages
under the policy in Chromium; these tests read what the server sends, page by page."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from products.models import Product
from tests.inventory_project.conftest import admin_pages

pytestmark = pytest.mark.django_db

HTML = "text/html"
# Script types a browser runs; any other (application/json) is data.
SCRIPT_TYPES = {"", "text/javascript", "application/javascript", "module"}

ANONYMOUS_PAGES = ["/api/docs/", "/api/products", "/api-auth/login/", "/admin/login/"]
STAFF_PAGES = [
    "/api/products",
    "/api/products/{id}",
    "/admin/",
    "/admin/products/product/{id}/change/",
]


@pytest.fixture
def product() -> Product:
    return Product.objects.create(name="Steel bolt", price="1.50", stock_level=3)


def _assert_policed(response: Any) -> None:
    """An HTML answer with the policy, and nothing in it that the policy would not run."""
    assert response["Content-Type"].startswith(HTML)
    assert response.get("Content-Security-Policy") == settings.CONTENT_SECURITY_POLICY
    assert _inline_code(response.content.decode()) == []


def _directives() -> dict[str, str]:
    return dict(part.split(" ", 1) for part in settings.CONTENT_SECURITY_POLICY.split("; "))


class _Inline(HTMLParser):
    """What in a page runs only where a policy allows inline code."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action") and (value or "").strip().startswith(
                "javascript:"
            ):
                self.found.append(f"<{tag} {name}={value}>")
        self._script = (
            tag == "script"
            and "src" not in named
            and (named.get("type") or "").lower() in SCRIPT_TYPES
        )

    def handle_data(self, data: str) -> None:
        if self._script and data.strip():
            self.found.append(f"<script>{data.strip()[:60]}")

    def handle_endtag(self, tag: str) -> None:
        self._script = False


def _inline_code(page: str) -> list[str]:
    parser = _Inline()
    parser.feed(page)
    return parser.found


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_a_page_carries_the_policy_and_runs_no_inline_code(client, product, path) -> None:
    response = client.get(path.format(id=product.pk), HTTP_ACCEPT=HTML)
    assert response.status_code == 200
    _assert_policed(response)


# Every registered model's, so a third-party page cannot slip by (django-celery-beat's periodic
# task form ran its crontab help as an inline script).
@pytest.mark.parametrize("path", admin_pages())
def test_an_admin_page_carries_the_policy_and_runs_no_inline_code(admin_client, path) -> None:
    """A read-only admin's add page is a 403 page: checked as it is."""
    response = admin_client.get(path, HTTP_ACCEPT=HTML)
    assert response.status_code in (200, 403)
    _assert_policed(response)


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_a_staff_page_carries_the_policy_and_runs_no_inline_code(
    admin_client, product, path
) -> None:
    """The admin's pages, and the browsable API's with its forms and its user menu."""
    response = admin_client.get(path.format(id=product.pk), HTTP_ACCEPT=HTML)
    assert response.status_code == 200
    _assert_policed(response)


def test_the_policy_refuses_inline_scripts_and_framing() -> None:
    directives = _directives()
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"


def test_the_policy_keeps_requests_base_urls_and_forms_to_the_site() -> None:
    """default-src bounds what no other directive names (requests from scripts, fonts, frames);
    base-uri and form-action keep an injected <base> or <form> from sending the page's links or
    a login's password elsewhere, which script-src alone does not."""
    directives = _directives()
    assert directives["default-src"] == "'self'"
    assert directives["base-uri"] == "'self'"
    assert directives["form-action"] == "'self'"


def test_the_policy_allows_the_inline_styles_and_data_images_the_pages_use() -> None:
    """The admin's and DRF's style attributes, the logins' and error pages' <style>, Swagger
    UI's data: icons: refused, the pages lose their layout and icons (no test sees a page's
    looks)."""
    directives = _directives()
    assert directives["style-src"] == "'self' 'unsafe-inline'"
    assert directives["img-src"] == "'self' data:"


def test_the_inline_check_finds_what_a_page_must_not_have() -> None:
    """The check above can fail: what DRF's own "Log out" link and Swagger's page had."""
    page = (
        '<a href="#" onclick=\'document.getElementById("logoutForm").submit()\'>Log out</a>'
        '<script>const swaggerSettings = {};</script><script type="application/json">{}</script>'
        '<script src="/static/x.js"></script><a href="javascript:void(0)">x</a>'
    )
    assert len(_inline_code(page)) == 3


def test_a_page_the_security_middleware_answers_itself_carries_the_policy(client, settings) -> None:
    """With the HTTPS redirect on, a Host not allowed is refused inside SecurityMiddleware:
    Django's 400 page, made above any middleware listed after it."""
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/admin/login/", HTTP_HOST="elsewhere.example")
    assert response.status_code == 400
    assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY


def test_a_json_answer_carries_no_policy(client, product) -> None:
    """It runs nothing in a browser; the cached answers ahead of Django stay as they are."""
    response = client.get(f"/api/products/{product.pk}", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response


def test_with_debug_on_no_policy_is_sent(client, settings) -> None:
    """Django 5.2's debug pages run inline scripts."""
    settings.DEBUG = True
    assert "Content-Security-Policy" not in client.get("/admin/login/")


def test_the_swagger_pages_settings_are_a_script_of_its_own_url(client) -> None:
    """drf-spectacular's split view: the page loads its settings as a script from itself."""
    page = client.get("/api/docs/").content.decode()
    assert '<script src="/api/docs/?script="></script>' in page
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()
    assert '"/api/schema/"' in script.content.decode()


def test_only_the_site_itself_may_load_the_swagger_script(client) -> None:
    """It holds the CSRF token: a <script src> on another site runs it in that site's page.
    The page itself is left to its own policies (an HTML page runs nothing when loaded so)."""
    assert client.get("/api/docs/?script=")["Cross-Origin-Resource-Policy"] == "same-origin"
    assert "Cross-Origin-Resource-Policy" not in client.get("/api/docs/")


class _Forms(HTMLParser):
    """Each form of a page: its action, its fields' values, and whether a button submits it."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "form":
            self.forms.append({"action": named.get("action"), "fields": {}, "submits": False})
        elif self.forms and tag == "input" and named.get("name"):
            self.forms[-1]["fields"][named["name"]] = named.get("value") or ""
        elif self.forms and tag == "button" and named.get("type", "submit") == "submit":
            self.forms[-1]["submits"] = True


def test_the_browsable_apis_log_out_form_posts_what_a_browser_would_and_logs_out(
    admin_user,
) -> None:
    """DRF's own "Log out" posted its form from an inline onclick, which the policy stops: the
    page's own form, its button and its token, posted with CSRF checked as in a browser (the
    test client skips it). A form without its token was a 403 page, and one without a submit
    button could not be sent at all."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    page = client.get("/api/products", HTTP_ACCEPT=HTML).content.decode()
    assert '<form method="post" action="/api-auth/logout/?next=/api/products">' in page
    parser = _Forms()
    parser.feed(page)
    (form,) = [f for f in parser.forms if (f["action"] or "").startswith("/api-auth/logout/")]
    assert form["submits"]

    response = client.post(form["action"], form["fields"])

    assert (response.status_code, response["Location"]) == (302, "/api/products")
    assert ">Log in<" in client.get("/api/products", HTTP_ACCEPT=HTML).content.decode()
