"""The sandbox itself: what tests and `make run` rely on, checked without the app's client."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from google.ads.googleads.v26.errors.types import errors as ads_errors
from google.api_core import exceptions as api_exceptions

from ads_sync.integrations import google_ads
from ads_sync.sandbox import certs, data
from ads_sync.sandbox.server import FAILURE_KEY, FAULT_KINDS
from tests.files import refuse_chmod, umask


def _post_form(url: str, form: dict[str, str]) -> tuple[int, dict[str, str]]:
    body = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.urlopen(url, data=body, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _grant(
    ads_sandbox, refresh_token: str = "sandbox-refresh-token", **more: str
) -> tuple[int, dict]:
    return _post_form(
        ads_sandbox.env["GOOGLE_ADS_TOKEN_URI"],
        {
            "grant_type": "refresh_token",
            "client_id": ads_sandbox.env["GOOGLE_ADS_CLIENT_ID"],
            "client_secret": ads_sandbox.env["GOOGLE_ADS_CLIENT_SECRET"],
            "refresh_token": refresh_token,
            **more,
        },
    )


def test_data_is_deterministic_per_customer_and_date():
    day = dt.date(2025, 1, 1)
    assert data.rows_for("1234567890", day) == data.rows_for("1234567890", day)
    assert data.rows_for("1234567890", day) != data.rows_for("2345678901", day)


def test_some_days_are_empty():
    start = dt.date(2025, 1, 1)
    days = [start + dt.timedelta(days=n) for n in range(120)]
    empty = [day for day in days if not data.rows_for("1234567890", day)]
    assert 0 < len(empty) < len(days) / 3


def test_token_endpoint_grants_an_access_token_for_the_sandbox_refresh_token(ads_sandbox):
    status, answer = _grant(ads_sandbox)
    assert status == 200
    assert answer["token_type"] == "Bearer"
    assert answer["access_token"]
    assert [c["outcome"] for c in ads_sandbox.calls(method="token")] == ["ok"]


ADWORDS = "https://www.googleapis.com/auth/adwords"


@pytest.mark.parametrize("scope", [ADWORDS, f"{ADWORDS} {ADWORDS}"])
def test_a_refresh_may_ask_for_the_scope_the_token_was_granted(ads_sandbox, scope: str):
    status, answer = _grant(ads_sandbox, scope=scope)
    assert (status, answer["scope"]) == (200, ADWORDS)


def test_a_refresh_asking_for_another_scope_is_refused_with_invalid_scope(ads_sandbox):
    """As Google's token endpoint answers it: the client's scopes must be the grant's or fewer."""
    scope = f"{ADWORDS} https://www.googleapis.com/auth/drive"
    status, answer = _grant(ads_sandbox, scope=scope)
    assert (status, answer["error"]) == (400, "invalid_scope")
    assert "invalid=[https://www.googleapis.com/auth/drive]" in answer["error_description"]
    assert [c["outcome"] for c in ads_sandbox.calls(method="token")] == ["invalid_scope"]


def test_token_endpoint_refuses_an_unknown_refresh_token_with_invalid_grant(ads_sandbox):
    status, answer = _grant(ads_sandbox, refresh_token="someone-elses")
    assert (status, answer["error"]) == (400, "invalid_grant")


def test_revoked_refresh_token_fault_answers_invalid_grant(ads_sandbox):
    ads_sandbox.configure(revoke_refresh_token=True)
    status, answer = _grant(ads_sandbox)
    assert (status, answer["error"]) == (400, "invalid_grant")


def test_configure_rejects_an_unknown_fault_kind(ads_sandbox):
    with pytest.raises(urllib.error.HTTPError) as raised:
        ads_sandbox.configure(fail_first={"gremlins": 1})
    assert raised.value.code == 400


def test_reset_restores_default_faults_and_empties_the_record(ads_sandbox):
    ads_sandbox.configure(latency_s=1.5)
    _grant(ads_sandbox)
    ads_sandbox.reset()
    assert ads_sandbox.configure()["latency_s"] == 0.0
    assert ads_sandbox.calls(method=None) == []


@pytest.mark.parametrize("kind", [k for k in FAULT_KINDS if k != "hang"])
def test_each_fault_kind_is_served_as_that_failure(ads_sandbox, settings, kind):
    settings.ADS_SYNC_MAX_ATTEMPTS = 1
    ads_sandbox.configure(fail_first={kind: 1})

    with contextlib.suppress(google_ads.AdsError):
        google_ads.fetch_data(data.DEFAULT_CUSTOMERS[0], dt.date(2025, 2, 1))

    assert ads_sandbox.calls()[0]["outcome"] == kind


def test_send_failure_off_ends_a_fault_with_its_request_id_alone(ads_sandbox):
    ads_sandbox.configure(fail_first={"permission_denied": 1}, send_failure=False)

    with pytest.raises(google_ads.PermanentAdsError) as raised:
        google_ads.fetch_data(data.DEFAULT_CUSTOMERS[0], dt.date(2025, 2, 1))

    # The library makes a GoogleAdsException of an error with a GoogleAdsFailure.
    assert isinstance(raised.value.__cause__, api_exceptions.PermissionDenied)
    assert raised.value.request_id == ads_sandbox.calls()[0]["request_id"]


def test_request_id_metadata_off_leaves_the_request_id_to_the_failure_alone(ads_sandbox):
    ads_sandbox.configure(fail_first={"daily_quota": 1}, request_id_metadata=False)

    with pytest.raises(google_ads.DailyQuotaExhausted) as raised:
        google_ads.fetch_data(data.DEFAULT_CUSTOMERS[0], dt.date(2025, 2, 1))

    # RESOURCE_EXHAUSTED reaches the client as api_core's error, which keeps the call.
    cause = raised.value.__cause__
    assert isinstance(cause, api_exceptions.ResourceExhausted)
    trailing = dict(cause.response.trailing_metadata())
    assert "request-id" not in trailing
    failure = ads_errors.GoogleAdsFailure.deserialize(trailing[FAILURE_KEY])
    assert failure.request_id == ads_sandbox.calls()[0]["request_id"]


@pytest.mark.parametrize(("duplicate", "more_impressions"), [("same", 0), ("changed", 1)])
def test_duplicate_first_row_sends_the_first_campaign_row_twice(
    ads_sandbox, duplicate, more_impressions
):
    customer = data.DEFAULT_CUSTOMERS[0]
    day = data.first_full_day(customer, dt.date(2025, 2, 1))
    served = [row.campaign_id for row in data.rows_for(customer, day)]
    ads_sandbox.configure(duplicate_first_row=duplicate)

    rows = google_ads.fetch_data(customer, day)

    assert [row.campaign_id for row in rows] == served[:1] + served
    assert rows[1].impressions - rows[0].impressions == more_impressions


def test_command_prints_the_environment_that_points_the_app_at_it(tmp_path):
    out = io.StringIO()
    env_file = tmp_path / "env"

    call_command(
        "google_ads_sandbox",
        "--env-only",
        "--state-dir",
        str(tmp_path),
        "--grpc-port",
        "18250",
        "--env-file",
        str(env_file),
        stdout=out,
    )

    printed = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    assert printed["GOOGLE_ADS_ENDPOINT"] == "127.0.0.1:18250"
    assert printed["GOOGLE_ADS_TOKEN_URI"] == "http://127.0.0.1:8089/token"
    assert Path(printed["GOOGLE_ADS_CA_FILE"]).read_text().startswith("-----BEGIN CERTIFICATE")
    assert env_file.read_text() == out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grpc-port", "70000"], "not a port"),  # it listened on 4464 and printed 70000
        (["--oauth-port", "-1"], "not a port"),
        (["--customers", "abc"], "ten digits"),
        (["--faults", "{bad"], "not JSON"),
        (["--faults", "[1]"], "a JSON object"),
        (["--faults", '{"latency_s": "x"}'], "latency_s must be a number"),
        (["--faults", '{"fail_rate": {"quota": "half"}}'], "fail_rate must map"),
        (["--faults", '{"gremlins": 1}'], "unknown fault settings"),
        (["--faults", '{"send_failure": "no"}'], "send_failure must be true or false"),
    ],
)
def test_command_refuses_bad_arguments_in_one_line(tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        call_command(
            "google_ads_sandbox",
            "--env-only",
            "--state-dir",
            str(tmp_path),
            *args,
            stdout=io.StringIO(),
        )


def test_command_says_why_it_cannot_start(tmp_path):
    """A file where the state folder goes, an env file in a missing folder, a port in use:
    each was a traceback."""
    (tmp_path / "file").write_text("")
    with pytest.raises(CommandError, match="File exists"):
        call_command(
            "google_ads_sandbox",
            "--env-only",
            "--state-dir",
            str(tmp_path / "file"),
            stdout=io.StringIO(),
        )
    with pytest.raises(CommandError, match="No such file"):
        call_command(
            "google_ads_sandbox",
            "--env-only",
            "--state-dir",
            str(tmp_path),
            "--env-file",
            str(tmp_path / "no" / "env"),
            stdout=io.StringIO(),
        )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        with pytest.raises(CommandError, match=r"in use|bind"):
            call_command(
                "google_ads_sandbox",
                "--state-dir",
                str(tmp_path),
                "--oauth-port",
                port,
                "--grpc-port",
                port,
                stdout=io.StringIO(),
            )


def test_the_sandboxs_private_key_is_never_readable_by_others(tmp_path, monkeypatch) -> None:
    """Written, then made 0600: readable by everyone in between under umask 022. Created 0600,
    it needs no chmod (refused here) and is 0600 whatever the umask (0 here)."""
    refuse_chmod(monkeypatch)
    with umask(0):
        paths = certs.ensure_certificate(tmp_path)
    assert paths.key.stat().st_mode & 0o777 == 0o600


def test_a_leftover_key_file_others_could_read_is_narrowed_before_the_write(tmp_path) -> None:
    """A write cut short left `sandbox-key.tmp`, maybe with a wider mode: the key goes into it
    only once only its owner may read it."""
    (tmp_path / "sandbox-key.tmp").write_text("")
    (tmp_path / "sandbox-key.tmp").chmod(0o644)
    paths = certs.ensure_certificate(tmp_path)
    assert paths.key.stat().st_mode & 0o777 == 0o600
