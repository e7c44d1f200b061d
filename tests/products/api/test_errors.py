"""Errors answered by products/api/errors.py: Django's own (its handlers), and a view's
(`api_exception_handler`)."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, OperationalError
from django.http import Http404
from django.test import Client, RequestFactory
from django.urls import resolve
from rest_framework import exceptions

from products.api.errors import api_exception_handler, handler403, handler404
from products.models import Product

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


# A view's errors that the serializers and views should have answered first: the handler's
# safety net keeps them in the API's shape rather than a 500.


def test_a_model_validation_the_serializer_missed_is_a_400_naming_its_fields() -> None:
    exc = DjangoValidationError({"name": ["Too long."], "__all__": ["Inconsistent."]})
    response = api_exception_handler(exc, {})
    assert response is not None
    assert response.status_code == 400
    assert response.data["error"]["fields"] == {
        "name": ["Too long."],
        "non_field_errors": ["Inconsistent."],
    }


def test_a_model_validation_without_fields_is_a_400_of_the_whole_input() -> None:
    response = api_exception_handler(DjangoValidationError("Inconsistent."), {})
    assert response is not None
    assert response.status_code == 400
    assert response.data["error"]["fields"] == {"non_field_errors": ["Inconsistent."]}


def test_a_missing_row_a_view_did_not_catch_is_a_404() -> None:
    response = api_exception_handler(Product.DoesNotExist("No product."), {})
    assert response is not None
    assert (response.status_code, response.data["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize("error", [IntegrityError, DataError])
def test_data_the_database_refused_is_a_400_not_a_500(error: type[Exception], caplog) -> None:
    response = api_exception_handler(error("violates check constraint"), {})
    assert response is not None
    assert response.status_code == 400
    assert response.data["error"]["fields"] == {
        "non_field_errors": ["The database rejected the data."]
    }
    assert "database rejected the data" in caplog.text  # logged: a validator is missing


def test_an_accept_header_the_api_cannot_answer_is_a_406_not_acceptable(product) -> None:
    response = Client().get(f"/api/products/{product.id}", HTTP_ACCEPT="application/xml")
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "not_acceptable"


def test_an_unknown_api_url_is_a_404_that_names_no_url_patterns() -> None:
    """Django's Resolver404 carries the URL patterns it tried: never the client's to read."""
    response = Client().get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "No such resource."}


def test_a_404_a_routed_view_raises_keeps_its_message() -> None:
    request = RequestFactory().get("/api/products/1")
    request.resolver_match = resolve("/api/products/1")
    response = handler404(request, Http404("No product 1."))
    assert json.loads(response.content)["error"]["message"] == "No product 1."


@pytest.mark.parametrize(
    ("exception", "message"),
    [
        (
            DjangoPermissionDenied("Writes are closed for the stock count."),
            "Writes are closed for the stock count.",
        ),
        (DjangoPermissionDenied(), "Permission denied."),
        (None, "Permission denied."),
    ],
)
def test_an_api_403_says_why_or_that_permission_is_denied(exception, message: str) -> None:
    response = handler403(RequestFactory().get("/api/products"), exception)
    assert response.status_code == 403
    assert json.loads(response.content)["error"] == {
        "code": "permission_denied",
        "message": message,
    }


def test_a_403_outside_the_api_is_djangos_page() -> None:
    response = handler403(RequestFactory().get("/admin/"), DjangoPermissionDenied())
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


def test_a_validation_error_without_fields_is_one_of_the_whole_input() -> None:
    response = api_exception_handler(exceptions.ValidationError("Inconsistent."), {})
    assert response is not None
    assert response.status_code == 400
    assert response.data["error"]["fields"] == {"non_field_errors": ["Inconsistent."]}


def test_nested_field_errors_are_flattened_to_messages_naming_their_key() -> None:
    exc = exceptions.ValidationError({"price": {"amount": ["Too big."], "currency": ["Unknown."]}})
    response = api_exception_handler(exc, {})
    assert response is not None
    assert response.data["error"]["fields"] == {"price": ["amount: Too big.", "currency: Unknown."]}


def test_a_database_outage_a_view_meets_is_logged(caplog) -> None:
    """One line a minute says so (errors.DATABASE_DOWN): the 503s alone would not tell."""
    response = api_exception_handler(OperationalError("connection refused"), {})
    assert response is not None
    assert response.status_code == 503
    (record,) = [r for r in caplog.records if r.name == "products.api.errors"]
    assert record.getMessage() == "database unavailable: OperationalError: connection refused"
