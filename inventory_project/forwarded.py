"""X-Forwarded-Proto is read only from the proxies in FORWARDED_ALLOW_IPS.

Django takes SECURE_PROXY_SSL_HEADER from any client, while gunicorn reads the header (for its
own `wsgi.url_scheme`) only from FORWARDED_ALLOW_IPS: a client that reached the server directly,
past the proxy, and sent `X-Forwarded-Proto: https` was answered as over HTTPS (no redirect, HSTS,
https links). `TrustedProtoApp`, a WSGI layer ahead of all but the id and HEAD ones
(inventory_project/wsgi.py), drops the header from every other peer, under any WSGI server, with
the check X-Forwarded-For gets (products.api.throttling). Django keeps reading the header as it
does, the first of a comma-separated list included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from products.api.throttling import is_trusted_proxy, warn_untrusted

HEADER = "HTTP_X_FORWARDED_PROTO"


class TrustedProtoApp:
    """WSGI wrapper: X-Forwarded-Proto from a peer not in FORWARDED_ALLOW_IPS is removed."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if HEADER in environ:
            remote = str(environ.get("REMOTE_ADDR", ""))
            if not is_trusted_proxy(remote):
                del environ[HEADER]
                # The HTTPS redirect answers every request it sends, and nothing says why.
                warn_untrusted("X-Forwarded-Proto", remote, "every request looks like plain HTTP")
        return self.app(environ, start_response)
