"""Lines an outage would repeat at every request are written once a minute."""

from __future__ import annotations

import logging

import pytest
from google.api_core import client_logging

from ads_sync.integrations import google_ads
from inventory_project import logs


def test_a_line_is_written_once_an_interval_saying_how_many_were_left_out(
    caplog, monkeypatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    every = logs.Every(interval_s=60)
    logger = logging.getLogger("tests.logs")

    with caplog.at_level(logging.WARNING, logger="tests.logs"):
        for _ in range(3):
            every.warning(logger, "Redis down: %s", "refused")
        now[0] += 59
        every.warning(logger, "Redis down: %s", "refused")
        now[0] += 1
        every.error(logger, "Redis down: %s", "refused")

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "Redis down: refused"),
        (logging.ERROR, "Redis down: refused (and 3 time(s) since the last such line)"),
    ]


CLIENT_SECRET = "GOCSPX-configured-client-secret"
REFRESH_TOKEN = "1//0g-configured-refresh-token"


@pytest.fixture
def credentials(settings) -> None:
    settings.GOOGLE_ADS_CLIENT_SECRET = CLIENT_SECRET
    settings.GOOGLE_ADS_REFRESH_TOKEN = REFRESH_TOKEN


@pytest.mark.usefixtures("credentials")
def test_a_librarys_line_is_written_without_the_configured_credentials(logged) -> None:
    """google-ads' own `Request made` line and gRPC's traceback of a failed auth plugin wrote
    the client secret and refresh token that a token endpoint's error repeated."""
    client_logging.initialize_logging()  # as building a Google Ads client does
    form = f"grant_type=refresh_token&client_secret={CLIENT_SECRET}&refresh_token={REFRESH_TOKEN}"
    try:
        raise RuntimeError(f"('invalid_request: {form}', {{'error_description': '{form}'}})")
    except RuntimeError:
        logging.getLogger("grpc._plugin_wrapping").exception(
            'AuthMetadataPluginCallback "%s" raised exception!', "plugin"
        )
    logging.getLogger("google.ads.googleads.client").warning(
        "Request made: ClientCustomerId: %s, FaultMessage: %s", "1234567890", form
    )

    text = logged.getvalue()
    assert [secret for secret in (CLIENT_SECRET, REFRESH_TOKEN) if secret in text] == []
    assert 'AuthMetadataPluginCallback "plugin" raised exception!' in text
    assert "Traceback" in text
    assert "RuntimeError: ('invalid_request: grant_type=refresh_token&client_secret=[redacted]" in (
        text
    )
    assert "ClientCustomerId: 1234567890, FaultMessage: grant_type=refresh_token" in text


@pytest.mark.usefixtures("credentials")
def test_a_line_without_credentials_is_let_through_as_it_is(monkeypatch) -> None:
    """Every line passes the filter (the web's too): one that holds no credential gets no more
    than substring checks, and keeps its message and arguments."""

    # Recorded, not raised: the filter swallows any exception, an AssertionError too.
    patterns_ran_on: list[str] = []

    def not_for_this_line(text: str) -> str:
        patterns_ran_on.append(text)
        return text

    monkeypatch.setattr(google_ads, "without_credentials", not_for_this_line)
    record = logging.LogRecord(
        "django.request", logging.WARNING, "", 0, "Not Found: %s", ("/x",), None
    )
    assert logs.WithoutCredentials().filter(record)
    assert (record.msg, record.args) == ("Not Found: %s", ("/x",))
    assert patterns_ran_on == []


@pytest.mark.unformattable_log_lines
@pytest.mark.usefixtures("credentials")
def test_a_line_whose_arguments_do_not_fit_is_written_without_the_credentials(logged) -> None:
    """The filter let such a record through as it was, and logging's handleError printed its
    message and arguments as they were, the refresh token among them."""
    logging.getLogger("ads_sync").warning(
        "token refresh answered %s", f"refresh_token={REFRESH_TOKEN}", 5
    )

    text = logged.getvalue()
    assert REFRESH_TOKEN not in text
    assert "unformattable log line: 'token refresh answered %s'" in text
