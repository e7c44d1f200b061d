"""The only production module that talks to Google Ads.

CONTRACT (shared by the client work and the sync work): everything the rest of the code needs
from Google Ads is the names below: CampaignDay, AccountInfo, the AdsError family, fetch_data and
get_account; and around them CallCounter (the calls a run counts), redacted (an error's text
without credentials), fetch_budget_s (one call's longest time with its retries, which the tasks'
time limits and the planning lock build on), warm_up_in_background (a worker's client built as
it starts), normalize_customer_id, and without_credentials and may_hold_credentials (the logging
filter's, inventory_project/logs.py).

How a call goes: one GoogleAdsService.SearchStream per (customer, date) through the real
`google-ads` library, after a slot from the Redis token bucket shared by every worker
(ADS_SYNC_MAX_QPS), with a deadline (ADS_SYNC_TIMEOUT_S) on every call. Failures are classified:

- transient (deadline, unavailable, internal, aborted, short-term quota, and unknown:
  SearchStream's reset mid-answer, "Stream removed", without a GoogleAdsFailure): retried with
  exponential backoff and jitter (ADS_SYNC_RETRY_BASE_S .. ADS_SYNC_RETRY_MAX_S), never sooner
  than the server's `retry_delay`, up to ADS_SYNC_MAX_ATTEMPTS attempts, then TransientAdsError;
- UNAUTHENTICATED (an access token expired or revoked early): refresh the credentials, one more try;
- daily quota (a quota failure whose retry_delay is long): DailyQuotaExhausted at once;
- a refresh token the token endpoint refuses (invalid_grant): CredentialsError at once;
- a refusal the API answers for every account alike (the Cloud project's access level, the
  OAuth user's Google account: _INSTALLATION_REFUSALS): InstallationCredentialsError at once;
- anything else (bad customer id, permission denied, invalid query): PermanentAdsError at once,
  with the request id.

The client is built lazily, once per process (gRPC channels do not survive fork), from settings.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import quote, quote_plus

import grpc
from django.conf import settings
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2.credentials import Credentials
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
)

from ads_sync.integrations import rate_limit

logger = logging.getLogger(__name__)

API_VERSION = "v26"
_FAILURE_KEY = f"google.ads.googleads.{API_VERSION}.errors.googleadsfailure-bin"
_SCOPES = ["https://www.googleapis.com/auth/adwords"]
_RATE_LIMIT_BUCKET = "ads_sync:google_ads:qps"
# A quota failure asking us to wait this long is the daily quota, not a short-term rate limit:
# the run stops and defers its remaining dates instead of sleeping on a worker.
DAILY_QUOTA_MIN_RETRY_DELAY_S = 600.0

_DAY_QUERY = (
    "SELECT campaign.id, campaign.name, metrics.impressions, metrics.clicks, "
    "metrics.cost_micros, metrics.conversions, segments.date "
    "FROM campaign WHERE segments.date = '{day}' ORDER BY campaign.id"
)
_ACCOUNT_QUERY = "SELECT customer.id, customer.time_zone, customer.currency_code FROM customer"


@dataclass(frozen=True, slots=True)
class CampaignDay:
    """One campaign's metrics for one day of one account, as the API reported them."""

    customer_id: str
    date: dt.date
    campaign_id: int
    campaign_name: str
    impressions: int
    clicks: int
    cost_micros: int
    conversions: float


@dataclass(frozen=True, slots=True)
class AccountInfo:
    customer_id: str
    time_zone: str
    currency_code: str


# Credentials as an error text may carry them back: a token endpoint (or a proxy in front of
# it) that echoes the form it was sent, a JSON body with a token in it, a header.
_CREDENTIAL_NAMES = (
    "client_secret",
    "refresh_token",
    "access_token",
    "id_token",
    "assertion",
    "developer_token",
    "developer-token",
)
_CREDENTIAL_FIELD = re.compile(
    rf"""(?P<name>{"|".join(_CREDENTIAL_NAMES)})
        (?P<sep>=|["']\s*:\s*["'])  # a form's field, or a JSON (or repr) key: not prose
        [^&\s"',;}}]+""",
    re.IGNORECASE | re.VERBOSE,
)
# A token, not a word ("Bearer authentication is required").
_BEARER = re.compile(r"(?P<name>Bearer)(?P<sep>\s+)[A-Za-z0-9._~+/=-]{20,}", re.IGNORECASE)
# In lower case, what each pattern above needs a text to hold before it can match.
_CREDENTIAL_WORDS = (*_CREDENTIAL_NAMES, "bearer")
REDACTED = "[redacted]"
# An error text is stored with its day and shown in the admin: a whole HTML error page is not.
ERROR_TEXT_MAX = 1000


def without_credentials(text: str) -> str:
    """`text` without the configured credentials (as they are, URL-encoded or JSON-escaped) and
    any credential-named field's or authorization header's value."""
    for spelling in _spellings(_credentials()):
        text = text.replace(spelling, REDACTED)
    text = _CREDENTIAL_FIELD.sub(rf"\g<name>\g<sep>{REDACTED}", text)
    return _BEARER.sub(rf"\g<name>\g<sep>{REDACTED}", text)


def may_hold_credentials(text: str) -> bool:
    """False when `without_credentials(text)` is `text` as it is, told by substring checks
    alone: the logging filter (inventory_project.logs) runs the patterns only for the lines
    that pass this."""
    if not text.isascii():
        # A case-insensitive pattern also takes four letters that are not ASCII for ASCII ones
        # (the long s for s, the Kelvin sign for k ...), which lower() leaves as they are.
        return True
    lowered = text.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS) or any(
        spelling in text for spelling in _spellings(_credentials())
    )


def _credentials() -> tuple[str, ...]:
    return (
        settings.GOOGLE_ADS_CLIENT_SECRET,
        settings.GOOGLE_ADS_REFRESH_TOKEN,
        settings.GOOGLE_ADS_DEVELOPER_TOKEN,
    )


@functools.lru_cache(maxsize=8)
def _spellings(credentials: tuple[str, ...]) -> tuple[str, ...]:
    """Each credential (of 4 characters or more) as a text may hold it: as it is, URL-encoded,
    JSON-escaped; in the order they are taken out."""
    found: list[str] = []
    for secret in credentials:
        if len(secret) >= 4:
            spellings = {secret, quote(secret, safe=""), quote_plus(secret)}
            found += sorted(spellings | {s.replace("/", "\\/") for s in spellings})
    return tuple(found)


def redacted(text: str) -> str:
    """`without_credentials(text)`, cut to ERROR_TEXT_MAX characters."""
    text = without_credentials(text)
    return text if len(text) <= ERROR_TEXT_MAX else f"{text[:ERROR_TEXT_MAX]}... (cut)"


def _safe_cause(exc: BaseException) -> BaseException | None:
    """`exc`, to chain to what is raised for it; None when its text, or a cause's, carries
    credentials: a logged traceback prints every exception of the chain."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:  # a chain may loop back on itself
        visited.add(id(seen))
        text = str(seen)
        if without_credentials(text) != text:
            return None
        seen = seen.__cause__ or seen.__context__
    return exc


class AdsError(Exception):
    """Base class of every failure fetch_data raises after its own retries are spent.

    Its text is stored with the day and logged: credentials are taken out of it (`redacted`).
    """

    request_id: str | None = None
    attempts: int = 0

    def __init__(self, message: str, *, request_id: str | None = None, attempts: int = 0) -> None:
        super().__init__(redacted(message))
        self.request_id = request_id
        self.attempts = attempts


class TransientAdsError(AdsError):
    """Retries exhausted on deadline/unavailable/internal/short quota errors; try another day."""


class PermanentAdsError(AdsError):
    """Retrying will not help (bad customer id, permission denied, invalid query)."""


class CredentialsError(PermanentAdsError):
    """The refresh token is revoked or the OAuth client is wrong: a person must renew it."""


class InstallationCredentialsError(CredentialsError):
    """The installation's own credentials are missing, revoked or refused by the token endpoint,
    or the API refuses them for every account (the access level of the Cloud project that owns
    the OAuth client, the refresh token's Google account): every account and day fails alike
    until they are fixed (not a day's failure to back off)."""


class DailyQuotaExhausted(AdsError):
    """The account's daily quota is gone: stop the run, defer the remaining dates."""

    retry_after_s: float = 0.0

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float = 0.0,
        request_id: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message, request_id=request_id, attempts=attempts)
        self.retry_after_s = retry_after_s


class CallCounter:
    """Counts the requests a search sends to the API: every retry, and the one more try after a
    refused access token, each count; a wait for the rate limit does not. A request counts once
    it is sent, answered or not (a refused connection, a deadline)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def fetch_data(
    customer_id: str, day: dt.date, *, counter: CallCounter | None = None
) -> list[CampaignDay]:
    """Return one account's campaign rows for one day (an empty list for a day with none)."""
    customer_id = _normalize(customer_id)
    query = _DAY_QUERY.format(day=day.isoformat())
    rows = _search(customer_id, query, f"{customer_id} {day}", counter)
    return [
        CampaignDay(
            customer_id=customer_id,
            date=dt.date.fromisoformat(row.segments.date) if row.segments.date else day,
            campaign_id=int(row.campaign.id),
            campaign_name=str(row.campaign.name),
            impressions=int(row.metrics.impressions),
            clicks=int(row.metrics.clicks),
            cost_micros=int(row.metrics.cost_micros),
            conversions=float(row.metrics.conversions),
        )
        for row in rows
    ]


def get_account(customer_id: str, *, counter: CallCounter | None = None) -> AccountInfo:
    """Return the account's time zone and currency: one query, every time.

    The caller keeps the answer (services.account_ensure, in the database): a cache here as
    well made a run report API calls that the process answered from memory.
    """
    customer_id = _normalize(customer_id)
    rows = _search(customer_id, _ACCOUNT_QUERY, f"{customer_id} account", counter)
    if not rows:
        raise PermanentAdsError(f"customer {customer_id}: the account query returned no row")
    info = AccountInfo(
        customer_id=customer_id,
        time_zone=str(rows[0].customer.time_zone),
        currency_code=str(rows[0].customer.currency_code),
    )
    return info


def warm_up() -> bool:
    """Build this process's client and take an access token before the first call needs them.

    A fresh worker process would otherwise spend its first task on it (about a second: the
    library's message modules, the channel, the token) while every other task of the process
    waits behind the build lock. Never raises: the first real call reports any problem.
    """
    if not (
        settings.GOOGLE_ADS_CLIENT_ID
        and settings.GOOGLE_ADS_CLIENT_SECRET
        and settings.GOOGLE_ADS_REFRESH_TOKEN
    ):
        return False
    try:
        client = _get_client()
        _ensure_token(client)
    except Exception as exc:
        logger.warning("Google Ads client warm-up failed (the first call will retry): %s", exc)
        return False
    return True


def warm_up_in_background() -> threading.Thread:
    """warm_up() in a daemon thread, so a worker's start is not held up by the network."""
    thread = threading.Thread(target=warm_up, name="google-ads-warm-up", daemon=True)
    thread.start()
    return thread


# --- The client, one per process -------------------------------------------------------------


@dataclass
class _Client:
    config: tuple[str, ...]
    pid: int
    credentials: Credentials
    # Held for the client's lifetime: a service object collected mid-stream closes the channel.
    service: Any
    refresh_lock: threading.Lock = field(default_factory=threading.Lock)


_build_lock = threading.Lock()
_client: _Client | None = None


def _forget_after_fork() -> None:
    # The parent's channel is unusable in the child; drop it without closing it.
    global _client, _build_lock
    _client = None
    _build_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


_CUSTOMER_ID = re.compile(r"^[0-9]{10}$")


def normalize_customer_id(customer_id: str) -> str:
    """A customer id as the ledger and the files key it: ten digits, without the dashes Google's
    interface shows (123-456-7890). ValueError for anything else."""
    normalized = _normalize(customer_id)
    if not _CUSTOMER_ID.match(normalized):
        raise ValueError(f"a customer id is ten digits, dashes allowed: {customer_id!r}")
    return normalized


def _normalize(customer_id: str) -> str:
    return str(customer_id).replace("-", "").strip()


def _config() -> tuple[str, ...]:
    return (
        settings.GOOGLE_ADS_ENDPOINT,
        settings.GOOGLE_ADS_TOKEN_URI,
        settings.GOOGLE_ADS_CLIENT_ID,
        settings.GOOGLE_ADS_CLIENT_SECRET,
        settings.GOOGLE_ADS_REFRESH_TOKEN,
        settings.GOOGLE_ADS_DEVELOPER_TOKEN,
        settings.GOOGLE_ADS_LOGIN_CUSTOMER_ID,
        settings.GOOGLE_ADS_CA_FILE,
    )


def _get_client() -> _Client:
    global _client
    config = _config()
    current = _client
    if current is not None and current.pid == os.getpid() and current.config == config:
        return current
    with _build_lock:
        current = _client
        if current is not None and current.pid == os.getpid() and current.config == config:
            return current
        _client = _build_client(config)
        return _client


def _build_client(config: tuple[str, ...]) -> _Client:
    endpoint, token_uri, client_id, client_secret, refresh_token, developer_token, login, ca = (
        config
    )
    missing = [
        name
        for name, value in (
            ("GOOGLE_ADS_CLIENT_ID", client_id),
            ("GOOGLE_ADS_CLIENT_SECRET", client_secret),
            ("GOOGLE_ADS_REFRESH_TOKEN", refresh_token),
        )
        if not value
    ]
    if missing:
        raise InstallationCredentialsError(
            f"Google Ads credentials are not configured: set {', '.join(missing)}"
        )
    if ca:
        # gRPC reads this once, before its first secure channel; the environment may already
        # point it at the system bundle, so a configured CA file must replace that value.
        if os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH") != ca and _client is not None:
            logger.warning("GOOGLE_ADS_CA_FILE changed after gRPC loaded its roots; restart")
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = ca
    # Imported here: the library's message modules take a second or more to load, which only
    # the processes that call Google should pay.
    from google.ads.googleads.client import GoogleAdsClient

    credentials = Credentials(
        None,
        refresh_token=refresh_token,
        client_id=client_id,
        client_secret=client_secret,
        token_uri=token_uri,
        scopes=_SCOPES,
    )
    ads_client = GoogleAdsClient(
        credentials,
        developer_token=developer_token or None,
        endpoint=endpoint,
        login_customer_id=login or None,
        version=API_VERSION,
    )
    service = ads_client.get_service("GoogleAdsService")
    return _Client(config=config, pid=os.getpid(), credentials=credentials, service=service)


class _TimedAuthRequest(AuthRequest):
    """One token refresh, google-auth's own tries included, gets the API's deadline
    (ADS_SYNC_TIMEOUT_S): the library's default is 120 s a request, and it makes up to three
    requests when the endpoint answers a retryable refusal, so one refresh could last three
    deadlines and the waits between them. The status of its last answer is kept: google-auth
    drops it from the RefreshError of an answer that is not JSON (a proxy's 502 page), which it
    never marks retryable."""

    status: int | None = None
    error = ""  # OAuth's error code in that answer, if any

    def __init__(self) -> None:
        super().__init__()
        self._deadline = time.monotonic() + float(settings.ADS_SYNC_TIMEOUT_S)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        left = self._deadline - time.monotonic()
        if left <= 0:
            answer = f"HTTP {self.status} {self.error}".rstrip() if self.status else "no answer"
            raise _RefreshOutOfTime(
                f"{answer}, and ADS_SYNC_TIMEOUT_S ({settings.ADS_SYNC_TIMEOUT_S:g} s) ran out "
                "before the library's next try"
            )
        kwargs["timeout"] = left
        response = super().__call__(*args, **kwargs)
        self.status = response.status
        self.error = _oauth_error(response.data)
        return response


class _RefreshOutOfTime(auth_exceptions.TransportError):
    pass


def _oauth_error(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):  # not JSON, or not an object
        return ""
    return error if isinstance(error, str) else ""


def _server_side(status: int | None) -> bool:
    """An HTTP status that says the endpoint (or a proxy before it) failed, not the request."""
    return status is not None and (status >= 500 or status in (408, 429))


def _ensure_token(client: _Client, refused_token: str | None = None) -> None:
    """Refresh the access token when it is missing, stale, or the one the server just refused."""
    with client.refresh_lock:
        creds = client.credentials
        if creds.valid and (refused_token is None or creds.token != refused_token):
            return
        request = _TimedAuthRequest()
        try:
            creds.refresh(request)
        except auth_exceptions.RefreshError as exc:
            if _server_side(request.status):
                raise _Transient(
                    f"token refresh failed: HTTP {request.status}: {exc}"
                ) from _safe_cause(exc)
            _raise_refresh_error(exc)
        except _RefreshOutOfTime as exc:
            raise _Transient(f"token refresh failed: {exc}") from _safe_cause(exc)
        except auth_exceptions.TransportError as exc:
            raise _Transient(f"token endpoint unreachable: {exc}") from _safe_cause(exc)


# --- Classification ---------------------------------------------------------------------------


class _Transient(Exception):
    def __init__(
        self, reason: str, *, retry_delay: float | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(redacted(reason))
        self.retry_delay = retry_delay
        self.request_id = request_id


class _Unauthenticated(Exception):
    pass


# UNKNOWN is how gRPC reports a stream the server side reset mid-answer ("Stream removed", with
# no request id: google-ads-python#663, #707): a transport failure, as UNAVAILABLE is, which a
# new call may get past. CANCELLED is not taken for one: it is mostly the caller's own (a closed
# or collected channel, google-ads-python#634), and the one server-sent case reported on
# SearchStream (#924) was a server fault that failed that account's calls "consistently" for
# days: retries a second apart within one call would not get past it. An UNKNOWN with a
# GoogleAdsFailure in its trailing metadata is not a reset: the server answered with an error of
# its own (a GoogleAdsException), which is permanent as any other code it has not published. So
# UNKNOWN is not among the transient errors below: each branch of _raise_classified takes it as
# a reset when it comes without a failure.
_TRANSIENT_API_ERRORS = (
    api_exceptions.DeadlineExceeded,
    api_exceptions.ServiceUnavailable,
    api_exceptions.InternalServerError,
    api_exceptions.Aborted,
    api_exceptions.GatewayTimeout,
)
_TRANSIENT_CODES = {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.ABORTED,
}


# Said whether the client's refresh or the gRPC auth plugin's met invalid_grant.
INVALID_GRANT_ADVICE = (
    "the token endpoint refused GOOGLE_ADS_REFRESH_TOKEN (invalid_grant: revoked or expired): "
    "authorize again and set a new GOOGLE_ADS_REFRESH_TOKEN"
)


def _raise_refresh_error(exc: auth_exceptions.RefreshError) -> NoReturn:
    text = str(exc)
    if "invalid_grant" in text:
        raise InstallationCredentialsError(INVALID_GRANT_ADVICE) from _safe_cause(exc)
    if "invalid_client" in text or "unauthorized_client" in text:
        raise InstallationCredentialsError(
            "the token endpoint refused the OAuth client: check GOOGLE_ADS_CLIENT_ID and "
            "GOOGLE_ADS_CLIENT_SECRET"
        ) from _safe_cause(exc)
    if getattr(exc, "retryable", False):
        raise _Transient(f"token refresh failed: {text}") from _safe_cause(exc)
    raise InstallationCredentialsError(f"token refresh failed: {text}") from _safe_cause(exc)


def _trailing_metadata(exc: BaseException) -> tuple[tuple[str, Any], ...]:
    # api_core's errors keep the call as their response or among their errors; a bare RpcError
    # is the call.
    for candidate in (getattr(exc, "response", None), *(getattr(exc, "errors", None) or ()), exc):
        trailing = getattr(candidate, "trailing_metadata", None)
        if callable(trailing):
            try:
                return tuple(trailing() or ())
            except Exception:  # noqa: S112 - a call without metadata: try the next candidate
                continue
    return ()


def _failure_of(exc: BaseException) -> tuple[Any, str | None]:
    from google.ads.googleads.v26.errors.types.errors import GoogleAdsFailure

    failure = None
    request_id = None
    for key, value in _trailing_metadata(exc):
        if key == _FAILURE_KEY:
            try:
                failure = GoogleAdsFailure.deserialize(value)
            except Exception:
                logger.warning("undecodable %s in trailing metadata", _FAILURE_KEY)
        elif key == "request-id":
            request_id = value.decode() if isinstance(value, bytes) else str(value)
    return failure, request_id or _request_id_of(failure)


def _request_id_of(failure: Any) -> str | None:
    """The request id a GoogleAdsFailure carries, if it has one (besides the trailing metadata's
    "request-id", which may be left out)."""
    return str(failure.request_id) if failure is not None and failure.request_id else None


def naming(request_id: str | None) -> str:
    """How an error's text ends: with the request id Google's support asks for, or saying there
    was none (an answer from a front end, not from the API)."""
    return f"(request id {request_id})" if request_id else "(no request id)"


def _retry_delay_s(failure: Any) -> float | None:
    if failure is None:
        return None
    delays = []
    for error in failure.errors:
        details = error.details.quota_error_details
        if "retry_delay" in details:
            delay = details.retry_delay
            delays.append(delay.total_seconds() if isinstance(delay, dt.timedelta) else 0.0)
    return max(delays) if delays else None


def _messages(failure: Any) -> str:
    if failure is None:
        return ""
    return "; ".join(str(error.message) for error in failure.errors)


# Refusals the API answers for every account alike, named by the GoogleAdsFailure's error code:
# the installation's, not the account's (services.day_sync backs off no day for them), and a
# refreshed access token does not get past them (UNAUTHENTICATED ones included). Since developer
# tokens were sunset, the access level belongs to the Cloud project that owns the OAuth client;
# the developer-token codes stay for an API that still answers them. The account's own refusals
# (USER_PERMISSION_DENIED, CUSTOMER_NOT_ENABLED, CUSTOMER_NOT_FOUND ...) are not among them.
_INSTALLATION_REFUSALS = {
    "authorization_error": (
        "DEVELOPER_TOKEN_NOT_ON_ALLOWLIST",
        "DEVELOPER_TOKEN_PROHIBITED",
        "DEVELOPER_TOKEN_NOT_APPROVED",
        "PROJECT_DISABLED",
        "MISSING_TOS",
        "CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION",
        "CLOUD_PROJECT_NOT_UNDER_ORGANIZATION",
        "SERVICE_ACCESS_DENIED",
        "METRIC_ACCESS_DENIED",
    ),
    "authentication_error": (
        "NOT_ADS_USER",
        "GOOGLE_ACCOUNT_DELETED",
        "GOOGLE_ACCOUNT_AUTHENTICATION_FAILED",
        "GOOGLE_ACCOUNT_USER_AND_ADS_USER_MISMATCH",
        "TWO_STEP_VERIFICATION_NOT_ENROLLED",
        "ADVANCED_PROTECTION_NOT_ENROLLED",
        "ORGANIZATION_NOT_RECOGNIZED",
        "ORGANIZATION_NOT_APPROVED",
        "ORGANIZATION_NOT_ASSOCIATED_WITH_DEVELOPER_TOKEN",
        "DEVELOPER_TOKEN_INVALID",
    ),
}


def _refuses_the_installation(failure: Any) -> bool:
    if failure is None:
        return False
    for error in failure.errors:
        for kind, names in _INSTALLATION_REFUSALS.items():
            value = getattr(error.error_code, kind)
            if value and getattr(value, "name", None) in names:
                return True
    return False


def _raise_classified(exc: Exception, what: str) -> NoReturn:
    """Turn a library failure into _Transient, _Unauthenticated or one of the public errors."""
    from google.ads.googleads.errors import GoogleAdsException

    if isinstance(exc, GoogleAdsException):
        code = exc.error.code()
        message = _messages(exc.failure) or str(exc.error.details())
        # The library reads it from the trailing metadata alone.
        request_id = exc.request_id or _request_id_of(exc.failure)
        if _refuses_the_installation(exc.failure):
            raise InstallationCredentialsError(
                f"{what}: {code.name}: {message} {naming(request_id)}", request_id=request_id
            ) from _safe_cause(exc)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise _Unauthenticated(message) from _safe_cause(exc)
        if code in _TRANSIENT_CODES:  # an UNKNOWN here has a failure: no reset
            raise _Transient(f"{code.name}: {message}", request_id=request_id) from _safe_cause(exc)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            _raise_quota(exc, what, exc.failure, request_id)
        raise PermanentAdsError(
            f"{what}: {code.name}: {message} {naming(request_id)}", request_id=request_id
        ) from _safe_cause(exc)
    if isinstance(exc, auth_exceptions.RefreshError):
        _raise_refresh_error(exc)
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        failure, request_id = _failure_of(exc)
        text = f"{type(exc).__name__}: {_messages(failure) or exc.message}"
        if _refuses_the_installation(failure):
            raise InstallationCredentialsError(
                f"{what}: {text} {naming(request_id)}", request_id=request_id
            ) from _safe_cause(exc)
        if isinstance(exc, api_exceptions.ResourceExhausted):
            _raise_quota(exc, what, failure, request_id)
        if isinstance(exc, api_exceptions.Unauthenticated):
            raise _Unauthenticated(text) from _safe_cause(exc)
        if isinstance(exc, api_exceptions.ServiceUnavailable) and "invalid_grant" in str(exc):
            # The gRPC auth plugin refreshed the token itself and the token endpoint refused.
            raise InstallationCredentialsError(INVALID_GRANT_ADVICE) from _safe_cause(exc)
        reset = isinstance(exc, api_exceptions.Unknown) and failure is None
        if isinstance(exc, _TRANSIENT_API_ERRORS) or reset:
            raise _Transient(text, request_id=request_id) from _safe_cause(exc)
        raise PermanentAdsError(
            f"{what}: {text} {naming(request_id)}", request_id=request_id
        ) from _safe_cause(exc)
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        code = exc.code()
        reset = code == grpc.StatusCode.UNKNOWN and _failure_of(exc)[0] is None
        if code in _TRANSIENT_CODES or reset:
            raise _Transient(f"{code.name}: {exc}") from _safe_cause(exc)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise _Unauthenticated(str(exc)) from _safe_cause(exc)
        raise PermanentAdsError(f"{what}: {code.name}: {exc}") from _safe_cause(exc)
    raise exc


def _raise_quota(exc: Exception, what: str, failure: Any, request_id: str | None) -> NoReturn:
    delay = _retry_delay_s(failure)
    if delay is not None and delay >= DAILY_QUOTA_MIN_RETRY_DELAY_S:
        raise DailyQuotaExhausted(
            f"{what}: quota exhausted, retry in {delay:.0f} s: "
            f"{_messages(failure)} {naming(request_id)}",
            retry_after_s=delay,
            request_id=request_id,
        ) from _safe_cause(exc)
    raise _Transient(
        f"RESOURCE_EXHAUSTED: {_messages(failure) or exc}",
        retry_delay=delay,
        request_id=request_id,
    ) from _safe_cause(exc)


# --- One search, with its retries -------------------------------------------------------------


def _stream(
    client: _Client, customer_id: str, query: str, counter: CallCounter | None
) -> list[Any]:
    rate_limit.acquire(_RATE_LIMIT_BUCKET, float(settings.ADS_SYNC_MAX_QPS))
    if counter is not None:
        counter()
    stream = client.service.search_stream(
        customer_id=customer_id, query=query, timeout=float(settings.ADS_SYNC_TIMEOUT_S)
    )
    rows: list[Any] = []
    for batch in stream:
        rows.extend(batch.results)
    return rows


def _attempt(customer_id: str, query: str, what: str, counter: CallCounter | None) -> list[Any]:
    client = _get_client()
    _ensure_token(client)
    try:
        return _stream(client, customer_id, query, counter)
    except Exception as exc:
        # The token the call sent, read after it: one gone stale since _ensure_token (a wait
        # for the rate limit) is refreshed by gRPC's auth plugin as the call starts.
        sent_token = client.credentials.token
        try:
            _raise_classified(exc, what)
        except _Unauthenticated:
            logger.info("%s: access token refused; refreshing it for one more try", what)
    _ensure_token(client, refused_token=sent_token)
    try:
        return _stream(client, customer_id, query, counter)
    except Exception as exc:
        try:
            _raise_classified(exc, what)
        except _Unauthenticated as again:
            raise CredentialsError(
                f"{what}: a freshly refreshed access token was refused ({again}): check that "
                "GOOGLE_ADS_REFRESH_TOKEN belongs to a user with access to this account"
            ) from _safe_cause(exc)


def _wait(state: RetryCallState) -> float:
    base = float(settings.ADS_SYNC_RETRY_BASE_S)
    cap = float(settings.ADS_SYNC_RETRY_MAX_S)
    backoff = min(cap, base * 2 ** (state.attempt_number - 1))
    delay = backoff / 2 + random.uniform(0, backoff / 2)  # noqa: S311 - jitter, not crypto
    exc = state.outcome.exception() if state.outcome is not None else None
    server_delay = getattr(exc, "retry_delay", None)
    if server_delay:
        # The server's retry_delay is a floor; jitter on top keeps workers from re-colliding.
        delay = float(server_delay) + random.uniform(0, min(base, float(server_delay)))  # noqa: S311
    return delay


def _retry_logger(what: str) -> Callable[[RetryCallState], None]:
    """tenacity's before_sleep for one call: its line names the account and day (`what`)."""

    def log(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        sleep = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "Google Ads %s: attempt %d failed (%s); retrying in %.2f s",
            what,
            state.attempt_number,
            exc,
            sleep,
        )

    return log


# The deadlines one attempt may hold (`_attempt`): a token refresh (`_TimedAuthRequest`) and
# the call, and after a refused token another refresh and call.
_ATTEMPT_DEADLINES = 4


def _retry_window_s() -> float:
    """How long after a call's first attempt a retry may still start: every attempt at its
    full deadline, and a minute of waits between them. A wait that would end past it (a server
    asking for a long retry_delay) is not taken: the call gives up, the day fails, and the next
    detection tries it again, rather than a worker sleeping into its task's time limit."""
    return float(settings.ADS_SYNC_TIMEOUT_S) * max(1, int(settings.ADS_SYNC_MAX_ATTEMPTS)) + 60


def fetch_budget_s() -> float:
    """The longest one call may take with its retries: a retry started at the end of its window
    (tenacity's stop_before_delay bounds when the last attempt starts, not when it ends), and
    that attempt at its longest, every deadline it may hold spent (the waits for a rate-limit
    slot aside)."""
    return _retry_window_s() + _ATTEMPT_DEADLINES * float(settings.ADS_SYNC_TIMEOUT_S)


def _search(
    customer_id: str, query: str, what: str, counter: CallCounter | None = None
) -> list[Any]:
    max_attempts = max(1, int(settings.ADS_SYNC_MAX_ATTEMPTS))
    retrying = Retrying(
        stop=stop_after_attempt(max_attempts) | stop_before_delay(_retry_window_s()),
        wait=_wait,
        retry=retry_if_exception_type(_Transient),
        before_sleep=_retry_logger(what),
        reraise=True,
    )
    try:
        return retrying(_attempt, customer_id, query, what, counter)
    except _Transient as exc:
        attempts = retrying.statistics.get("attempt_number", max_attempts)
        raise TransientAdsError(
            f"{what}: gave up after {attempts} attempts: {exc} {naming(exc.request_id)}",
            request_id=exc.request_id,
            attempts=attempts,
        ) from _safe_cause(exc)
    except AdsError as exc:
        exc.attempts = retrying.statistics.get("attempt_number", 1)
        raise
