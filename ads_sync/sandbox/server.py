"""The sandbox servers: GoogleAdsService.SearchStream over TLS, and an OAuth token endpoint.

The HTTP side also serves a small control API, so a test (or a person) can read the call record
and inject faults while the sandbox runs in another process:

    GET  /_sandbox/health          200 once both servers are up
    GET  /_sandbox/calls           the call record: a JSON list, oldest first
    GET  /_sandbox/config          the current faults
    POST /_sandbox/config          JSON object merged into the faults
    POST /_sandbox/reset           default faults, empty record, counters cleared, tokens valid
    POST /_sandbox/expire-tokens   every access token issued so far stops working
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import grpc
from google.ads.googleads.v26.enums.types.campaign_status import CampaignStatusEnum
from google.ads.googleads.v26.errors.types import errors as ads_errors
from google.ads.googleads.v26.errors.types.authentication_error import AuthenticationErrorEnum
from google.ads.googleads.v26.errors.types.authorization_error import AuthorizationErrorEnum
from google.ads.googleads.v26.errors.types.database_error import DatabaseErrorEnum
from google.ads.googleads.v26.errors.types.internal_error import InternalErrorEnum
from google.ads.googleads.v26.errors.types.query_error import QueryErrorEnum
from google.ads.googleads.v26.errors.types.quota_error import QuotaErrorEnum
from google.ads.googleads.v26.errors.types.request_error import RequestErrorEnum
from google.ads.googleads.v26.services.types.google_ads_service import (
    GoogleAdsRow,
    SearchGoogleAdsStreamRequest,
    SearchGoogleAdsStreamResponse,
)
from google.protobuf import duration_pb2

from ads_sync.sandbox import data
from ads_sync.sandbox.certs import CertPaths, ensure_certificate

API_VERSION = "v26"
SERVICE = f"google.ads.googleads.{API_VERSION}.services.GoogleAdsService"
FAILURE_KEY = f"google.ads.googleads.{API_VERSION}.errors.googleadsfailure-bin"

CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - a fixed sandbox credential, not a secret
REFRESH_TOKEN = "sandbox-refresh-token"  # noqa: S105
# What the sandbox's refresh token was granted. A refresh may ask for these or fewer (its
# `scope`), as Google's token endpoint allows; any other scope is refused with invalid_scope.
SCOPE = "https://www.googleapis.com/auth/adwords"
DEVELOPER_TOKEN = "sandbox-developer-token"  # noqa: S105

FAULT_KINDS = (
    "quota",  # RESOURCE_EXHAUSTED, short-term quota, retry_delay = quota_retry_delay_s
    "daily_quota",  # RESOURCE_EXHAUSTED, daily quota, retry_delay = daily_quota_retry_delay_s
    "internal",  # INTERNAL
    "unavailable",  # UNAVAILABLE, without a GoogleAdsFailure (a front end's)
    # UNAVAILABLE and DEADLINE_EXCEEDED with a GoogleAdsFailure (internal_error TRANSIENT_ERROR,
    # DEADLINE_EXCEEDED): the API's own, which the library raises as a GoogleAdsException.
    "transient_error",
    "deadline_exceeded",
    "aborted",  # ABORTED with a GoogleAdsFailure (database_error CONCURRENT_MODIFICATION)
    "hang",  # no answer until the client gives up (its deadline), or for hang_s seconds
    "unauthenticated",  # UNAUTHENTICATED, as if the access token had expired
    "permission_denied",  # PERMISSION_DENIED (USER_PERMISSION_DENIED): this account's
    # Refusals of the installation rather than of the account, as Google answers them for every
    # account alike: PERMISSION_DENIED (CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION: the Cloud
    # project that owns the OAuth client has Test access only), and UNAUTHENTICATED with a
    # GoogleAdsFailure that names the OAuth user, not the access token (NOT_ADS_USER).
    "project_not_approved",
    "not_ads_user",
    "invalid_argument",  # INVALID_ARGUMENT (a query error)
    # The first row's batch, then the stream reset that gRPC reports as UNKNOWN "Stream
    # removed", without trailing metadata: the real SearchStream's (google-ads-python#707).
    "stream_removed",
    # UNKNOWN with a GoogleAdsFailure (ERROR_CODE_NOT_PUBLISHED): the server's own answer, not a
    # reset of the stream.
    "unknown",
    # An answer without a row, ended OK: for the account query (FROM customer), no account row.
    "empty",
)

DEFAULT_FAULTS: dict[str, Any] = {
    # Seconds added to every SearchStream call.
    "latency_s": 0.0,
    # {kind: n}: the first n attempts for each (customer, date) fail with that kind, then the
    # next kind's attempts, then success. Deterministic, for exact attempt counts in tests.
    "fail_first": {},
    # {kind: fraction}: that fraction of attempts fail with that kind (a hash of customer, date,
    # attempt number and seed decides, so a run is reproducible).
    "fail_rate": {},
    "seed": "sandbox",
    "quota_retry_delay_s": 1.0,
    "daily_quota_retry_delay_s": 6 * 3600.0,
    # None: until the client cancels the call (its deadline, ADS_SYNC_TIMEOUT_S), at most
    # HANG_MAX_S. A fixed 30 s under make run's 60 s deadline ended as UNAVAILABLE instead.
    "hang_s": None,
    # Server-side lifetime of access tokens (the client is told 3600 s): an expiry mid-run.
    "token_ttl_s": None,
    # The token endpoint answers invalid_grant: the refresh token was revoked.
    "revoke_refresh_token": False,
    # Customers that exist but this user may not read (PERMISSION_DENIED).
    "denied_customers": [],
    # The first campaign row of every answer sent twice in it: "same" (as it is) or "changed"
    # (the second time with one more impression); None: every row once.
    "duplicate_first_row": None,
    # False: the faults end without a GoogleAdsFailure in their trailing metadata (the request
    # id alone), as errors from a front end before the API come.
    "send_failure": True,
    # False: the faults end without the "request-id" entry of their trailing metadata: the
    # request id is then only in the GoogleAdsFailure (its request_id field), where one is sent.
    "request_id_metadata": True,
}
DUPLICATES = (None, "same", "changed")

_NUMBERS = (int, float)
# Settings whose values are numbers: seconds, and for fail_first and fail_rate each kind's.
_NUMERIC = {key for key, value in DEFAULT_FAULTS.items() if isinstance(value, float)}
# Seconds, or None: token_ttl_s (no expiry), hang_s (until the client cancels).
_NULLABLE = {"token_ttl_s", "hang_s"}
_NUMERIC |= _NULLABLE
_BOOLEAN = {key for key, value in DEFAULT_FAULTS.items() if isinstance(value, bool)}
HANG_MAX_S = 600.0


def _check_fault(key: str, value: Any) -> None:
    """Refuse a value of the wrong type now: stored, it failed inside a later call."""

    def number(item: Any) -> bool:
        return isinstance(item, _NUMBERS) and not isinstance(item, bool) and item >= 0

    if key in _NULLABLE and value is None:
        return
    if key in _BOOLEAN and not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, not {value!r}")
    if key in _NUMERIC and not number(value):
        raise ValueError(f"{key} must be a number >= 0, not {value!r}")
    per_kind = key in ("fail_first", "fail_rate")
    if per_kind and not (isinstance(value, dict) and all(number(n) for n in value.values())):
        raise ValueError(f"{key} must map fault kinds to numbers >= 0, not {value!r}")
    if key == "denied_customers" and not isinstance(value, list):
        raise ValueError(f"denied_customers must be a list, not {value!r}")
    if key == "duplicate_first_row" and value not in DUPLICATES:
        raise ValueError(f"duplicate_first_row must be one of {DUPLICATES}, not {value!r}")


_SELECT_RE = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<resource>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+.+?)?(?:\s+LIMIT\s+\d+)?(?:\s+PARAMETERS\s+.+?)?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_DATE_EQ_RE = re.compile(r"segments\.date\s*=\s*'(\d{4}-\d{2}-\d{2})'", re.IGNORECASE)
_DATE_BETWEEN_RE = re.compile(
    r"segments\.date\s+BETWEEN\s+'(\d{4}-\d{2}-\d{2})'\s+AND\s+'(\d{4}-\d{2}-\d{2})'",
    re.IGNORECASE,
)


class _Abort(Exception):
    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        outcome: str,
        error_code: dict[str, Any] | None = None,
        retry_delay_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.outcome = outcome
        self.error_code = error_code
        self.retry_delay_s = retry_delay_s


@dataclass
class _Query:
    resource: str
    fields: list[str]
    dates: list[dt.date]


class SandboxState:
    """Faults, issued tokens, attempt counters and the call record, shared by both servers."""

    def __init__(self, calls_file: Path | None = None) -> None:
        self.lock = threading.Lock()
        self.faults: dict[str, Any] = copy.deepcopy(DEFAULT_FAULTS)
        self.tokens: dict[str, float] = {}  # access token -> server-side expiry (epoch)
        self.attempts: dict[tuple[str, str], int] = {}
        self.calls: list[dict[str, Any]] = []
        self.calls_file = calls_file

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            entry["seq"] = len(self.calls) + 1
            self.calls.append(entry)
            if self.calls_file is not None:
                with self.calls_file.open("a") as fh:
                    fh.write(json.dumps(entry) + "\n")

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        unknown = set(changes) - set(DEFAULT_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        for key in ("fail_first", "fail_rate"):
            bad = set(changes.get(key) or {}) - set(FAULT_KINDS)
            if bad:
                raise ValueError(f"unknown fault kinds in {key}: {sorted(bad)}")
        for key, value in changes.items():
            _check_fault(key, value)
        with self.lock:
            self.faults.update(copy.deepcopy(changes))
            return copy.deepcopy(self.faults)

    def reset(self) -> None:
        with self.lock:
            self.faults = copy.deepcopy(DEFAULT_FAULTS)
            self.attempts.clear()
            self.calls.clear()
            # Tokens expired by a fault live again, so one test's expiry never leaks into the next.
            revived = time.time() + 3600.0
            for token in self.tokens:
                self.tokens[token] = revived

    def issue_token(self) -> str:
        token = "sandbox-at-" + secrets.token_urlsafe(16)
        with self.lock:
            ttl = self.faults["token_ttl_s"]
            self.tokens[token] = time.time() + (float(ttl) if ttl is not None else 3600.0)
        return token

    def expire_tokens(self) -> None:
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    def token_status(self, token: str | None) -> str:
        with self.lock:
            if token is None or token not in self.tokens:
                return "unknown"
            return "ok" if self.tokens[token] > time.time() else "expired"

    def next_attempt(self, customer_id: str, key: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            attempt = self.attempts.get((customer_id, key), 0) + 1
            self.attempts[(customer_id, key)] = attempt
            return attempt, copy.deepcopy(self.faults)


def _planned_fault(faults: dict[str, Any], customer_id: str, key: str, attempt: int) -> str | None:
    remaining = attempt
    for kind, count in faults["fail_first"].items():
        if remaining <= int(count):
            return str(kind)
        remaining -= int(count)
    for kind, fraction in faults["fail_rate"].items():
        digest = hashlib.sha256(
            f"{faults['seed']}:{kind}:{customer_id}:{key}:{attempt}".encode()
        ).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 < float(fraction):
            return str(kind)
    return None


def _parse_query(text: str) -> _Query:
    match = _SELECT_RE.match(text)
    if not match:
        raise _Abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            "Error in query: unexpected input.",
            "invalid_argument",
            {"query_error": QueryErrorEnum.QueryError.UNEXPECTED_END_OF_QUERY},
        )
    fields = [field.strip() for field in match["fields"].split(",") if field.strip()]
    resource = match["resource"].lower()
    where = match["where"] or ""
    dates: list[dt.date] = []
    if between := _DATE_BETWEEN_RE.search(where):
        start, end = (dt.date.fromisoformat(value) for value in between.groups())
        dates = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    elif equal := _DATE_EQ_RE.search(where):
        dates = [dt.date.fromisoformat(equal.group(1))]
    if resource not in {"campaign", "customer"}:
        raise _Abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"The sandbox serves only campaign and customer, not {resource!r}.",
            "invalid_argument",
            {"query_error": QueryErrorEnum.QueryError.PROHIBITED_RESOURCE_TYPE_IN_FROM_CLAUSE},
        )
    if resource == "campaign" and not dates:
        raise _Abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            "The sandbox needs segments.date = 'YYYY-MM-DD' or BETWEEN on campaign queries.",
            "invalid_argument",
            {"query_error": QueryErrorEnum.QueryError.EXPECTED_FILTERS_ON_DATE_RANGE},
        )
    return _Query(resource=resource, fields=fields, dates=dates)


def _field_values(
    customer_id: str, day: dt.date | None, row: data.SandboxRow | None
) -> dict[str, Any]:
    account = data.account(customer_id)
    values: dict[str, Any] = {
        "customer.id": int(customer_id),
        "customer.resource_name": f"customers/{customer_id}",
        "customer.time_zone": account.time_zone,
        "customer.currency_code": account.currency_code,
        "customer.descriptive_name": account.descriptive_name,
    }
    if day is not None:
        values["segments.date"] = day.isoformat()
    if row is not None:
        values.update(
            {
                "campaign.id": row.campaign_id,
                "campaign.name": row.campaign_name,
                "campaign.resource_name": f"customers/{customer_id}/campaigns/{row.campaign_id}",
                "campaign.status": CampaignStatusEnum.CampaignStatus.ENABLED,
                "metrics.impressions": row.impressions,
                "metrics.clicks": row.clicks,
                "metrics.cost_micros": row.cost_micros,
                "metrics.conversions": row.conversions,
            }
        )
    return values


def _build_row(fields: list[str], values: dict[str, Any]) -> GoogleAdsRow:
    row = GoogleAdsRow()
    for field in fields:
        if field not in values:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Unrecognized field in the query: '{field}'.",
                "invalid_argument",
                {"query_error": QueryErrorEnum.QueryError.UNRECOGNIZED_FIELD},
            )
        *path, leaf = field.split(".")
        target: Any = row
        for part in path:
            target = getattr(target, part)
        setattr(target, leaf, values[field])
    return row


def _failure_bytes(abort: _Abort, request_id: str) -> bytes:
    details = None
    if abort.retry_delay_s is not None:
        seconds = int(abort.retry_delay_s)
        details = ads_errors.ErrorDetails(
            quota_error_details=ads_errors.QuotaErrorDetails(
                rate_scope=ads_errors.QuotaErrorDetails.QuotaRateScope.ACCOUNT,
                rate_name=(
                    "Number of operations per day"
                    if abort.outcome == "daily_quota"
                    else "Requests per account per minute"
                ),
                retry_delay=duration_pb2.Duration(
                    seconds=seconds, nanos=round((abort.retry_delay_s - seconds) * 1e9)
                ),
            )
        )
    error = ads_errors.GoogleAdsError(
        error_code=ads_errors.ErrorCode(**(abort.error_code or {})),
        message=abort.message,
        details=details,
    )
    failure = ads_errors.GoogleAdsFailure(errors=[error], request_id=request_id)
    return ads_errors.GoogleAdsFailure.serialize(failure)


_Status = grpc.StatusCode
# What each fault kind that ends the call at once answers: its status, message, the error code
# of its GoogleAdsFailure (None: no failure, a front end's) and the setting of its retry_delay.
_ABORTS: dict[str, tuple[grpc.StatusCode, str, dict[str, Any] | None, str | None]] = {
    "quota": (
        _Status.RESOURCE_EXHAUSTED,
        "Too many requests. Retry in a little while.",
        {"quota_error": QuotaErrorEnum.QuotaError.RESOURCE_TEMPORARILY_EXHAUSTED},
        "quota_retry_delay_s",
    ),
    "daily_quota": (
        _Status.RESOURCE_EXHAUSTED,
        "Too many requests: the daily quota is exhausted.",
        {"quota_error": QuotaErrorEnum.QuotaError.RESOURCE_EXHAUSTED},
        "daily_quota_retry_delay_s",
    ),
    "internal": (
        _Status.INTERNAL,
        "Internal error encountered.",
        {"internal_error": InternalErrorEnum.InternalError.INTERNAL_ERROR},
        None,
    ),
    "unavailable": (_Status.UNAVAILABLE, "The service is currently unavailable.", None, None),
    "transient_error": (
        _Status.UNAVAILABLE,
        "The service encountered a transient error.",
        {"internal_error": InternalErrorEnum.InternalError.TRANSIENT_ERROR},
        None,
    ),
    "deadline_exceeded": (
        _Status.DEADLINE_EXCEEDED,
        "The request took longer than a deadline.",
        {"internal_error": InternalErrorEnum.InternalError.DEADLINE_EXCEEDED},
        None,
    ),
    "aborted": (
        _Status.ABORTED,
        "Multiple requests were attempting to modify the same resource at once.",
        {"database_error": DatabaseErrorEnum.DatabaseError.CONCURRENT_MODIFICATION},
        None,
    ),
    "unknown": (
        _Status.UNKNOWN,
        "An error whose code is not published.",
        {"internal_error": InternalErrorEnum.InternalError.ERROR_CODE_NOT_PUBLISHED},
        None,
    ),
    "unauthenticated": (
        _Status.UNAUTHENTICATED,
        "Request had invalid authentication credentials.",
        {"authentication_error": AuthenticationErrorEnum.AuthenticationError.OAUTH_TOKEN_EXPIRED},
        None,
    ),
    "permission_denied": (
        _Status.PERMISSION_DENIED,
        "User doesn't have permission to access customer.",
        {"authorization_error": AuthorizationErrorEnum.AuthorizationError.USER_PERMISSION_DENIED},
        None,
    ),
    "project_not_approved": (
        _Status.PERMISSION_DENIED,
        "The Google Cloud project is only approved for use with test accounts. To access "
        "non-test accounts, apply for Explorer, Basic or Standard access.",
        {
            "authorization_error": (
                AuthorizationErrorEnum.AuthorizationError.CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION
            )
        },
        None,
    ),
    "not_ads_user": (
        _Status.UNAUTHENTICATED,
        "The Google account that generated the OAuth access tokens is not associated with any "
        "Ads accounts. Create a new account, or add the Google account to an existing Ads "
        "account.",
        {"authentication_error": AuthenticationErrorEnum.AuthenticationError.NOT_ADS_USER},
        None,
    ),
    "invalid_argument": (
        _Status.INVALID_ARGUMENT,
        "Error in query.",
        {"query_error": QueryErrorEnum.QueryError.PROHIBITED_FIELD_IN_WHERE_CLAUSE},
        None,
    ),
}


def _fault_abort(kind: str, faults: dict[str, Any]) -> _Abort:
    code, message, error_code, delay = _ABORTS[kind]
    return _Abort(code, message, kind, error_code, float(faults[delay]) if delay else None)


class _AdsServicer:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def search_stream(
        self, request: SearchGoogleAdsStreamRequest, context: grpc.ServicerContext
    ) -> Iterator[SearchGoogleAdsStreamResponse]:
        received = time.time()
        request_id = uuid.uuid4().hex[:22]
        metadata = dict(context.invocation_metadata())
        customer_id = request.customer_id
        entry: dict[str, Any] = {
            "method": "SearchStream",
            "customer_id": customer_id,
            "date": None,
            "query": None,
            "attempt": None,
            "outcome": None,
            "rows": 0,
            "t": received,
            "request_id": request_id,
            "login_customer_id": metadata.get("login-customer-id"),
            "developer_token": metadata.get("developer-token"),
        }
        cancelled = threading.Event()
        context.add_callback(cancelled.set)
        try:
            query = _parse_query(request.query)
            entry["query"] = query.resource
            if query.dates:
                entry["date"] = (
                    query.dates[0].isoformat()
                    if len(query.dates) == 1
                    else f"{query.dates[0]}..{query.dates[-1]}"
                )
            key = entry["date"] or "account"
            attempt, faults = self.state.next_attempt(customer_id, key)
            entry["attempt"] = attempt

            auth = str(metadata.get("authorization", ""))
            token = auth[7:] if auth.startswith("Bearer ") else None
            access = self.state.token_status(token)
            if access != "ok":
                reason = AuthenticationErrorEnum.AuthenticationError
                raise _Abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"Request had invalid authentication credentials ({access} token).",
                    f"unauthenticated:{access}",
                    {
                        "authentication_error": (
                            reason.OAUTH_TOKEN_EXPIRED
                            if access == "expired"
                            else reason.OAUTH_TOKEN_INVALID
                        )
                    },
                )
            if not re.fullmatch(r"\d{10}", customer_id):
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Invalid customer ID '{customer_id}'.",
                    "invalid_customer_id",
                    {"request_error": RequestErrorEnum.RequestError.INVALID_CUSTOMER_ID},
                )
            if customer_id in faults["denied_customers"]:
                raise _fault_abort("permission_denied", faults)

            if faults["latency_s"]:
                cancelled.wait(float(faults["latency_s"]))
            kind = _planned_fault(faults, customer_id, key, attempt)
            if kind == "hang":
                entry["outcome"] = "hang"
                self.state.record(entry)
                hang_s = faults["hang_s"]
                cancelled.wait(float(hang_s) if hang_s is not None else HANG_MAX_S)
                context.abort(grpc.StatusCode.UNAVAILABLE, "The sandbox hung up.")
            if kind is not None and kind not in ("stream_removed", "empty"):
                raise _fault_abort(kind, faults)

            if query.resource == "customer":
                rows = [_build_row(query.fields, _field_values(customer_id, None, None))]
            else:
                served = [
                    (day, row) for day in query.dates for row in data.rows_for(customer_id, day)
                ]
                if served and faults["duplicate_first_row"]:
                    day, first = served[0]
                    if faults["duplicate_first_row"] == "changed":
                        first = dataclasses.replace(first, impressions=first.impressions + 1)
                    served.insert(1, (day, first))
                rows = [
                    _build_row(query.fields, _field_values(customer_id, day, row))
                    for day, row in served
                ]
            if kind == "empty":
                rows = []
            if kind == "stream_removed":
                entry["outcome"] = kind
                entry["rows"] = len(rows[:1])
                self.state.record(entry)
                yield SearchGoogleAdsStreamResponse(results=rows[:1], request_id=request_id)
                context.abort(grpc.StatusCode.UNKNOWN, "Stream removed")
            entry["outcome"] = kind or "ok"
            entry["rows"] = len(rows)
            self.state.record(entry)
            context.set_trailing_metadata((("request-id", request_id),))
            yield SearchGoogleAdsStreamResponse(results=rows, request_id=request_id)
        except _Abort as abort:
            entry["outcome"] = abort.outcome
            self.state.record(entry)
            with self.state.lock:
                send_failure = self.state.faults["send_failure"]
                request_id_metadata = self.state.faults["request_id_metadata"]
            trailing: list[tuple[str, str | bytes]] = []
            if request_id_metadata:
                trailing.append(("request-id", request_id))
            if abort.error_code is not None and send_failure:
                trailing.append((FAILURE_KEY, _failure_bytes(abort, request_id)))
            context.set_trailing_metadata(tuple(trailing))
            context.abort(abort.code, abort.message)


def _http_handler(state: SandboxState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            if self.path == "/_sandbox/health":
                self._send(200, {"status": "ok"})
            elif self.path == "/_sandbox/calls":
                with state.lock:
                    self._send(200, list(state.calls))
            elif self.path == "/_sandbox/config":
                with state.lock:
                    self._send(200, state.faults)
            else:
                self._send(404, {"error": f"no such path {self.path}"})

        def do_POST(self) -> None:
            body = self._body()
            if self.path == "/token":
                self._token(body)
            elif self.path == "/_sandbox/config":
                try:
                    changes = json.loads(body or b"{}")
                    if not isinstance(changes, dict):
                        raise ValueError("the body must be a JSON object")
                    self._send(200, state.configure(changes))
                except ValueError as exc:
                    self._send(400, {"error": str(exc)})
            elif self.path == "/_sandbox/reset":
                state.reset()
                self._send(200, {"status": "reset"})
            elif self.path == "/_sandbox/expire-tokens":
                state.expire_tokens()
                self._send(200, {"status": "expired"})
            else:
                self._send(404, {"error": f"no such path {self.path}"})

        def _token(self, body: bytes) -> None:
            form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
            answer: dict[str, Any]
            entry: dict[str, Any] = {"method": "token", "t": time.time(), "outcome": None}
            if form.get("grant_type") != "refresh_token":
                entry["outcome"] = "unsupported_grant_type"
                status, answer = 400, {"error": "unsupported_grant_type"}
            elif (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                entry["outcome"] = "invalid_client"
                status, answer = (
                    401,
                    {"error": "invalid_client", "error_description": "Unauthorized"},
                )
            elif form.get("refresh_token") != REFRESH_TOKEN or state.faults["revoke_refresh_token"]:
                entry["outcome"] = "invalid_grant"
                status, answer = (
                    400,
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    },
                )
            elif invalid := sorted(set(form.get("scope", SCOPE).split()) - {SCOPE}):
                entry["outcome"] = "invalid_scope"
                status, answer = (
                    400,
                    {
                        "error": "invalid_scope",
                        "error_description": "Some requested scopes were invalid. "
                        f"{{invalid=[{', '.join(invalid)}]}}",
                        "error_uri": "https://developers.google.com/identity/protocols/oauth2",
                    },
                )
            else:
                entry["outcome"] = "ok"
                status = 200
                answer = {
                    "access_token": state.issue_token(),
                    "expires_in": 3599,
                    "scope": SCOPE,
                    "token_type": "Bearer",
                }
            state.record(entry)
            self._send(status, answer)

    return Handler


class Sandbox:
    """Both servers in this process. `start()` returns once they accept connections."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        grpc_port: int = 50051,
        oauth_port: int = 8089,
        state_dir: Path,
        customers: tuple[str, ...] = data.DEFAULT_CUSTOMERS,
        calls_file: Path | None = None,
    ) -> None:
        self.host = host
        self.grpc_port = grpc_port
        self.oauth_port = oauth_port
        self.customers = customers
        self.certs: CertPaths = ensure_certificate(Path(state_dir).resolve(), host)
        self.state = SandboxState(calls_file)
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None

    def env(self) -> dict[str, str]:
        """The environment that points the app at this sandbox."""
        return {
            "GOOGLE_ADS_CLIENT_ID": CLIENT_ID,
            "GOOGLE_ADS_CLIENT_SECRET": CLIENT_SECRET,
            "GOOGLE_ADS_REFRESH_TOKEN": REFRESH_TOKEN,
            "GOOGLE_ADS_DEVELOPER_TOKEN": DEVELOPER_TOKEN,
            "GOOGLE_ADS_CUSTOMER_IDS": ",".join(self.customers),
            "GOOGLE_ADS_LOGIN_CUSTOMER_ID": "",
            "GOOGLE_ADS_ENDPOINT": f"{self.host}:{self.grpc_port}",
            "GOOGLE_ADS_TOKEN_URI": f"http://{self.host}:{self.oauth_port}/token",
            "GOOGLE_ADS_CA_FILE": str(self.certs.cert),
        }

    def start(self) -> None:
        # Not SO_REUSEPORT (gRPC's default): a second sandbox on a port in use shared it, and
        # each took part of the calls.
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64), options=[("grpc.so_reuseport", 0)]
        )
        servicer = _AdsServicer(self.state)
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "SearchStream": grpc.unary_stream_rpc_method_handler(
                    servicer.search_stream,
                    request_deserializer=SearchGoogleAdsStreamRequest.deserialize,
                    response_serializer=SearchGoogleAdsStreamResponse.serialize,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        credentials = grpc.ssl_server_credentials(
            [(self.certs.key.read_bytes(), self.certs.cert.read_bytes())]
        )
        server.add_secure_port(f"{self.host}:{self.grpc_port}", credentials)
        server.start()
        self._grpc = server
        self._http = ThreadingHTTPServer((self.host, self.oauth_port), _http_handler(self.state))
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace=0).wait()

    def wait(self) -> None:
        assert self._grpc is not None
        self._grpc.wait_for_termination()
