"""Rate limits with django-ratelimit's counters on the shared Redis cache, as a DRF throttle.

A throttle (rather than the @ratelimit decorator) runs after DRF authentication, so token users
are keyed by user, not by the IP they share with others. Over the limit: DRF's Throttled, which
the exception handler answers as 429 with Retry-After. With Redis down the counters cannot be
read: requests are served unthrottled and the outage is logged (RATELIMIT_FAIL_OPEN).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, PermissionDenied
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from inventory_project import logs
from products import cache

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str:
    """The client's address as its limits count it: the network it is in.

    A client is one IPv6 /64 (RATELIMIT_IPV6_MASK), as django-ratelimit keys its own `ip`:
    a host is commonly handed a whole /64, and could otherwise take a new address for every
    request (or every guessed password). IPv4 addresses count one by one (RATELIMIT_IPV4_MASK).
    """
    address = _client_address(request)
    ip = _ip(_without_port(address))
    if ip is None:
        return address  # not an address (a proxy's garbage, a unix socket): counted as it is
    mask = settings.RATELIMIT_IPV6_MASK if ip.version == 6 else settings.RATELIMIT_IPV4_MASK
    host_bits = ip.max_prefixlen - min(max(mask, 0), ip.max_prefixlen)
    return str(ipaddress.ip_address(int(ip) >> host_bits << host_bits))


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, an IPv4-mapped IPv6 one as its IPv4; None if it is not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _without_port(address: str) -> str:
    """An address without the port some proxies write after it (`203.0.113.5:4711`,
    `[2001:db8::1]:4711`): with it, every new source port would be a new client."""
    if address.startswith("["):
        return address[1:].partition("]")[0]
    host, colon, port = address.rpartition(":")
    if colon and "." in host and ":" not in host and port.isdigit():
        return host
    return address


def _client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, or with TRUSTED_PROXY_COUNT = N the address the outermost trusted proxy saw.

    Proxies append to X-Forwarded-For, so only the last N entries are trustworthy: a client that
    forges the header merely adds entries to the left, which are never read. That holds only for
    requests that came through the proxy: the header is read only from a peer in
    TRUSTED_PROXY_IPS, or a client reaching the server directly would pick its own address for
    every request (a new rate-limit bucket each time).
    """
    remote = str(request.META.get("REMOTE_ADDR", ""))
    hops = settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    if not is_trusted_proxy(remote):
        if "HTTP_X_FORWARDED_FOR" in request.META:
            warn_untrusted("X-Forwarded-For", remote, "all its clients share one rate limit")
        return remote
    forwarded = [
        part.strip()
        for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        if part.strip()
    ]
    if len(forwarded) >= hops:
        return forwarded[-hops]
    return remote


# Peers already warned about, per process (bounded: a scan from many addresses logs a few).
_WARNED: set[tuple[str, str]] = set()
_WARN_MAX = 16


def warn_untrusted(header: str, remote: str, consequence: str) -> None:
    """Say once per header and peer (for the first few) that the peer's `header` was not read:
    after a deployment, a proxy missing from FORWARDED_ALLOW_IPS has `consequence`."""
    if (header, remote) in _WARNED or len(_WARNED) >= _WARN_MAX:
        return
    _WARNED.add((header, remote))
    logger.warning(
        "%s from %s not read: the peer is not in FORWARDED_ALLOW_IPS (if it is your proxy, add "
        "it there, or %s)",
        header,
        remote,
        consequence,
    )


def is_trusted_proxy(address: str) -> bool:
    """Whether this peer's X-Forwarded-* headers are read: one of FORWARDED_ALLOW_IPS, or a
    unix socket's peer (not an address: "" under gunicorn), a process on this host in front,
    which gunicorn believes too."""
    return _is_trusted(tuple(settings.TRUSTED_PROXY_IPS), address)


@functools.lru_cache(maxsize=1024)
def _is_trusted(entries: tuple[str, ...], address: str) -> bool:
    # Asked on every request that carries X-Forwarded-Proto (inventory_project.forwarded).
    return _ip(address) is None or _trusted_proxies(entries)(address)


@functools.lru_cache(maxsize=4)
def _trusted_proxies(entries: tuple[str, ...]) -> Callable[[str], bool]:
    """A test for peers in these entries: addresses or networks (as gunicorn takes them), or
    "*" for any; an entry that is neither trusts nobody."""
    if "*" in entries:
        return lambda address: True
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            logger.warning("FORWARDED_ALLOW_IPS: %r is not an address or network", entry)

    def trusted(address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in networks)

    return trusted


def client_key(group: str, request: Any) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


def counted_usage(
    request: Any, *, group: str, key: Any, rate: str, increment: bool
) -> dict[str, Any] | None:
    """django-ratelimit's get_usage; None when the counters cannot be had.

    The counters live in the product cache's Redis: while this process rests from a Redis that
    failed (products.cache), they are not asked either, and a failure met here starts that
    rest. Otherwise a hung Redis would cost every request a socket timeout or two (add, incr).
    """
    if cache.redis_resting():
        return None
    usage: dict[str, Any] | None = get_usage(
        request, group=group, key=key, rate=rate, increment=increment
    )
    if usage is None and settings.RATELIMIT_ENABLE:
        cache.redis_failed("the rate-limit counters are unavailable")
    return usage


_UNCOUNTED = logs.Every()

READ_GROUP = "products:read"
WRITE_GROUP = "products:write"


def count_once(request: Any, *, group: str, rate: str) -> dict[str, Any] | None:
    """`counted_usage` of the request's client, counted once per request and group.

    The WSGI paths (products/api/fast_path.py, fast_reads.py, fast_writes.py) count a request
    before they answer it, and some requests they then hand on to the view, whose throttle
    looks again: the environ remembers the count, and later looks read the counter only.
    """
    counted = f"products.rate_limit_counted:{group}"
    usage = counted_usage(
        request, group=group, key=client_key, rate=rate, increment=counted not in request.META
    )
    request.META[counted] = True
    return usage


class ProductRateThrottle(BaseThrottle):
    """RATELIMIT_READS for safe methods, RATELIMIT_WRITES for the rest, per user or client IP."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Any, view: Any) -> bool:
        if not settings.RATELIMIT_ENABLE:
            return True
        is_read = request.method in SAFE_METHODS
        group = READ_GROUP if is_read else WRITE_GROUP
        rate = settings.RATELIMIT_READS if is_read else settings.RATELIMIT_WRITES
        usage = count_once(request, group=group, rate=rate)
        if usage is None:
            _UNCOUNTED.warning(
                logger, "rate limit counters unavailable (Redis down?): serving unthrottled"
            )
            return True
        if usage["should_limit"]:
            self._wait = max(1, int(usage["time_left"]))
            return False
        return True

    def wait(self) -> float | None:
        return self._wait


class CountsRefusals(APIView):
    """A view whose refused requests count against its throttles.

    DRF authenticates, checks permissions, then throttles, so a refused request was a way
    around the rate limit: a made-up token, an anonymous write, a missing permission or CSRF
    token got its 401 or 403 (after a token query), however many. A request refused there
    counts now (as the anonymous client's when authentication failed), and over the limit is a
    429. Only the request's own checks count: the browsable API asks the same permissions of
    copies of the request to decide which forms to draw, and a page view must not use up writes.
    """

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            super().initial(request, *args, **kwargs)
        except (AuthenticationFailed, NotAuthenticated, PermissionDenied):
            self.check_throttles(request)
            raise
