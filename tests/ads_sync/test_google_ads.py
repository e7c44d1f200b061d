"""The real google-ads client against the sandbox: rows, retries, quotas, OAuth, rate limit."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import importlib.metadata
import json
import logging
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from google.ads.googleads.errors import GoogleAdsException
from google.ads.googleads.v26.errors.types import errors as ads_errors
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from packaging.requirements import Requirement
from packaging.version import Version
from tenacity import RetryCallState, Retrying

from ads_sync.integrations import google_ads
from ads_sync.integrations.google_ads import (
    AccountInfo,
    CampaignDay,
    CredentialsError,
    DailyQuotaExhausted,
    InstallationCredentialsError,
    PermanentAdsError,
    TransientAdsError,
)
from ads_sync.sandbox import data
from tests.processes import closed_port

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER = data.DEFAULT_CUSTOMERS[0]
DAY = data.first_full_day(CUSTOMER, dt.date(2025, 3, 1))


def _outcomes(ads_sandbox) -> list[str]:
    return [call["outcome"] for call in ads_sandbox.calls()]


def test_fetch_data_returns_the_sandbox_rows_for_that_day(ads_sandbox):
    rows = google_ads.fetch_data(CUSTOMER, DAY)

    assert rows == [
        CampaignDay(
            customer_id=CUSTOMER,
            date=DAY,
            campaign_id=row.campaign_id,
            campaign_name=row.campaign_name,
            impressions=row.impressions,
            clicks=row.clicks,
            cost_micros=row.cost_micros,
            conversions=row.conversions,
        )
        for row in data.rows_for(CUSTOMER, DAY)
    ]
    assert [(c["customer_id"], c["date"], c["outcome"]) for c in ads_sandbox.calls()] == [
        (CUSTOMER, DAY.isoformat(), "ok")
    ]


def test_customer_id_with_dashes_is_sent_without_them(ads_sandbox):
    dashed = f"{CUSTOMER[:3]}-{CUSTOMER[3:6]}-{CUSTOMER[6:]}"

    rows = google_ads.fetch_data(dashed, DAY)

    assert {row.customer_id for row in rows} == {CUSTOMER}
    assert ads_sandbox.calls()[0]["customer_id"] == CUSTOMER


def test_a_day_without_rows_is_an_empty_list(ads_sandbox):
    empty_day = data.first_empty_day(CUSTOMER, dt.date(2025, 3, 1))

    assert google_ads.fetch_data(CUSTOMER, empty_day) == []
    assert _outcomes(ads_sandbox) == ["ok"]


def test_get_account_reads_time_zone_and_currency(ads_sandbox):
    expected = data.account(CUSTOMER)

    info = google_ads.get_account(CUSTOMER)

    assert info == AccountInfo(CUSTOMER, expected.time_zone, expected.currency_code)
    assert [(c["query"], c["outcome"]) for c in ads_sandbox.calls()] == [("customer", "ok")]


def test_an_account_query_answered_without_a_row_is_permanent(ads_sandbox):
    ads_sandbox.configure(fail_first={"empty": 5})

    with pytest.raises(
        PermanentAdsError, match=f"customer {CUSTOMER}: the account query returned no row"
    ):
        google_ads.get_account(CUSTOMER)

    assert [(c["query"], c["outcome"]) for c in ads_sandbox.calls()] == [("customer", "empty")]


def test_an_account_query_that_fails_names_the_account(ads_sandbox):
    ads_sandbox.configure(denied_customers=[CUSTOMER])

    with pytest.raises(PermanentAdsError, match=f"^{CUSTOMER} account: PERMISSION_DENIED: "):
        google_ads.get_account(CUSTOMER)


def test_login_customer_id_is_sent_for_a_manager_account(ads_sandbox, settings):
    settings.GOOGLE_ADS_LOGIN_CUSTOMER_ID = "9876543210"

    google_ads.fetch_data(CUSTOMER, DAY)

    assert ads_sandbox.calls()[0]["login_customer_id"] == "9876543210"


def test_the_developer_token_is_sent_with_each_call(ads_sandbox):
    google_ads.fetch_data(CUSTOMER, DAY)

    assert ads_sandbox.calls()[0]["developer_token"] == "sandbox-developer-token"


def test_internal_errors_are_retried_until_the_call_succeeds(ads_sandbox, caplog):
    ads_sandbox.configure(fail_first={"internal": 2})

    rows = google_ads.fetch_data(CUSTOMER, DAY)

    assert len(rows) == len(data.rows_for(CUSTOMER, DAY))
    assert _outcomes(ads_sandbox) == ["internal", "internal", "ok"]
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert [line.split(":")[0] for line in retries] == [f"Google Ads {CUSTOMER} {DAY}"] * 2


def test_each_retry_is_logged_with_its_attempt_and_what_failed(ads_sandbox, caplog):
    ads_sandbox.configure(fail_first={"internal": 2})

    google_ads.fetch_data(CUSTOMER, DAY)

    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert [re.sub(r"in [0-9]+\.[0-9]{2} s$", "in N s", line) for line in retries] == [
        f"Google Ads {CUSTOMER} {DAY}: attempt {attempt} failed "
        "(InternalServerError: Internal error encountered.); retrying in N s"
        for attempt in (1, 2)
    ]


def test_aborted_without_a_google_ads_failure_is_retried_too(ads_sandbox):
    """As a front end answers: it reaches the client as api_core's Aborted."""
    ads_sandbox.configure(fail_first={"aborted": 1}, send_failure=False)

    rows = google_ads.fetch_data(CUSTOMER, DAY)

    assert len(rows) == len(data.rows_for(CUSTOMER, DAY))
    assert _outcomes(ads_sandbox) == ["aborted", "ok"]


def test_unavailable_is_retried_up_to_max_attempts_then_transient(ads_sandbox, settings):
    settings.ADS_SYNC_MAX_ATTEMPTS = 3
    ads_sandbox.configure(fail_first={"unavailable": 10})

    with pytest.raises(TransientAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert raised.value.attempts == 3
    assert _outcomes(ads_sandbox) == ["unavailable"] * 3


@pytest.mark.parametrize(
    ("outcome", "said"),
    [
        # No GoogleAdsFailure: its request id is in the trailing metadata.
        ("unavailable", "ServiceUnavailable: The service is currently unavailable."),
        # A GoogleAdsFailure: its status and the API's message.
        ("transient_error", "UNAVAILABLE: The service encountered a transient error."),
    ],
)
def test_retries_spent_say_the_call_what_failed_and_the_last_request_id(
    ads_sandbox, settings, outcome, said
):
    settings.ADS_SYNC_MAX_ATTEMPTS = 2
    ads_sandbox.configure(fail_first={outcome: 10})

    with pytest.raises(TransientAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    last = ads_sandbox.calls()[-1]["request_id"]
    assert raised.value.request_id == last
    assert str(raised.value) == (
        f"{CUSTOMER} {DAY}: gave up after 2 attempts: {said} (request id {last})"
    )


def test_retries_spent_on_an_error_without_any_request_id_say_there_was_none(ads_sandbox, settings):
    """As a front end's own error has none: the text says so, it does not name "None"."""
    settings.ADS_SYNC_MAX_ATTEMPTS = 2
    ads_sandbox.configure(fail_first={"unavailable": 10}, request_id_metadata=False)

    with pytest.raises(TransientAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert raised.value.request_id is None
    assert str(raised.value).endswith("(no request id)")


@pytest.mark.parametrize("kind", ["transient_error", "deadline_exceeded", "aborted"])
def test_a_google_ads_failure_sent_with_a_transient_status_is_retried(ads_sandbox, kind):
    """UNAVAILABLE, DEADLINE_EXCEEDED and ABORTED that the API sends with a GoogleAdsFailure
    reach the client as a GoogleAdsException, not as api_core's errors the other transient
    faults are."""
    ads_sandbox.configure(fail_first={kind: 2})

    rows = google_ads.fetch_data(CUSTOMER, DAY)

    assert len(rows) == len(data.rows_for(CUSTOMER, DAY))
    assert _outcomes(ads_sandbox) == [kind, kind, "ok"]


@pytest.mark.parametrize("kind", ["transient_error", "deadline_exceeded"])
def test_retries_spent_on_a_google_ads_failure_name_the_last_request_id(
    ads_sandbox, settings, kind
):
    settings.ADS_SYNC_MAX_ATTEMPTS = 2
    ads_sandbox.configure(fail_first={kind: 10})

    with pytest.raises(TransientAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert isinstance(raised.value.__cause__.__cause__, GoogleAdsException)
    last = ads_sandbox.calls()[-1]["request_id"]
    assert raised.value.request_id == last
    assert f"(request id {last})" in str(raised.value)
    assert raised.value.attempts == 2


def test_a_stream_removed_mid_answer_is_retried_like_unavailable(ads_sandbox):
    """SearchStream's known reset reaches the client as UNKNOWN "Stream removed" after a first
    batch (google-ads-python#707): it failed the day at once as a PermanentAdsError."""
    ads_sandbox.configure(fail_first={"stream_removed": 1})

    rows = google_ads.fetch_data(CUSTOMER, DAY)

    assert [row.campaign_id for row in rows] == [
        r.campaign_id for r in data.rows_for(CUSTOMER, DAY)
    ]
    assert _outcomes(ads_sandbox) == ["stream_removed", "ok"]


def test_an_unknown_the_server_sends_with_a_google_ads_failure_is_permanent(ads_sandbox, settings):
    """d3e32b2 made every UNKNOWN transient: the server's own error, a GoogleAdsException, was
    retried ADS_SYNC_MAX_ATTEMPTS times and reported as transient."""
    settings.ADS_SYNC_MAX_ATTEMPTS = 3
    ads_sandbox.configure(fail_first={"unknown": 10})

    with pytest.raises(PermanentAdsError, match="UNKNOWN: An error whose code is not published"):
        google_ads.fetch_data(CUSTOMER, DAY)

    assert _outcomes(ads_sandbox) == ["unknown"]


class _EndedCall(grpc.RpcError):
    """A call ended with `code` (UNKNOWN unless told), as gRPC raises it bare or api_core keeps
    it as an error's response: the branches that the sandbox's failures, which the library turns
    into GoogleAdsException or api_core's errors without a GoogleAdsFailure, do not all reach."""

    def __init__(self, failure: bool, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        self._code = code
        self.trailing: list[tuple[str, str | bytes]] = [("request-id", "sandbox-request")]
        if failure:
            error = ads_errors.GoogleAdsError(message="An error whose code is not published.")
            serialized = ads_errors.GoogleAdsFailure.serialize(
                ads_errors.GoogleAdsFailure(errors=[error])
            )
            self.trailing.append((google_ads._FAILURE_KEY, serialized))

    def code(self) -> grpc.StatusCode:
        return self._code

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return tuple(self.trailing)


@pytest.mark.parametrize("as_api_core", [False, True], ids=["bare", "api_core"])
@pytest.mark.parametrize(
    ("failure", "classified"),
    [(True, PermanentAdsError), (False, google_ads._Transient)],
    ids=["with_failure", "reset"],
)
def test_an_unknown_is_retried_only_without_a_google_ads_failure(as_api_core, failure, classified):
    call = _EndedCall(failure)
    exc: Exception = api_exceptions.Unknown("Unknown", response=call) if as_api_core else call

    with pytest.raises(classified):
        google_ads._raise_classified(exc, "Google Ads test")


class _CallWithoutMetadata(grpc.RpcError):
    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        raise ValueError("no metadata on this call")


@pytest.mark.parametrize(
    ("failure", "said"),
    [(True, "Google Ads test: UNKNOWN: {call}"), (False, "UNKNOWN: {call}")],
    ids=["with_failure", "reset"],
)
def test_a_bare_grpc_errors_text_is_its_status_and_its_own_text(failure, said) -> None:
    """The permanent one names the call too; a reset's text is put in the retries' own."""
    call = _EndedCall(failure)

    with pytest.raises(Exception) as raised:  # noqa: PT011 - the classes are the test above's
        google_ads._raise_classified(call, "Google Ads test")

    assert str(raised.value) == said.format(call=call)


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.ABORTED,
    ],
)
def test_a_bare_grpc_error_with_a_transient_status_is_retried(code) -> None:
    """The library hands an INTERNAL on as api_core's error; gRPC's own, bare, is retried too."""
    with pytest.raises(google_ads._Transient):
        google_ads._raise_classified(_EndedCall(failure=False, code=code), "Google Ads test")


def test_the_request_id_is_looked_for_in_each_call_an_error_keeps() -> None:
    """A call that cannot give its metadata is passed over for the next one the error keeps."""
    exc = api_exceptions.Unknown(
        "Unknown", response=_CallWithoutMetadata(), errors=[_EndedCall(failure=False)]
    )

    assert google_ads._failure_of(exc) == (None, "sandbox-request")


def test_a_google_ads_failure_that_cannot_be_read_is_logged_and_taken_for_none(caplog) -> None:
    call = _EndedCall(failure=False)
    call.trailing.append((google_ads._FAILURE_KEY, b"\x0a\x05ab"))  # 5 bytes said, 2 sent

    assert google_ads._failure_of(call) == (None, "sandbox-request")
    assert f"undecodable {google_ads._FAILURE_KEY} in trailing metadata" in [
        r.getMessage() for r in caplog.records
    ]


def test_the_messages_of_a_failures_several_errors_are_told_apart() -> None:
    failure = ads_errors.GoogleAdsFailure(
        errors=[
            ads_errors.GoogleAdsError(message="Error in query."),
            ads_errors.GoogleAdsError(message="Unrecognized field."),
        ]
    )

    assert google_ads._messages(failure) == "Error in query.; Unrecognized field."


def test_an_error_that_keeps_no_call_has_no_failure_and_no_request_id() -> None:
    assert google_ads._failure_of(api_exceptions.Unknown("Unknown")) == (None, None)


def test_the_request_id_of_the_trailing_metadata_is_kept_when_the_failure_has_none() -> None:
    failure, request_id = google_ads._failure_of(_EndedCall(failure=True))

    assert failure is not None
    assert not failure.request_id
    assert request_id == "sandbox-request"


def test_an_oauth_client_the_token_endpoint_does_not_authorize_names_the_client_settings() -> None:
    refused = auth_exceptions.RefreshError("unauthorized_client: Unauthorized", {})

    with pytest.raises(InstallationCredentialsError, match="check GOOGLE_ADS_CLIENT_ID"):
        google_ads._raise_refresh_error(refused)


def test_short_quota_error_waits_at_least_the_servers_retry_delay(ads_sandbox):
    ads_sandbox.configure(fail_first={"quota": 1}, quota_retry_delay_s=0.6)

    rows = google_ads.fetch_data(CUSTOMER, DAY)

    calls = ads_sandbox.calls()
    assert rows
    assert [c["outcome"] for c in calls] == ["quota", "ok"]
    assert calls[1]["t"] - calls[0]["t"] >= 0.6


def test_a_quota_error_without_a_google_ads_failure_is_retried(ads_sandbox):
    """RESOURCE_EXHAUSTED with no GoogleAdsFailure (a front end's) has no retry_delay: it is
    a short-term limit, retried with the backoff, not a daily quota."""
    ads_sandbox.configure(fail_first={"quota": 2}, send_failure=False)

    rows = google_ads.fetch_data(CUSTOMER, DAY)

    assert len(rows) == len(data.rows_for(CUSTOMER, DAY))
    assert _outcomes(ads_sandbox) == ["quota", "quota", "ok"]


def test_retries_spent_on_a_short_term_quota_name_the_last_request_id(ads_sandbox, settings):
    settings.ADS_SYNC_MAX_ATTEMPTS = 2
    ads_sandbox.configure(fail_first={"quota": 10}, quota_retry_delay_s=0.01)

    with pytest.raises(TransientAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    last = ads_sandbox.calls()[-1]["request_id"]
    assert raised.value.request_id == last
    assert f"(request id {last})" in str(raised.value)


@pytest.mark.parametrize(
    ("send_failure", "said"),
    [
        (True, "RESOURCE_EXHAUSTED: Too many requests. Retry in a little while."),
        # A front end's: the status's own text, as api_core words it
        (False, "RESOURCE_EXHAUSTED: 429 Too many requests. Retry in a little while."),
    ],
    ids=["failure", "no_failure"],
)
def test_retries_spent_on_a_short_term_quota_say_what_the_server_said(
    ads_sandbox, settings, send_failure, said
):
    settings.ADS_SYNC_MAX_ATTEMPTS = 1
    ads_sandbox.configure(
        fail_first={"quota": 10}, quota_retry_delay_s=0.01, send_failure=send_failure
    )

    with pytest.raises(TransientAdsError, match="gave up after 1 attempts") as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert said in str(raised.value)


def test_daily_quota_stops_at_once_with_the_retry_delay(ads_sandbox):
    ads_sandbox.configure(fail_first={"daily_quota": 5}, daily_quota_retry_delay_s=7200)

    with pytest.raises(DailyQuotaExhausted) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    (call,) = ads_sandbox.calls()
    assert call["outcome"] == "daily_quota"
    assert raised.value.retry_after_s == pytest.approx(7200)
    assert raised.value.request_id == call["request_id"]
    assert str(raised.value) == (
        f"{CUSTOMER} {DAY}: quota exhausted, retry in 7200 s: "
        f"Too many requests: the daily quota is exhausted. (request id {call['request_id']})"
    )


def test_a_quota_retry_delay_of_ten_minutes_is_already_the_daily_quota(ads_sandbox):
    ads_sandbox.configure(fail_first={"daily_quota": 1}, daily_quota_retry_delay_s=600)

    with pytest.raises(DailyQuotaExhausted) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert raised.value.retry_after_s == pytest.approx(600)
    assert _outcomes(ads_sandbox) == ["daily_quota"]


def test_a_request_id_sent_in_the_google_ads_failure_alone_is_named(ads_sandbox):
    """RESOURCE_EXHAUSTED and INTERNAL reach the client as api_core's errors, their
    GoogleAdsFailure in the trailing metadata: without a request-id entry beside it, the
    failure's own request id is the one named."""
    ads_sandbox.configure(fail_first={"daily_quota": 1}, request_id_metadata=False)

    with pytest.raises(DailyQuotaExhausted) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    (call,) = ads_sandbox.calls()
    assert raised.value.request_id == call["request_id"]
    assert f"(request id {call['request_id']})" in str(raised.value)


@pytest.mark.parametrize("request_id_metadata", [True, False])
def test_permission_denied_fails_at_once_with_the_request_id(ads_sandbox, request_id_metadata):
    """Without the trailing metadata's request-id, the library's GoogleAdsException has none
    (it reads only that): the failure's own is named."""
    ads_sandbox.configure(denied_customers=[CUSTOMER], request_id_metadata=request_id_metadata)

    with pytest.raises(PermanentAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    (call,) = ads_sandbox.calls()
    assert call["outcome"] == "permission_denied"
    assert raised.value.request_id == call["request_id"]
    assert call["request_id"] in str(raised.value)
    assert not isinstance(raised.value, CredentialsError)


def test_a_permanent_failure_says_the_call_its_status_and_the_apis_message(ads_sandbox):
    ads_sandbox.configure(denied_customers=[CUSTOMER])

    with pytest.raises(PermanentAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    (call,) = ads_sandbox.calls()
    assert str(raised.value) == (
        f"{CUSTOMER} {DAY}: PERMISSION_DENIED: User doesn't have permission to access customer."
        f" (request id {call['request_id']})"
    )


def test_permission_denied_without_a_google_ads_failure_is_permanent_too(ads_sandbox):
    """As a front end answers: no GoogleAdsFailure, which only makes an UNKNOWN a reset."""
    ads_sandbox.configure(denied_customers=[CUSTOMER], send_failure=False)

    with pytest.raises(PermanentAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    (call,) = ads_sandbox.calls()
    assert call["outcome"] == "permission_denied"
    assert str(raised.value) == (
        f"{CUSTOMER} {DAY}: PermissionDenied: User doesn't have permission to access customer."
        f" (request id {call['request_id']})"
    )


@pytest.mark.parametrize(
    ("kind", "status", "said"),
    [
        # The Cloud project that owns the OAuth client holds the API access level (developer
        # tokens are sunset): Test access refuses every production account alike.
        ("project_not_approved", "PERMISSION_DENIED", "only approved for use with test accounts"),
        # The refresh token's Google account: a new access token is refused alike.
        ("not_ads_user", "UNAUTHENTICATED", "not associated with any Ads accounts"),
    ],
)
def test_a_refusal_of_the_installation_not_the_account_is_an_installation_error(
    ads_sandbox, kind, status, said
):
    google_ads.fetch_data(CUSTOMER, DAY)  # the process's client holds a valid token
    ads_sandbox.reset()
    ads_sandbox.configure(fail_first={kind: 10})

    with pytest.raises(InstallationCredentialsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    # At once: neither a token refresh nor a second call gets past it.
    (call,) = ads_sandbox.calls(method=None)
    assert call["outcome"] == kind
    text = str(raised.value)
    assert f"{CUSTOMER} {DAY}: {status}: " in text
    assert said in text
    assert raised.value.request_id == call["request_id"]


def test_invalid_query_is_permanent(ads_sandbox):
    ads_sandbox.configure(fail_first={"invalid_argument": 1})

    with pytest.raises(PermanentAdsError, match="INVALID_ARGUMENT"):
        google_ads.fetch_data(CUSTOMER, DAY)

    assert _outcomes(ads_sandbox) == ["invalid_argument"]


def test_a_permanent_error_after_a_retry_counts_both_attempts(ads_sandbox):
    ads_sandbox.configure(fail_first={"internal": 1, "invalid_argument": 1})

    with pytest.raises(PermanentAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert raised.value.attempts == 2
    assert _outcomes(ads_sandbox) == ["internal", "invalid_argument"]


def test_malformed_customer_id_is_permanent(ads_sandbox):
    with pytest.raises(PermanentAdsError, match="Invalid customer ID"):
        google_ads.fetch_data("12345", DAY)

    assert _outcomes(ads_sandbox) == ["invalid_customer_id"]


def test_hung_server_is_cut_by_the_deadline_and_retried(ads_sandbox, settings):
    settings.ADS_SYNC_TIMEOUT_S = 0.3
    settings.ADS_SYNC_MAX_ATTEMPTS = 2
    ads_sandbox.configure(fail_first={"hang": 5}, hang_s=20)

    with pytest.raises(TransientAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert isinstance(raised.value.__cause__.__cause__, api_exceptions.DeadlineExceeded)
    assert _outcomes(ads_sandbox) == ["hang", "hang"]


def test_a_hang_lasts_past_the_clients_deadline_by_default(ads_sandbox, settings):
    """It lasted 30 s: under make run's 60 s deadline the call ended UNAVAILABLE, and the
    deadline it was there to show was never reached."""
    settings.ADS_SYNC_TIMEOUT_S = 0.3
    settings.ADS_SYNC_MAX_ATTEMPTS = 1
    ads_sandbox.configure(fail_first={"hang": 1})

    with pytest.raises(TransientAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert isinstance(raised.value.__cause__.__cause__, api_exceptions.DeadlineExceeded)
    assert _outcomes(ads_sandbox) == ["hang"]


def test_token_expiring_mid_run_is_refreshed_and_the_call_tried_once_more(ads_sandbox):
    next_day = data.first_full_day(CUSTOMER, DAY + dt.timedelta(days=1))
    google_ads.fetch_data(CUSTOMER, DAY)
    ads_sandbox.expire_tokens()

    rows = google_ads.fetch_data(CUSTOMER, next_day)

    assert len(rows) == len(data.rows_for(CUSTOMER, next_day))
    calls = ads_sandbox.calls(method=None)
    second_day = [c for c in calls if c.get("date") == next_day.isoformat()]
    assert [c["outcome"] for c in second_day] == ["unauthenticated:expired", "ok"]
    assert [c["outcome"] for c in calls if c["method"] == "token"][-1:] == ["ok"]


def test_a_refused_access_token_is_logged_naming_the_call(ads_sandbox, caplog):
    ads_sandbox.configure(fail_first={"unauthenticated": 1})

    with caplog.at_level(logging.INFO, logger=google_ads.__name__):
        google_ads.fetch_data(CUSTOMER, DAY)

    assert f"{CUSTOMER} {DAY}: access token refused; refreshing it for one more try" in [
        r.getMessage() for r in caplog.records
    ]


def test_an_access_token_refused_without_a_google_ads_failure_is_refreshed_too(ads_sandbox):
    """UNAUTHENTICATED with no GoogleAdsFailure (a front end's) reaches the client as api_core's
    Unauthenticated, not as a GoogleAdsException."""
    ads_sandbox.configure(fail_first={"unauthenticated": 1}, send_failure=False)

    rows = google_ads.fetch_data(CUSTOMER, DAY)

    assert len(rows) == len(data.rows_for(CUSTOMER, DAY))
    calls = [(c["method"], c["outcome"]) for c in ads_sandbox.calls(method=None)]
    assert calls[-3:] == [
        ("SearchStream", "unauthenticated"),
        ("token", "ok"),
        ("SearchStream", "ok"),
    ]


def test_access_token_refused_even_after_a_refresh_is_a_credentials_error(ads_sandbox):
    ads_sandbox.configure(fail_first={"unauthenticated": 5})

    with pytest.raises(CredentialsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert _outcomes(ads_sandbox) == ["unauthenticated", "unauthenticated"]
    assert str(raised.value).startswith(
        f"{CUSTOMER} {DAY}: a freshly refreshed access token was refused "
        "(Request had invalid authentication credentials.): check that GOOGLE_ADS_REFRESH_TOKEN"
    )


def test_a_refused_token_another_thread_already_replaced_is_not_refreshed_again(ads_sandbox):
    """A worker's threads share one client: two calls refused with the same expired token
    refresh it once. The second thread, finding the client's token already another than the
    one refused, sends that one instead of asking the token endpoint again."""
    client = google_ads._get_client()
    google_ads._ensure_token(client)
    refused = client.credentials.token
    ads_sandbox.expire_tokens()
    grants_before = len(ads_sandbox.calls(method="token"))

    google_ads._ensure_token(client, refused_token=refused)  # the first thread's refresh
    refreshed = client.credentials.token
    google_ads._ensure_token(client, refused_token=refused)  # the second thread's

    assert len(ads_sandbox.calls(method="token")) == grants_before + 1
    assert client.credentials.token == refreshed != refused


def test_a_transient_failure_of_the_call_after_a_token_refresh_is_retried(ads_sandbox):
    """Only a refusal of the freshly refreshed token is a credentials problem: the one more try
    after a refresh that meets UNAVAILABLE is retried as any transient failure."""
    ads_sandbox.configure(fail_first={"unauthenticated": 1, "unavailable": 1})

    rows = google_ads.fetch_data(CUSTOMER, DAY)

    assert len(rows) == len(data.rows_for(CUSTOMER, DAY))
    assert _outcomes(ads_sandbox) == ["unauthenticated", "unavailable", "ok"]


def test_revoked_refresh_token_fails_at_once_naming_the_credential(ads_sandbox):
    google_ads.fetch_data(CUSTOMER, DAY)
    # A grant of its own if no earlier test left this process's client a token.
    granted = len(ads_sandbox.calls(method="token"))
    ads_sandbox.configure(revoke_refresh_token=True)
    ads_sandbox.expire_tokens()

    with pytest.raises(CredentialsError, match="GOOGLE_ADS_REFRESH_TOKEN") as raised:
        google_ads.fetch_data(CUSTOMER, DAY + dt.timedelta(days=1))

    assert "invalid_grant" in str(raised.value)
    tokens = [c["outcome"] for c in ads_sandbox.calls(method="token")]
    assert tokens[granted:] == ["invalid_grant"]


def test_an_unreachable_token_endpoint_is_retried_as_transient(ads_sandbox, settings):
    """A token endpoint that cannot be reached is a network fault like UNAVAILABLE, retried and
    then a TransientAdsError: not a bug's traceback failing the day at once."""
    settings.GOOGLE_ADS_TOKEN_URI = f"http://127.0.0.1:{closed_port()}/token"
    settings.ADS_SYNC_MAX_ATTEMPTS = 2

    with pytest.raises(
        TransientAdsError, match=r"token endpoint unreachable: .*Connection refused"
    ) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert raised.value.attempts == 2
    assert ads_sandbox.calls(method=None) == []


def test_missing_refresh_token_is_a_credentials_error_before_any_call(ads_sandbox, settings):
    settings.GOOGLE_ADS_REFRESH_TOKEN = ""

    with pytest.raises(CredentialsError, match="GOOGLE_ADS_REFRESH_TOKEN"):
        google_ads.fetch_data(CUSTOMER, DAY)

    assert ads_sandbox.calls(method=None) == []


def test_a_ca_file_changed_after_grpc_loaded_its_roots_is_logged_as_needing_a_restart(
    ads_sandbox, settings, monkeypatch, caplog, tmp_path
):
    """gRPC reads its roots' file once, before its first secure channel: the new file would not
    be used until the process starts again."""
    google_ads._get_client()
    # Set as gRPC read it; monkeypatch puts the variable back as it was after the test.
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", settings.GOOGLE_ADS_CA_FILE)
    moved = tmp_path / "ca.pem"
    moved.write_bytes(Path(settings.GOOGLE_ADS_CA_FILE).read_bytes())
    settings.GOOGLE_ADS_CA_FILE = str(moved)

    google_ads._get_client()

    assert "GOOGLE_ADS_CA_FILE changed after gRPC loaded its roots; restart" in [
        r.getMessage() for r in caplog.records
    ]


def test_warm_up_takes_the_token_so_the_first_fetch_needs_no_grant(ads_sandbox, settings):
    # Another configuration, so that this process builds a new client rather than reusing one.
    settings.GOOGLE_ADS_DEVELOPER_TOKEN = "warm-up-developer-token"

    assert google_ads.warm_up() is True
    grants_after_warm_up = len(ads_sandbox.calls(method="token"))
    google_ads.fetch_data(CUSTOMER, DAY)

    assert grants_after_warm_up == 1
    assert len(ads_sandbox.calls(method="token")) == 1
    assert _outcomes(ads_sandbox) == ["ok"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "grant_type=refresh_token&client_secret=s3cr3t-x",
            "grant_type=refresh_token&client_secret=[redacted]",
        ),
        ('{"access_token": "ya29.a0-xyz"}', '{"access_token": "[redacted]"}'),
        ("Authorization: Bearer ya29.a0AbC-defgh-ijklmnop", "Authorization: Bearer [redacted]"),
        ("{'refresh_token': '1-abc'}", "{'refresh_token': '[redacted]'}"),
        ('{"id_token": "eyJhbGciOi.x.y"}', '{"id_token": "[redacted]"}'),
        (
            "grant_type=jwt-bearer&assertion=eyJhbGciOi.x.y",
            "grant_type=jwt-bearer&assertion=[redacted]",
        ),
        ("developer_token=dev-abc123", "developer_token=[redacted]"),
        ("{'developer-token': 'dev-abc123'}", "{'developer-token': '[redacted]'}"),
        # Prose is left alone.
        ("401: Bearer authentication is required", "401: Bearer authentication is required"),
        ("failed assertion: expected 3 rows", "failed assertion: expected 3 rows"),
        ("id_token: missing from response", "id_token: missing from response"),
        ('{"t": "1\\/\\/0g-configured"}', '{"t": "[redacted]"}'),  # JSON's escaped slashes
        ("token 1%2F%2F0g-configured", "token [redacted]"),
        ("bearer token expired", "bearer token expired"),
    ],
)
def test_credentials_are_taken_out_of_an_error_text(settings, text, shown) -> None:
    settings.GOOGLE_ADS_REFRESH_TOKEN = "1//0g-configured"
    assert google_ads.redacted(text) == shown


def _only_credentials(settings, secret: str) -> None:
    settings.GOOGLE_ADS_CLIENT_SECRET = ""
    settings.GOOGLE_ADS_REFRESH_TOKEN = secret
    settings.GOOGLE_ADS_DEVELOPER_TOKEN = ""


@pytest.mark.parametrize(
    ("text", "may_hold"),
    [
        ("token endpoint answered 1//0g-configured", True),  # a configured one, no name
        ("token endpoint answered 1%2F%2F0g-configured", True),
        ("grant_type=refresh_token&client_secret=abc123", True),  # a name, nothing configured
        ("Authorization: Bearer ya29.a0AbC-defgh-ijklmnop", True),
        ("Not Found: /api/products/7", False),
    ],
)
def test_the_logging_filters_substring_checks_find_a_configured_credential_or_a_name(
    settings, text, may_hold
) -> None:
    """The logging filter leaves a line as it is when may_hold_credentials says no: each kind
    of credential `without_credentials` takes out must be found here too."""
    _only_credentials(settings, "1//0g-configured")
    assert google_ads.may_hold_credentials(text) is may_hold


@pytest.mark.parametrize(
    ("secret", "shown"),
    [("abcd", "answer: [redacted]"), ("abc", "answer: abc")],
)
def test_a_configured_credential_of_four_characters_or_more_is_taken_out(
    settings, secret, shown
) -> None:
    """Shorter values (a placeholder such as "x") would take out every such letter."""
    _only_credentials(settings, secret)
    assert google_ads.without_credentials(f"answer: {secret}") == shown


def test_an_error_text_is_cut_only_past_its_longest_length(settings) -> None:
    _only_credentials(settings, "")
    longest = "x" * 1000
    assert google_ads.redacted(longest) == longest
    assert google_ads.redacted(longest + "y") == longest + "... (cut)"


def _chain(where: str) -> BaseException:
    """An exception with a credential in its own text, its cause's or its context's."""
    secret = RuntimeError("token endpoint answered: refresh_token=1//0g-configured")
    if where == "itself":
        return secret
    exc = RuntimeError("the call failed")
    if where == "cause":
        exc.__cause__ = secret
    else:
        exc.__context__ = secret
    return exc


@pytest.mark.parametrize("where", ["itself", "cause", "context"])
def test_an_exception_whose_chain_holds_a_credential_is_not_chained(settings, where) -> None:
    """A logged traceback prints every exception of the chain: the error raised for this one
    must not carry it as its cause."""
    _only_credentials(settings, "1//0g-configured")

    assert google_ads._safe_cause(_chain(where)) is None


@pytest.mark.parametrize(
    "error",
    [
        google_ads.PermanentAdsError,
        google_ads.TransientAdsError,
        google_ads.DailyQuotaExhausted,
        google_ads._Transient,
    ],
)
def test_an_errors_text_is_kept_without_credentials(settings, error) -> None:
    """Its text is stored with the day, shown in the admin and logged."""
    _only_credentials(settings, "1//0g-configured")

    raised = error("token endpoint answered 1//0g-configured for client_secret=abc123")

    assert str(raised) == "token endpoint answered [redacted] for client_secret=[redacted]"


# Generous: the walk takes microseconds; with no end it would hold the run for pytest's 180 s.
@pytest.mark.timeout(30)
def test_an_exception_chain_that_loops_back_on_itself_is_checked_to_its_end() -> None:
    """A cause set by hand can close a loop, which Python's own chaining never makes."""
    first, second = RuntimeError("first"), RuntimeError("second")
    first.__cause__, second.__cause__ = second, first

    assert google_ads._safe_cause(first) is first


def test_a_credential_named_with_letters_that_fold_to_ascii_is_still_looked_for() -> None:
    """The logging filter runs the patterns only on lines may_hold_credentials lets through,
    and the case-insensitive pattern takes the long s (U+017F) for an s, which lower() keeps:
    a substring check alone would let this line be logged as it is."""
    text = "refused: client_\u017fecret=abc123"
    assert google_ads.without_credentials(text) == "refused: client_\u017fecret=[redacted]"
    assert google_ads.may_hold_credentials(text)


# A token endpoint's answer: status, content type, body.
_Reply = tuple[int, str, bytes]


@contextlib.contextmanager
def _token_endpoint(answer: Callable[[bytes], _Reply]) -> Iterator[str]:
    """A token endpoint on a free port that answers each form as `answer` says; yields its
    URL."""

    class Endpoint(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            status, content_type, body = answer(
                self.rfile.read(int(self.headers["Content-Length"]))
            )
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()


def _granted(token: dict[str, object]) -> _Reply:
    return 200, "application/json", json.dumps(token).encode()


def _echoing_token_endpoint(
    status: int, error: str | None, *, grants_first: bool = False, posts: list[str] | None = None
) -> contextlib.AbstractContextManager[str]:
    """A token endpoint (or a proxy before it) whose error body repeats the form it was sent;
    `grants_first`: its first answer is a token valid for 60 s, which google-auth takes for
    expired at once (gRPC's auth plugin refreshes it for the call); `posts` gets each form."""
    granted = []

    def answer(form: bytes) -> _Reply:
        if posts is not None:
            posts.append(form.decode())
        if grants_first and not granted:
            granted.append(form)
            return _granted({"access_token": "ya29.granted-once", "expires_in": 60})
        text = form.decode()
        if error:
            body = json.dumps({"error": error, "error_description": text})
            return status, "application/json", body.encode()
        return status, "text/plain", text.encode()

    return _token_endpoint(answer)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, "upstream"),
        (400, "invalid_grant"),  # the errors answered with a message of our own
        (401, "invalid_client"),
        (400, None),  # not JSON
        (502, None),  # retried
    ],
)
def test_a_token_endpoint_that_echoes_the_credentials_leaves_them_out_of_the_error(
    ads_sandbox, settings, status, error
):
    settings.GOOGLE_ADS_CLIENT_SECRET = "GOCSPX-a-real-looking-secret"
    settings.GOOGLE_ADS_REFRESH_TOKEN = "1//0g-a-real-looking-refresh-token"
    with _echoing_token_endpoint(status, error) as token_uri:
        settings.GOOGLE_ADS_TOKEN_URI = token_uri
        with pytest.raises((CredentialsError, TransientAdsError)) as raised:
            google_ads.fetch_data(CUSTOMER, DAY)

    said = "".join(traceback.format_exception(raised.value))
    if error in ("invalid_grant", "invalid_client"):
        assert "GOOGLE_ADS_" in said  # the message names the setting to renew
    else:
        assert "token refresh failed" in said
        assert "client_secret=[redacted]" in said
    for secret in ("GOCSPX-a-real-looking-secret", "0g-a-real-looking-refresh-token"):
        assert secret not in said


@pytest.mark.parametrize(
    ("status", "error"), [(503, "backendError"), (400, "temporarily_unavailable")]
)
def test_one_token_refresh_with_the_librarys_own_tries_keeps_to_the_calls_deadline(
    ads_sandbox, settings, status, error
):
    """google-auth tries a retryable refusal three times, a second and two apart, each request
    with the deadline: one refresh could outlast three. Its next try after the deadline is not
    made, and the attempt is retried as any other transient failure: OAuth's
    `temporarily_unavailable` too, even with a 400 (google-auth marks it retryable)."""
    settings.ADS_SYNC_MAX_ATTEMPTS = 2
    # Below google-auth's first wait (0.9 s at least), so the next try, which would start that
    # long after the first, is never made; as far above the first answer's time as that allows.
    settings.ADS_SYNC_TIMEOUT_S = 0.85
    posts: list[str] = []
    with _echoing_token_endpoint(status, error, posts=posts) as token_uri:
        settings.GOOGLE_ADS_TOKEN_URI = token_uri
        with pytest.raises(
            TransientAdsError,
            match=rf"HTTP {status} {error}, and ADS_SYNC_TIMEOUT_S \(0\.85 s\) ran out",
        ) as raised:
            google_ads.fetch_data(CUSTOMER, DAY)

    assert raised.value.attempts == 2
    assert len(posts) == 2  # one request an attempt, not three


# A refresh's deadline for the tests that let google-auth make its three tries: they wait 1 s and
# 2 s between them (3.3 s at most), and the fixture's 5 s left the last try less than 1.7 s, which
# an endpoint slow to answer on a starved CPU overran: the refresh ended as "token endpoint
# unreachable: ... Read timed out", not with the last answer's status the tests look for.
LIBRARY_TRIES_DEADLINE_S = 60.0


@pytest.mark.parametrize("status", [502, 503])
def test_a_token_endpoint_failing_with_a_page_that_is_not_json_is_retried(
    ads_sandbox, settings, status
):
    """A proxy's or an outage's error page before the token endpoint: google-auth never marks a
    refusal that is not JSON retryable, and the day failed at once with "token refresh failed",
    counted as the installation's credentials. (google-auth tries a 503 three times itself.)"""
    settings.ADS_SYNC_MAX_ATTEMPTS = 2
    settings.ADS_SYNC_TIMEOUT_S = LIBRARY_TRIES_DEADLINE_S
    with _echoing_token_endpoint(status, None) as token_uri:
        settings.GOOGLE_ADS_TOKEN_URI = token_uri
        with pytest.raises(TransientAdsError, match=f"HTTP {status}") as raised:
            google_ads.fetch_data(CUSTOMER, DAY)

    assert raised.value.attempts == 2
    assert ads_sandbox.calls() == []


@pytest.mark.parametrize("status", [500, 408, 429])
def test_a_token_endpoint_failing_with_a_status_that_blames_the_server_is_transient(
    ads_sandbox, settings, status
):
    """5xx from 500 up, a request timeout and a rate limit fail the endpoint, not the
    installation's credentials: the day is retried later, not counted against them. (google-auth
    tries these statuses three times itself before it gives up.)"""
    settings.ADS_SYNC_MAX_ATTEMPTS = 1
    settings.ADS_SYNC_TIMEOUT_S = LIBRARY_TRIES_DEADLINE_S
    with _echoing_token_endpoint(status, None) as token_uri:
        settings.GOOGLE_ADS_TOKEN_URI = token_uri
        with pytest.raises(TransientAdsError, match=f"HTTP {status}"):
            google_ads.fetch_data(CUSTOMER, DAY)

    assert ads_sandbox.calls() == []


def test_a_refusal_google_auth_marks_retryable_is_transient(ads_sandbox, settings):
    """OAuth's `temporarily_unavailable`, even with a 400: google-auth tries it three times
    itself, then gives up marking it retryable; the day is retried later, not counted against
    the installation's credentials."""
    settings.ADS_SYNC_MAX_ATTEMPTS = 1
    settings.ADS_SYNC_TIMEOUT_S = LIBRARY_TRIES_DEADLINE_S
    with _echoing_token_endpoint(400, "temporarily_unavailable") as token_uri:
        settings.GOOGLE_ADS_TOKEN_URI = token_uri
        with pytest.raises(TransientAdsError, match="temporarily_unavailable"):
            google_ads.fetch_data(CUSTOMER, DAY)

    assert ads_sandbox.calls() == []


def test_a_token_endpoint_that_echoes_the_credentials_leaves_them_out_of_the_librarys_log(
    ads_sandbox, settings, logged
):
    """The client's own errors were redacted, but google-ads' `Request made: ... FaultMessage:`
    line and gRPC's traceback of the failed AuthMetadataPluginCallback wrote the refused
    refresh's form, client secret and refresh token included."""
    settings.GOOGLE_ADS_CLIENT_SECRET = "GOCSPX-a-real-looking-secret"
    settings.GOOGLE_ADS_REFRESH_TOKEN = "1//0g-a-real-looking-refresh-token"
    with _echoing_token_endpoint(400, "upstream", grants_first=True) as token_uri:
        settings.GOOGLE_ADS_TOKEN_URI = token_uri
        # The call's refresh fails in gRPC's plugin, the next try's in the client's own.
        with pytest.raises(CredentialsError):
            google_ads.fetch_data(CUSTOMER, DAY)

    written = logged.getvalue()
    assert "Request made: " in written
    assert "AuthMetadataPluginCallback" in written
    for secret in ("GOCSPX-a-real-looking-secret", "0g-a-real-looking-refresh-token"):
        assert secret not in written


def test_a_refresh_token_refused_to_grpcs_auth_plugin_fails_at_once_naming_it(
    ads_sandbox, settings
):
    """A token google-auth takes for stale as it is granted is refreshed again by gRPC's auth
    plugin as the call starts: its invalid_grant comes back as UNAVAILABLE ("Getting metadata
    from plugin failed"), not as a RefreshError, and is not a fault to retry."""
    settings.ADS_SYNC_MAX_ATTEMPTS = 3
    with _echoing_token_endpoint(400, "invalid_grant", grants_first=True) as token_uri:
        settings.GOOGLE_ADS_TOKEN_URI = token_uri
        with pytest.raises(
            InstallationCredentialsError, match="GOOGLE_ADS_REFRESH_TOKEN"
        ) as raised:
            google_ads.fetch_data(CUSTOMER, DAY)

    assert raised.value.attempts == 1
    assert ads_sandbox.calls() == []


def _relaying_token_endpoint(
    ads_sandbox, expires_in: list[int], expire_after: int
) -> contextlib.AbstractContextManager[str]:
    """A token endpoint before the sandbox's: the n-th grant is the sandbox's, told to the
    client with expires_in[n - 1] (the last one for those after); after the grant numbered
    `expire_after`, every token the sandbox issued so far stops working."""
    grants: list[str] = []

    def answer(form: bytes) -> _Reply:
        sandbox_uri = ads_sandbox.env["GOOGLE_ADS_TOKEN_URI"]
        with urllib.request.urlopen(sandbox_uri, data=form, timeout=10) as response:
            token = json.loads(response.read())
        grants.append(token["access_token"])
        token["expires_in"] = expires_in[min(len(grants), len(expires_in)) - 1]
        if len(grants) == expire_after:
            ads_sandbox.expire_tokens()
        return _granted(token)

    return _token_endpoint(answer)


def test_a_token_grpcs_auth_plugin_took_mid_call_is_the_one_refreshed_when_it_is_refused(
    ads_sandbox, settings
):
    """The client's token went stale between its own check and the call (here: granted for
    60 s, inside google-auth's refresh margin), so gRPC's auth plugin took a new one for the
    call, and the server refused that one. The refresh after the refusal compared the token
    the client had before the call: it took the plugin's for a refresh already done, sent the
    refused token again, and failed the day with CredentialsError."""
    with _relaying_token_endpoint(ads_sandbox, [60, 3599], expire_after=2) as token_uri:
        settings.GOOGLE_ADS_TOKEN_URI = token_uri

        rows = google_ads.fetch_data(CUSTOMER, DAY)

    assert len(rows) == len(data.rows_for(CUSTOMER, DAY))
    assert [(c["method"], c["outcome"]) for c in ads_sandbox.calls(method=None)] == [
        ("token", "ok"),  # the client's own, stale as it comes
        ("token", "ok"),  # gRPC's plugin, for the call; refused
        ("SearchStream", "unauthenticated:expired"),
        ("token", "ok"),  # the refresh after the refusal
        ("SearchStream", "ok"),
    ]


def test_warm_up_without_credentials_calls_nothing_and_says_so(ads_sandbox, settings):
    settings.GOOGLE_ADS_REFRESH_TOKEN = ""

    assert google_ads.warm_up() is False
    assert ads_sandbox.calls(method=None) == []


def test_a_warm_up_the_token_endpoint_refuses_is_logged_and_the_first_fetch_tries_again(
    ads_sandbox, settings, caplog
):
    # Another configuration, so that warm_up builds this process a new client.
    settings.GOOGLE_ADS_DEVELOPER_TOKEN = "refused-warm-up-developer-token"
    ads_sandbox.configure(revoke_refresh_token=True)

    assert google_ads.warm_up() is False
    ads_sandbox.configure(revoke_refresh_token=False)
    rows = google_ads.fetch_data(CUSTOMER, DAY)

    assert len(rows) == len(data.rows_for(CUSTOMER, DAY))
    assert [(c["method"], c["outcome"]) for c in ads_sandbox.calls(method=None)] == [
        ("token", "invalid_grant"),
        ("token", "ok"),
        ("SearchStream", "ok"),
    ]
    (warning,) = [r for r in caplog.records if "warm-up failed" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert google_ads.INVALID_GRANT_ADVICE in warning.getMessage()


@contextlib.contextmanager
def _held_token_endpoint():
    """A token endpoint that grants a token only once the test releases it (or 10 s have
    passed): yields its URL, and events set when a request is in, when it is answered, and the
    one that releases it."""
    received = threading.Event()
    answered = threading.Event()
    release = threading.Event()

    def answer(form: bytes) -> _Reply:
        received.set()
        release.wait(timeout=10)
        answered.set()
        return _granted({"access_token": "ya29.held-grant", "expires_in": 3599})

    try:
        with _token_endpoint(answer) as token_uri:
            yield token_uri, received, answered, release
    finally:
        release.set()


def test_a_workers_warm_up_goes_on_in_a_daemon_thread_while_the_worker_starts(
    ads_sandbox, settings
):
    """A worker's start is not held up by the token endpoint, nor its exit by a warm-up that
    still waits for one."""
    settings.ADS_SYNC_TIMEOUT_S = 30.0  # longer than the endpoint holds a request
    with _held_token_endpoint() as (token_uri, received, answered, release):
        settings.GOOGLE_ADS_TOKEN_URI = token_uri

        thread = google_ads.warm_up_in_background()

        assert not answered.is_set(), "warm_up_in_background waited for the token"
        assert received.wait(timeout=10), "the warm-up asked for no token"
        assert thread.is_alive()
        assert thread.daemon
        release.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert google_ads._get_client().credentials.token == "ya29.held-grant"


def _fetch_in_forked_child(customer_id: str, day: dt.date, queue) -> None:
    queue.put(len(google_ads.fetch_data(customer_id, day)))


def test_a_thread_that_waited_on_the_build_takes_the_client_built_meanwhile(
    ads_sandbox, monkeypatch
):
    """A worker's threads making their first calls at once: the one that waited while another
    built the client takes that one, not a client of its own (or none)."""
    built = google_ads._get_client()
    monkeypatch.setattr(google_ads, "_client", None)
    waiting = threading.Event()
    held = threading.Lock()

    class BuildLock:
        """The build lock, saying when a thread has come to it."""

        def __enter__(self) -> None:
            waiting.set()
            held.acquire()

        def __exit__(self, *exc_info: object) -> None:
            held.release()

    monkeypatch.setattr(google_ads, "_build_lock", BuildLock())
    taken: list[object] = []
    with held:  # another thread is building
        thread = threading.Thread(target=lambda: taken.append(google_ads._get_client()))
        thread.start()
        assert waiting.wait(timeout=60)
        google_ads._client = built  # what the other thread's build left
    thread.join(timeout=60)

    assert len(taken) == 1
    assert taken[0] is built


def test_a_forked_worker_builds_its_own_client(ads_sandbox):
    google_ads.fetch_data(CUSTOMER, DAY)  # the parent has a live channel
    ads_sandbox.reset()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_fetch_in_forked_child, args=(CUSTOMER, DAY, queue))
    child.start()
    child.join(timeout=30)

    assert child.exitcode == 0
    assert queue.get(timeout=1) == len(data.rows_for(CUSTOMER, DAY))
    assert _outcomes(ads_sandbox) == ["ok"]


_WORKER = textwrap.dedent(
    """
    import datetime as dt, os, sys, time
    from pathlib import Path
    import django
    django.setup()
    from ads_sync.integrations import google_ads
    customer, ready, go, count = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    google_ads._get_client()  # build outside the measured window
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    for n in range(count):
        google_ads.fetch_data(customer, dt.date(2025, 1, 1) + dt.timedelta(days=n))
    """
)


def test_rate_limit_is_shared_by_two_processes(ads_sandbox, tmp_path):
    qps = 5
    per_process = 8
    env = {
        **os.environ,
        **ads_sandbox.env,
        "ADS_SYNC_MAX_QPS": str(qps),
        "DJANGO_SETTINGS_MODULE": "inventory_project.settings.test",
        "PYTHONPATH": str(ROOT),
    }
    go = tmp_path / "go"
    workers = []
    for customer in data.DEFAULT_CUSTOMERS:
        ready = tmp_path / f"ready-{customer}"
        workers.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER, customer, ready, go, str(per_process)],
                    cwd=ROOT,
                    env=env,
                ),
            )
        )
    deadline = time.monotonic() + 60
    while not all(ready.exists() for ready, _ in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    assert [process.wait(timeout=60) for _, process in workers] == [0, 0]

    calls = [c for c in ads_sandbox.calls() if c["query"] == "campaign"]
    assert len(calls) == 2 * per_process
    assert all(c["outcome"] == "ok" for c in calls)
    times = sorted(c["t"] for c in calls)
    busiest_second = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    # One bucket of `qps` per second with a burst of one: about qps per second (+2 for arrival
    # jitter on a loaded machine), where two per-process limiters would let 2 x qps through;
    # and the 16 calls are spread over (16 - 1) / qps seconds, not half of that.
    assert busiest_second <= qps + 2
    assert times[-1] - times[0] >= 0.9 * (len(times) - 1) / qps
    first_ends = min(
        max(c["t"] for c in calls if c["customer_id"] == cid) for cid in data.DEFAULT_CUSTOMERS
    )
    second_starts = max(
        min(c["t"] for c in calls if c["customer_id"] == cid) for cid in data.DEFAULT_CUSTOMERS
    )
    assert second_starts < first_ends, "the two processes did not overlap"


# The first google-ads release that ships each API version the client may pin (its
# google/ads/googleads/vNN package): 33.0.0 ships v23 to v25 only.
FIRST_RELEASE_WITH = {"v26": "34.0.0"}


def test_the_google_ads_requirement_admits_no_release_without_the_api_version() -> None:
    """`google-ads>=28.0` admitted 28.0 to 33.x, none of which ships v26: an install that did
    not take the lock's version failed at the first call (no module google.ads.googleads.v26).
    A new API_VERSION needs its first release here, and the requirement raised to it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (requirement,) = (
        Requirement(r) for r in project["dependencies"] if Requirement(r).name == "google-ads"
    )
    first = Version(FIRST_RELEASE_WITH[google_ads.API_VERSION])
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "~=", "==")]
    assert floors
    assert all(floor >= first for floor in floors)
    assert importlib.metadata.version("google-ads") in requirement.specifier


def test_a_customer_id_is_ten_digits_with_or_without_dashes_and_spaces() -> None:
    assert google_ads.normalize_customer_id(" 123-456-7890 ") == "1234567890"
    for bad in ("12345", "123-456-789O", "", "1234567890123", "\uff11" * 10):
        with pytest.raises(ValueError, match="ten digits"):
            google_ads.normalize_customer_id(bad)


def test_a_customer_id_refused_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=re.escape("dashes allowed: '123-456-789O'")):
        google_ads.normalize_customer_id("123-456-789O")


@pytest.mark.parametrize(
    "retry_delay_s",
    [
        300,
        # Within the budget (74 s), past the window (66 s): after that wait, the attempt could
        # last four deadlines and end past the budget the time limits are built on.
        68,
    ],
)
def test_a_retry_delay_past_the_calls_retry_window_gives_up_instead_of_sleeping(
    ads_sandbox, settings, retry_delay_s
):
    settings.ADS_SYNC_TIMEOUT_S = 2.0
    settings.ADS_SYNC_MAX_ATTEMPTS = 3  # a window of 2 x 3 + 60 = 66 s for retries to start
    ads_sandbox.configure(fail_first={"quota": 5}, quota_retry_delay_s=retry_delay_s)

    with pytest.raises(TransientAdsError) as raised:
        google_ads.fetch_data(CUSTOMER, DAY)

    assert raised.value.attempts == 1
    assert _outcomes(ads_sandbox) == ["quota"]


def test_a_calls_budget_is_its_retry_window_and_then_one_attempt_at_its_longest(settings):
    """The tasks' time limits and the planning lock's TTL are built on it. A retry may start
    until every attempt at its deadline and a minute of waits have gone by (the window), and
    that attempt may then hold four deadlines: a token refresh and the call, and after a
    refused token another refresh and call. It counted the window alone: a retry started late
    in it ran past the sync_day task's soft limit (budget + 60 s)."""
    settings.ADS_SYNC_TIMEOUT_S = 2.0
    settings.ADS_SYNC_MAX_ATTEMPTS = 3
    assert google_ads.fetch_budget_s() == (2.0 * 3 + 60) + 4 * 2.0
    settings.ADS_SYNC_MAX_ATTEMPTS = 0  # still one attempt
    assert google_ads.fetch_budget_s() == (2.0 + 60) + 4 * 2.0


def test_the_backoff_doubles_per_attempt_with_jitter_in_its_upper_half_up_to_the_max(settings):
    """The tests' fast retry settings make any wait pass: its bounds are checked here."""
    settings.ADS_SYNC_RETRY_BASE_S = 1.0
    settings.ADS_SYNC_RETRY_MAX_S = 6.0
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    for attempt, backoff in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 6.0), (5, 6.0)):
        state.attempt_number = attempt
        delays = [google_ads._wait(state) for _ in range(50)]
        assert all(backoff / 2 <= delay <= backoff for delay in delays), (attempt, delays)


def _wait_with_random_at(monkeypatch, end: str, state: RetryCallState) -> float:
    """_wait's delay when the jitter comes out at the `end` ("low" or "high") of its range."""
    pick = (lambda low, high: low) if end == "low" else (lambda low, high: high)
    monkeypatch.setattr(google_ads, "random", SimpleNamespace(uniform=pick))
    return google_ads._wait(state)


@pytest.mark.parametrize(("end", "delay"), [("low", 2.0), ("high", 4.0)])
def test_the_backoffs_jitter_spans_its_whole_upper_half(settings, monkeypatch, end, delay):
    settings.ADS_SYNC_RETRY_BASE_S = 1.0
    settings.ADS_SYNC_RETRY_MAX_S = 6.0
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = 3  # a backoff of 4 s

    assert _wait_with_random_at(monkeypatch, end, state) == delay


@pytest.mark.parametrize(
    ("retry_delay_s", "end", "delay"),
    [
        (5.0, "low", 5.0),
        (5.0, "high", 6.0),  # the jitter is at most one base ...
        (0.5, "high", 1.0),  # ... and at most the server's delay
    ],
)
def test_a_servers_retry_delay_is_a_floor_with_jitter_on_top(
    settings, monkeypatch, retry_delay_s, end, delay
):
    settings.ADS_SYNC_RETRY_BASE_S = 1.0
    settings.ADS_SYNC_RETRY_MAX_S = 6.0
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.set_exception(
        (google_ads._Transient, google_ads._Transient("quota", retry_delay=retry_delay_s), None)
    )

    assert _wait_with_random_at(monkeypatch, end, state) == delay
