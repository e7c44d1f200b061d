"""Fixtures for the Google Ads work: the local sandbox API (ads_sync/sandbox) in a subprocess.

`ads_sandbox` (function scope) -> SandboxHandle, with the app's settings pointed at the sandbox:

    def test_something(ads_sandbox):
        ads_sandbox.configure(latency_s=0.05, fail_first={"quota": 1}, quota_retry_delay_s=0.2)
        rows = google_ads.fetch_data(ads_sandbox.customers[0], dt.date(2025, 3, 1))
        assert [c["outcome"] for c in ads_sandbox.calls()] == ["quota", "ok"]

- One sandbox process per pytest session, started on the ports of `ads_sandbox_ports`
  (env `ADS_SANDBOX_PORTS="grpc,oauth"`; by default two free ports, so that test runs side by
  side do not meet). Each test starts with default faults and an empty record.
- The fixture overrides Django settings (GOOGLE_ADS_* from `.env`, ADS_SYNC_RETRY_BASE_S=0.01,
  ADS_SYNC_RETRY_MAX_S=0.2, ADS_SYNC_TIMEOUT_S=5, ADS_SYNC_MAX_QPS=1000) so retries are fast;
  override them again with pytest-django's `settings` fixture in a test when needed.
- `.env`: dict of environment variables (str values) for subprocesses (e.g. a Celery worker
  process): GOOGLE_ADS_CLIENT_ID/SECRET/REFRESH_TOKEN/DEVELOPER_TOKEN/CUSTOMER_IDS/ENDPOINT/
  TOKEN_URI/CA_FILE (plus the fast retry settings above).
- `.customers`: tuple of the sandbox's customer ids ("1234567890", "2345678901").
- `.calls(method="SearchStream")`: the record, oldest first; each a dict with customer_id, date
  ("YYYY-MM-DD", None for the account query), query ("campaign" | "customer"), attempt (per
  customer+date, counted since the last reset), outcome ("ok", "quota", "daily_quota",
  "internal", "unavailable", "transient_error", "deadline_exceeded", "hang",
  "unauthenticated[:expired|:unknown]", "permission_denied", "project_not_approved",
  "not_ads_user", "invalid_argument",
  "invalid_customer_id", "stream_removed", "unknown", "empty"), rows (for "stream_removed", those
  sent before the reset), t (epoch seconds when received), request_id, login_customer_id,
  developer_token (None when the header was not sent).
  `.calls(method="token")` lists the OAuth grants (outcome "ok" | "invalid_grant" |
  "invalid_client" | "invalid_scope" | "unsupported_grant_type"); `.calls(method=None)` both.
- `.configure(**faults)`: merge faults (see ads_sync/sandbox/server.py DEFAULT_FAULTS):
  latency_s, fail_first={kind: n} (first n attempts of every customer+date fail),
  fail_rate={kind: fraction} (deterministic by hash), quota_retry_delay_s,
  daily_quota_retry_delay_s, hang_s, token_ttl_s, revoke_refresh_token, denied_customers,
  duplicate_first_row ("same" | "changed": the first campaign row of an answer sent twice),
  send_failure (False: faults end without a GoogleAdsFailure, as a front end's errors do),
  request_id_metadata (False: faults end without the "request-id" trailing metadata, the
  request id then only in the GoogleAdsFailure).
  Kinds: quota, daily_quota, internal, unavailable (without a GoogleAdsFailure),
  transient_error and deadline_exceeded (UNAVAILABLE and DEADLINE_EXCEEDED with one: the
  library raises a GoogleAdsException), hang, unauthenticated, permission_denied (this
  account's), project_not_approved and not_ads_user (the installation's: PERMISSION_DENIED
  CLOUD_PROJECT_NOT_APPROVED_FOR_PRODUCTION, UNAUTHENTICATED NOT_ADS_USER), invalid_argument,
  stream_removed (the first row's batch, then UNKNOWN "Stream removed"),
  unknown (UNKNOWN with a GoogleAdsFailure: the server's own error), empty (an answer without
  a row: for the account query, no account row).
- `.expire_tokens()`: every access token issued so far stops working (UNAUTHENTICATED).
- `.reset()`: default faults, empty record, every issued access token valid again.
- Expected data: `ads_sync.sandbox.data.rows_for(customer_id, day)` (deterministic; about one
  day in eight is empty, `data.first_empty_day(customer_id, start)` finds one).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from ads_sync import selectors
from ads_sync.models import AdsAccount
from ads_sync.sandbox import data
from tests.processes import stop

ROOT = Path(__file__).resolve().parents[2]

FAST_RETRY_SETTINGS = {
    "ADS_SYNC_RETRY_BASE_S": 0.01,
    "ADS_SYNC_RETRY_MAX_S": 0.2,
    "ADS_SYNC_TIMEOUT_S": 5.0,
    "ADS_SYNC_MAX_QPS": 1000.0,
}


class SandboxHandle:
    def __init__(self, grpc_port: int, oauth_port: int, state_dir: Path) -> None:
        self.grpc_port = grpc_port
        self.oauth_port = oauth_port
        self.customers: tuple[str, ...] = data.DEFAULT_CUSTOMERS
        self.base_url = f"http://127.0.0.1:{oauth_port}"
        self.state_dir = state_dir
        self.env: dict[str, str] = {
            "GOOGLE_ADS_CLIENT_ID": "sandbox-client-id",
            "GOOGLE_ADS_CLIENT_SECRET": "sandbox-client-secret",
            "GOOGLE_ADS_REFRESH_TOKEN": "sandbox-refresh-token",
            "GOOGLE_ADS_DEVELOPER_TOKEN": "sandbox-developer-token",
            "GOOGLE_ADS_CUSTOMER_IDS": ",".join(self.customers),
            "GOOGLE_ADS_LOGIN_CUSTOMER_ID": "",
            "GOOGLE_ADS_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "GOOGLE_ADS_TOKEN_URI": f"{self.base_url}/token",
            "GOOGLE_ADS_CA_FILE": str(state_dir / "sandbox-cert.pem"),
            **{key: str(value) for key, value in FAST_RETRY_SETTINGS.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=payload, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def calls(self, method: str | None = "SearchStream") -> list[dict[str, Any]]:
        record = self._request("GET", "/_sandbox/calls")
        return [c for c in record if method is None or c["method"] == method]

    def configure(self, **faults: Any) -> dict[str, Any]:
        return dict(self._request("POST", "/_sandbox/config", faults))

    def expire_tokens(self) -> None:
        self._request("POST", "/_sandbox/expire-tokens", {})

    def reset(self) -> None:
        self._request("POST", "/_sandbox/reset", {})

    def healthy(self) -> bool:
        try:
            return bool(self._request("GET", "/_sandbox/health")["status"] == "ok")
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def django_settings(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            key: value
            for key, value in self.env.items()
            if key.startswith("GOOGLE_ADS_") and key != "GOOGLE_ADS_CUSTOMER_IDS"
        }
        values["GOOGLE_ADS_CUSTOMER_IDS"] = list(self.customers)
        values.update(FAST_RETRY_SETTINGS)
        return values


@pytest.fixture(scope="session")
def ads_sandbox_ports() -> tuple[int, int]:
    if "ADS_SANDBOX_PORTS" in os.environ:
        grpc_port, oauth_port = os.environ["ADS_SANDBOX_PORTS"].split(",")
        return int(grpc_port), int(oauth_port)
    # Both sockets open at once, so the two ports differ; the sandbox binds them right after.
    with socket.socket() as grpc_socket, socket.socket() as oauth_socket:
        grpc_socket.bind(("127.0.0.1", 0))
        oauth_socket.bind(("127.0.0.1", 0))
        return grpc_socket.getsockname()[1], oauth_socket.getsockname()[1]


@pytest.fixture(scope="session")
def ads_sandbox_server(
    ads_sandbox_ports: tuple[int, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxHandle]:
    """The sandbox subprocess, for the whole session (use `ads_sandbox` in tests)."""
    grpc_port, oauth_port = ads_sandbox_ports
    state_dir = tmp_path_factory.mktemp("ads-sandbox")
    handle = SandboxHandle(grpc_port, oauth_port, state_dir)
    if handle.healthy():
        pytest.fail(f"port {oauth_port} already serves a sandbox: another run uses these ports")
    log = (state_dir / "sandbox.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ads_sync.sandbox",
            "--grpc-port",
            str(grpc_port),
            "--oauth-port",
            str(oauth_port),
            "--state-dir",
            str(state_dir),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    handle.process = process
    deadline = time.monotonic() + 60
    while not handle.healthy():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                "the Google Ads sandbox did not start:\n" + (state_dir / "sandbox.log").read_text()
            )
        time.sleep(0.1)
    try:
        yield handle
    finally:
        stop(process)
        log.close()


@pytest.fixture(autouse=True)
def _accounts_days_from_the_test_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every planning in a test, and every window the test works out, takes each account's
    yesterday as of the test's start.

    A test plans more than once, or plans and then works out what the planning should have
    done; when an account's midnight fell in between (05:00 and 08:00 UTC for the sandbox's New
    York and Los Angeles accounts in winter, 04:00 and 07:00 in summer, 00:00 for UTC ones),
    the two counted from different yesterdays. A window given its own `now` keeps it.
    """
    start = dt.datetime.now(dt.UTC)
    yesterday = selectors.account_yesterday

    def from_the_test_start(
        *, account: AdsAccount | None, now: dt.datetime | None = None
    ) -> dt.date:
        return yesterday(account=account, now=now or start)

    monkeypatch.setattr(selectors, "account_yesterday", from_the_test_start)


@pytest.fixture
def ads_sandbox(ads_sandbox_server: SandboxHandle, settings: Any) -> Iterator[SandboxHandle]:
    """The sandbox with default faults and an empty record; Django settings point at it."""
    ads_sandbox_server.reset()
    for key, value in ads_sandbox_server.django_settings().items():
        setattr(settings, key, value)
    assert ads_sandbox_server.env["GOOGLE_ADS_ENDPOINT"] == django_settings.GOOGLE_ADS_ENDPOINT
    yield ads_sandbox_server
    ads_sandbox_server.reset()
