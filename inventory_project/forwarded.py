"""X-Forwarded-Proto is read only from the proxies in FORWARDED_ALLOW_IPS.

Django takes SECURE_PROXY_SSL_HEADER from any client, while gunicorn reads the header (for its
own `wsgi.url_scheme`) only from FORWARDED_ALLOW_IPS: a client that reached the server directly,
past the proxy, and sent `X-Forwarded-Proto: https` was answered as over HTTPS (no redirect, HSTS,
https links). `TrustedProtoApp`, the outermost WSGI layer, drops the header from every other peer,
under any WSGI server, with the check X-Forwarded-For gets (products.api.throttling). Django keeps
reading the header as it does, the first of a comma-separated list included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from products.api.throttling import is_trusted_proxy

logger = logging.getLogger(__name__)

HEADER = "HTTP_X_FORWARDED_PROTO"
_WARNED: set[str] = set()
_WARN_MAX = 16


class TrustedProtoApp:
    """WSGI wrapper: X-Forwarded-Proto from a peer not in FORWARDED_ALLOW_IPS is removed."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if HEADER in environ:
            remote = str(environ.get("REMOTE_ADDR", ""))
            if not is_trusted_proxy(remote):
                del environ[HEADER]
                _warn(remote)
        return self.app(environ, start_response)


def _warn(remote: str) -> None:
    """Say once per peer (for the first few): a proxy missing from FORWARDED_ALLOW_IPS after a
    deployment makes every request look like plain HTTP, and the HTTPS redirect loop."""
    if remote in _WARNED or len(_WARNED) >= _WARN_MAX:
        return
    _WARNED.add(remote)
    logger.warning(
        "X-Forwarded-Proto from %s not read: the peer is not in FORWARDED_ALLOW_IPS (if it is "
        "your TLS proxy, add it there)",
        remote,
    )
