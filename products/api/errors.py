"""One JSON error shape for everything under /api/:

    {"error": {"code": "not_found", "message": "...", "fields": {"price": ["..."]}}}

`fields` appears only on validation errors. The DRF exception handler covers the views; the
handler400, handler403, handler404 and handler500 functions (wired in inventory_project/urls.py)
cover Django's own errors for /api/ paths, such as an unknown URL.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.template import TemplateDoesNotExist, loader
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.utils.serializer_helpers import ReturnDict
from rest_framework.views import exception_handler as drf_exception_handler

from inventory_project import logs
from inventory_project.postgresql.base import stale_plan
from inventory_project.postgresql.connection import NoAnswer

logger = logging.getLogger(__name__)
# A database outage fails every request: one line a minute says so, not a traceback each.
DATABASE_DOWN = logs.Every()
# So does a lock that someone holds, for every request that needs it.
DATABASE_LIMIT = logs.Every()
# And a migration changing a column's type, once on each pooled connection.
SCHEMA_CHANGED = logs.Every()

LOCK_WAIT_DETAIL = (
    "Another transaction holds a lock this request needs, past the time the request may wait "
    "for it; try again shortly."
)
STATEMENT_DETAIL = (
    "The database cancelled this request's query: it ran past its time limit, or an operator "
    "cancelled it; try again shortly."
)
IDLE_TRANSACTION_DETAIL = (
    "The database ended this request's transaction: it was left idle past its time limit; "
    "try again shortly."
)
NO_ANSWER_DETAIL = "The database did not answer in time; try again shortly."
SCHEMA_CHANGED_DETAIL = (
    "The database's schema changed while this request ran (a migration); its transaction was "
    "rolled back: try again."
)


def limit_reached(exc: Exception) -> str | None:
    """What a 503 says when a web request's SQL reached one of its limits (the settings'
    WEB_DB_*), rather than found no database; None for any other error."""
    cause = exc.__cause__
    if isinstance(cause, psycopg.errors.LockNotAvailable):
        return LOCK_WAIT_DETAIL
    if isinstance(cause, psycopg.errors.QueryCanceled):
        return STATEMENT_DETAIL
    if isinstance(cause, psycopg.errors.IdleInTransactionSessionTimeout):
        return IDLE_TRANSACTION_DETAIL  # an InternalError: its SQLSTATE's class is 25
    return None


def schema_changed(exc: Exception) -> bool:
    """Whether PostgreSQL refused, inside a transaction, a statement prepared before a
    migration changed a column's type. Outside one the statement is run again
    (inventory_project/postgresql/base.py); inside, the transaction is lost, but nothing of it
    is kept and the ROLLBACK clears the stale statements: the request may simply be sent again."""
    return exc.__cause__ is not None and stale_plan(exc.__cause__)


def database_unavailable(exc: Exception) -> bool:
    """Whether `exc` is the database's failure, answered with a 503: no database (an
    OperationalError, an InterfaceError), a web request's limit reached, or a schema changed
    under the request."""
    return (
        isinstance(exc, OperationalError | InterfaceError)
        or limit_reached(exc) is not None
        or schema_changed(exc)
    )


def log_database_unavailable(log: logging.Logger, exc: Exception) -> None:
    """Say (once a minute per process and kind) that a request found no database, waited past
    a limit for it, or met a schema changed under it."""
    if schema_changed(exc):
        SCHEMA_CHANGED.warning(log, "database schema changed: %s: %s", type(exc).__name__, exc)
    elif limit_reached(exc) is None:
        DATABASE_DOWN.error(log, "database unavailable: %s: %s", type(exc).__name__, exc)
    else:
        DATABASE_LIMIT.warning(log, "database limit reached: %s: %s", type(exc).__name__, exc)


API_PREFIX = "/api/"

CODES_BY_STATUS = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    411: "length_required",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "server_error",
    501: "not_implemented",
    503: "service_unavailable",
}


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The resource has changed: If-Match does not name its current ETag."
    default_code = "precondition_failed"


IF_NONE_MATCH_FAILED = "If-None-Match names the resource's current ETag (or is *): not written."
IF_MATCH_READ_FAILED = "If-Match does not name the resource's current ETag."


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable; try again shortly."
    default_code = "service_unavailable"
    # Seconds, sent as Retry-After (DRF's handler sends `wait`, as for a 429): clients and
    # proxies that honour it back off instead of retrying at once.
    wait = 5


def unavailable_detail(exc: Exception) -> str:
    """The message of the 503 for a database error (OperationalError, InterfaceError, a web
    request's limit reached, or a schema changed under it)."""
    if isinstance(exc.__cause__, NoAnswer):
        return NO_ANSWER_DETAIL
    if schema_changed(exc):
        return SCHEMA_CHANGED_DETAIL
    return limit_reached(exc) or str(ServiceUnavailable.default_detail)


def error_body(
    code: str, message: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields is not None:
        error["fields"] = fields
    return {"error": error}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: every error a view raises, in the one shape."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_detail(exc))
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound()
    elif database_unavailable(exc):
        log_database_unavailable(logger, exc)
        exc = ServiceUnavailable(unavailable_detail(exc))
    elif isinstance(exc, IntegrityError | DataError):
        # A constraint or a value the validators missed: never a 500 for the client's input.
        logger.exception("database rejected the data")
        exc = exceptions.ValidationError({"non_field_errors": ["The database rejected the data."]})
    # Any other database error (a missing column: code deployed before its migration) is the
    # server's: left to Django, which logs it and answers handler500's JSON 500, so that alerts
    # on server errors see it (it was a 400 "invalid", on reads too).

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    shaped = _shape(exc, response.status_code, response.data)
    # The serializer that failed rides along: the browsable API refills its form from it.
    serializer = getattr(response.data, "serializer", None)
    response.data = shaped if serializer is None else ReturnDict(shaped, serializer=serializer)
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
        response.headers.setdefault("Retry-After", "60")
    return response


def _shape(exc: Exception, status_code: int, data: Any) -> dict[str, Any]:
    code = CODES_BY_STATUS.get(status_code, "error")
    if isinstance(exc, exceptions.ParseError):
        return error_body("parse_error", _text(data))
    if isinstance(exc, exceptions.AuthenticationFailed):
        return error_body("authentication_failed", _text(data))
    if isinstance(exc, exceptions.ValidationError):
        fields = data if isinstance(data, dict) else {"non_field_errors": data}
        fields = {name: _messages(value) for name, value in fields.items()}
        return error_body(code, "Invalid input: " + ", ".join(sorted(fields)) + ".", fields)
    return error_body(code, _text(data))


def _text(data: Any) -> str:
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])
    return str(data)


def _messages(value: Any) -> list[str]:
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            out.extend(_messages(item))
        return out
    if isinstance(value, dict):
        return [f"{key}: {msg}" for key, inner in value.items() for msg in _messages(inner)]
    return [str(value)]


def _django_validation_detail(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            ("non_field_errors" if field == "__all__" else field): messages
            for field, messages in exc.message_dict.items()
        }
    return {"non_field_errors": list(exc.messages)}


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def body_too_large() -> str:
    """The message of a 413, whichever layer finds the body too large."""
    return f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(error_body("too_large", body_too_large()), status=413)
        if isinstance(exception, TooManyFieldsSent):
            limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
            message = f"The request has more than {limit} fields."
            return JsonResponse(error_body("bad_request", message), status=400)
        return JsonResponse(error_body("bad_request", "Bad request."), status=400)
    # defaults.bad_request, but without its requires_csrf_token: that reads request.POST, and a
    # form Django cannot read (a charset other than UTF-8: the reason for many a 400) raised
    # again inside the handler, a 500 with its traceback.
    try:
        template = loader.get_template(defaults.ERROR_400_TEMPLATE_NAME)
    except TemplateDoesNotExist:
        page = defaults.ERROR_PAGE_TEMPLATE % {"title": "Bad Request (400)", "details": ""}
        return HttpResponseBadRequest(page)
    return HttpResponseBadRequest(template.render())


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api(request):
        message = str(exception) if isinstance(exception, DjangoPermissionDenied) else ""
        return JsonResponse(
            error_body("permission_denied", message or "Permission denied."), status=403
        )
    return defaults.permission_denied(request, exception)  # type: ignore[arg-type]


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api(request):
        message = "No such resource."
        if isinstance(exception, Http404) and request.resolver_match is not None:
            message = str(exception) or message
        return JsonResponse(error_body("not_found", message), status=404)
    return defaults.page_not_found(request, exception)


SERVER_ERROR_DETAIL = "Internal server error."


def handler500(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        return JsonResponse(error_body("server_error", SERVER_ERROR_DETAIL), status=500)
    return defaults.server_error(request)
