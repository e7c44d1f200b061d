"""The pages people use, in a real browser: Chromium, headless, driven through ChromeDriver
(Selenium), against gunicorn under the production settings as docker/compose.yaml runs them
(plain HTTP: no HTTPS redirect, cookies not HTTPS-only), static files collected as a deployment
collects them.

What only a browser sees: the Content-Security-Policy refusing a script (django-celery-beat's
form ran its crontab help inline, and only Chromium showed it), a script's error, a static file
the manifest does not name, a form whose script posts without its CSRF token. Each of these is
an error in the browser's console, and every page here must leave the console without one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import Select, WebDriverWait

from products.models import Product
from tests.inventory_project.conftest import admin_pages, serving
from tests.processes import run

PASSWORD = secrets.token_urlsafe(16)
WAIT_S = 30
# The site's name in the browser, mapped to loopback (`driver`). At 127.0.0.1 or localhost,
# Chromium takes the page for a secure context and keeps Secure cookies over plain HTTP; at a
# name, as at the address a LAN reaches docker/compose.yaml's web on, it drops them.
HOST = "inventory.test"
# Over plain HTTP at a name, Chromium ignores the pages' Cross-Origin-Opener-Policy header (it
# takes effect over HTTPS only) and says so, as an error, on every page.
COOP_IGNORED = "The Cross-Origin-Opener-Policy header has been ignored"


def _found(*names: str) -> str | None:
    for name in names:
        if name and (path := shutil.which(name)):
            return path
    return None


CHROMIUM = _found(os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _found(os.environ.get("CHROMEDRIVER", ""), "chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    # Here, not in `driver`: the session's `static_root` (collectstatic, seconds) comes first.
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="no Chromium or ChromeDriver: `make browser` installs Debian's",
    ),
]


@pytest.fixture(scope="session")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static files as a deployment has them: collected, under the manifest's hashed names
    (a template naming a file the manifest lacks is a 500 there, and not under the test
    settings, which serve the apps' folders)."""
    root = tmp_path_factory.mktemp("static")
    run(
        *(sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"),
        **_production(root),
    )
    return root


def _production(static_root: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "inventory_project.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": HOST,
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_COOKIES": "false",
        "STATIC_ROOT": str(static_root),
        # Chromium keeps its connections open, and gunicorn's gthread worker lingers 2 s on
        # kept-alive ones when it stops: 2 s at the end of every test, for nothing they check.
        "GUNICORN_KEEPALIVE": "0",
    }


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--window-size=1280,1024",
        f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
    ):
        options.add_argument(argument)
    # Every console line, so that a page's errors can be read back (`Site.console_errors`).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    )
    try:
        yield browser
    finally:
        browser.quit()


class Site:
    """The app under gunicorn, and the browser pointed at it."""

    def __init__(self, port: int, browser: WebDriver) -> None:
        self.origin = f"http://{HOST}:{port}"
        self.browser = browser

    def open(self, path: str) -> None:
        self.browser.get(self.origin + path)

    def wait_for(self, css: str) -> WebElement:
        located = shown.visibility_of_element_located((By.CSS_SELECTOR, css))
        return self.until(located, f"no {css} shown")  # type: ignore[no-any-return]

    def until(self, condition: Callable[[WebDriver], Any], message: str) -> Any:
        # A condition may hold an element of a page the browser has just replaced (DRF's
        # ajax-form.js writes its answer over the document): asked again, not failed.
        wait = WebDriverWait(
            self.browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException]
        )
        try:
            return wait.until(condition)
        except TimeoutException:
            # What the page is, and what its console said, rather than chromedriver's stack.
            page = self.browser.find_element(By.TAG_NAME, "body").text[:2000]
            raise AssertionError(
                f"{message} within {WAIT_S} s at {self.browser.current_url}\n"
                f"console errors: {self.console_errors()}\npage text:\n{page}"
            ) from None

    def console_errors(self) -> list[str]:
        """The console's errors since the last call: a refused script, a script's exception,
        a file that failed to load."""
        return [
            entry["message"]
            for entry in self.browser.get_log("browser")
            if entry["level"] == "SEVERE" and COOP_IGNORED not in entry["message"]
        ]

    def log_in(self, username: str, page: str = "/admin/login/", then: str = "#user-tools") -> None:
        """Through the login form on `page` (the admin's, or the browsable API's), until the
        page after it shows `then`."""
        self.open(page)
        self.browser.find_element(By.ID, "id_username").send_keys(username)
        self.browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
        self.browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        self.wait_for(then)

    def text_with(self, needle: str, message: str, css: str = "body") -> str:
        """The text of the first `css` element once it holds `needle`."""
        return self.until(  # type: ignore[no-any-return]
            lambda browser: (
                needle in (text := browser.find_element(By.CSS_SELECTOR, css).text) and text
            ),
            message,
        )

    def try_it_out(self, operation: str, **parameters: str) -> str:
        """Swagger UI's "Try it out" on `operation` (its operationId), the parameters typed in:
        the status code the page shows."""
        block = f"#operations-products-{operation}"
        self.wait_for(f"{block} .opblock-summary").click()
        self.wait_for(f"{block} .try-out__btn").click()
        for name, value in parameters.items():
            self.wait_for(f"{block} input[placeholder={name}]").send_keys(value)
        self.wait_for(f"{block} .execute").click()
        return self.wait_for(f"{block} .live-responses-table tbody .response-col_status").text


@pytest.fixture
def site(static_root: Path, driver: WebDriver) -> Iterator[Site]:
    with serving(**_production(static_root)) as port:
        driver.delete_all_cookies()  # cookies are per host, not per port: the last test's
        yield Site(port, driver)
    driver.get_log("browser")  # nothing of this test's pages left for the next one


@pytest.fixture
def staff() -> Any:
    """A superuser whose password the production settings' hashers can check (the test
    settings hash with MD5, which they do not take)."""
    user = get_user_model().objects.create_superuser("browser-admin")
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "browser", iterations=1_000)
    user.save(update_fields=["password"])
    return user


@pytest.fixture
def product() -> Product:
    return Product.objects.create(name="Steel bolt", price="1.50", stock_level=3)


def test_swagger_ui_lists_the_operations_and_runs_one(site: Site) -> None:
    site.open("/api/docs/")
    site.wait_for("#operations-products-products_list .opblock-summary")
    paths = [
        element.get_attribute("data-path")
        for element in site.browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    ]
    assert "/api/products/{id}" in paths
    # "Try it out" sends the request from the page: the settings script and connect-src play a
    # part (a GET carries no CSRF header: test_swagger_ui_deletes_with_the_admin_session).
    assert site.try_it_out("products_list") == "200"
    assert site.console_errors() == []


def test_swagger_ui_deletes_with_the_admin_session(site: Site, staff, product: Product) -> None:
    """A write from "Try it out" as the admin's user: the settings script sends the session's
    CSRF token in its header (a DELETE without it is a 403)."""
    site.log_in(staff.username)
    site.open("/api/docs/")
    assert site.try_it_out("products_destroy", id=str(product.pk)) == "204"
    assert not Product.objects.filter(pk=product.pk).exists()
    assert site.console_errors() == []


@pytest.mark.parametrize(
    "path", ["/api/products", "/api/products/search?name=steel", "/api-auth/login/"]
)
def test_anonymous_pages_run_without_console_errors(site: Site, product: Product, path) -> None:
    site.open(path)
    site.wait_for("#content, .container form")
    assert site.console_errors() == []


def test_a_product_is_updated_from_the_browsable_api(site: Site, staff, product: Product) -> None:
    """Log in, a PUT from the form, log out: DRF's scripts (ajax-form.js, csrf.js) send the
    form with the session's CSRF token, and the log-out form posts without an inline handler
    (templates/rest_framework/api.html)."""
    site.log_in(staff.username, "/api-auth/login/", then=".navbar .dropdown-toggle")

    site.open(f"/api/products/{product.pk}")
    form = site.wait_for("#put-object-form form[data-method=PUT]")
    price = form.find_element(By.NAME, "price")
    price.clear()
    price.send_keys("2.75")
    form.find_element(By.CSS_SELECTOR, "button.btn-primary").click()
    answer = site.text_with("2.75", "no answer with the new price")
    assert f"PUT /api/products/{product.pk}" in answer
    assert "HTTP 200 OK" in answer
    product.refresh_from_db()
    assert str(product.price) == "2.75"

    site.wait_for(".navbar .dropdown-toggle").click()
    site.wait_for(".navbar .dropdown-menu button[type=submit]").click()
    site.wait_for(".navbar a[href^='/api-auth/login/']")
    assert site.console_errors() == []


def test_a_product_is_updated_from_the_raw_data_form(site: Site, staff, product: Product) -> None:
    """The browsable API's "Raw data" tab: filled with the body a PUT takes (the input
    serializer refuses any other key), sent as JSON by ajax-form.js."""
    site.log_in(staff.username)
    site.open(f"/api/products/{product.pk}")
    site.wait_for("a[href='#put-generic-content-form']").click()
    content = site.wait_for("#put-generic-content-form textarea[name=_content]")
    assert json.loads(content.get_attribute("value") or "") == {"price": "1.50", "stock_level": 3}
    content.clear()
    content.send_keys('{"price": "1.50", "stock_level": 8}')
    site.browser.find_element(
        By.CSS_SELECTOR, "#put-generic-content-form button.btn-primary"
    ).click()
    # The page before it said "GET ... HTTP 200 OK".
    answer = site.text_with("PUT /api/", "no answer to the PUT")
    assert "HTTP 200 OK" in answer
    product.refresh_from_db()
    assert product.stock_level == 8
    assert site.console_errors() == []


def test_stock_levels_are_edited_in_the_admin_list(site: Site, staff, product: Product) -> None:
    site.log_in(staff.username)
    site.open(reverse("admin:products_product_changelist"))
    stock = site.wait_for("input[name=form-0-stock_level]")
    stock.clear()
    stock.send_keys("41")
    site.browser.find_element(By.CSS_SELECTOR, "input[name=_save]").click()
    site.wait_for("ul.messagelist .success")
    product.refresh_from_db()
    assert product.stock_level == 41
    assert site.console_errors() == []


def test_products_are_deleted_with_the_admin_list_action(
    site: Site, staff, product: Product
) -> None:
    """Rows ticked in the list (Django's actions.js counts them), the action, the confirmation
    page: those rows gone, the other kept."""
    other = Product.objects.create(name="Copper nail", price="0.20", stock_level=9)
    kept = Product.objects.create(name="Brass hinge", price="4.00", stock_level=1)
    site.log_in(staff.username)
    site.open(reverse("admin:products_product_changelist"))
    for pk in (product.pk, other.pk):
        site.wait_for(f"input.action-select[value='{pk}']").click()
    site.text_with("2 of 3 selected", "the action bar does not count the two rows", ".actions")
    Select(site.wait_for("select[name=action]")).select_by_value("delete_selected")
    site.browser.find_element(By.CSS_SELECTOR, ".actions button[type=submit]").click()
    site.wait_for("#content form input[type=submit]").click()
    assert "Successfully deleted 2" in site.wait_for("ul.messagelist .success").text
    assert list(Product.objects.values_list("pk", flat=True)) == [kept.pk]
    assert site.console_errors() == []


def test_the_periodic_task_form_reads_the_chosen_crontab(site: Site, staff) -> None:
    """django-celery-beat's own template ran this inline, and the policy refused it: the
    translation row stayed and the help never said when the schedule runs."""
    crontab = CrontabSchedule.objects.create(minute="0", hour="3")
    site.log_in(staff.username)
    site.open(reverse("admin:django_celery_beat_periodictask_add"))
    Select(site.wait_for("#id_crontab")).select_by_value(str(crontab.pk))
    help_text = site.wait_for(".field-crontab .help")
    site.until(lambda _: "Translation: At 03:00" in help_text.text, "no translation shown")
    rows = site.browser.find_elements(By.CSS_SELECTOR, ".field-crontab_translation")
    assert rows
    assert not any(row.is_displayed() for row in rows)
    assert site.console_errors() == []


def test_every_admin_page_runs_without_console_errors(site: Site, staff, product: Product) -> None:
    """The index, every list and add page it links to (ours and the third-party apps'), and a
    product's change page."""
    site.log_in(staff.username)
    site.open(reverse("admin:index"))
    links = site.browser.find_elements(By.CSS_SELECTOR, "#content-main tr[class^=model-] a[href]")
    pages = sorted({str(link.get_attribute("href")).removeprefix(site.origin) for link in links})
    assert pages == sorted(admin_pages(staff))
    pages.append(reverse("admin:products_product_change", args=[product.pk]))
    errors = {}
    for page in pages:
        site.open(page)
        site.wait_for("#content")
        if found := site.console_errors():
            errors[page] = found
    assert errors == {}
