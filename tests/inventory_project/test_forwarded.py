"""X-Forwarded-Proto from untrusted peers (the end-to-end case runs gunicorn: test_foundation)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import override_settings

from inventory_project.forwarded import TrustedProtoApp
from products.api import throttling


def _seen(remote: str, proto: str = "https") -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        return []

    TrustedProtoApp(app)({"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_PROTO": proto}, None)
    return seen


@override_settings(TRUSTED_PROXY_IPS=["10.0.0.0/8"])
def test_a_trusted_proxys_header_is_passed_on_as_sent() -> None:
    assert _seen("10.1.2.3", "https, https")["HTTP_X_FORWARDED_PROTO"] == "https, https"


@override_settings(TRUSTED_PROXY_IPS=["10.0.0.0/8"])
def test_another_peers_header_is_dropped_and_said_once(caplog, monkeypatch) -> None:
    monkeypatch.setattr(throttling, "_WARNED", set())
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert "HTTP_X_FORWARDED_PROTO" not in _seen("192.0.2.7")
    warned = [r.getMessage() for r in caplog.records if "X-Forwarded-Proto" in r.getMessage()]
    assert len(warned) == 1
    assert "192.0.2.7" in warned[0]


@pytest.mark.parametrize("remote", ["", "/run/gunicorn.sock"])
def test_a_unix_sockets_peer_is_believed_as_gunicorn_believes_it(remote: str) -> None:
    """Behind a proxy on the same host over a unix socket, gunicorn reads the header; dropping
    it here would send every request to the HTTPS redirect."""
    assert _seen(remote)["HTTP_X_FORWARDED_PROTO"] == "https"
