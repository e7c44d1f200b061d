"""The pages outside the API (the admin, the login pages) when the database fails them.

A database outage, or a request's SQL reaching one of its limits (the settings' WEB_DB_*: a
row lock held by a shell past `WEB_DB_LOCK_TIMEOUT_S` while an editor saves that product), was
Django's "Server Error (500)" page, with a traceback in the log as for a bug. It is a 503 page
now, with Retry-After, saying what the API's 503 says. The API's views answer these
themselves, in JSON (products.api.errors).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from products.api.errors import (
    ServiceUnavailable,
    database_unavailable,
    error_body,
    is_api,
    log_database_unavailable,
    unavailable_detail,
)

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """Answers a view's database outage, or limit reached, with a 503 and Retry-After."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_unavailable(exception):
            return None  # Django's 500: a bug
        log_database_unavailable(logger, exception)
        message = unavailable_detail(exception)
        response: HttpResponse
        if is_api(request):
            body = error_body(ServiceUnavailable.default_code, message)
            response = JsonResponse(body, status=503)
        else:
            context = {"message": message}
            response = render(request, "database_unavailable.html", context, status=503)
        response["Retry-After"] = str(ServiceUnavailable.wait)
        return response
