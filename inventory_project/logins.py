"""Login attempts are rate limited, per client IP and per username.

The admin's login and the browsable API's (`api-auth/login/`) check a password on every POST:
unlimited, they let a client guess passwords as fast as the server hashes them, and each guess
costs the server a password hash (hundreds of milliseconds of CPU with Django's default
hasher). Every POST to either counts against RATELIMIT_LOGINS twice: once for the client's IP
(one client guessing many accounts) and once for the username it names (many clients guessing
one account). Over either limit the answer is a 429 page with Retry-After, before the password
is checked. The counters are django-ratelimit's on the shared Redis cache; with Redis down,
logins are not limited and the outage is logged, as for the API's limits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_ratelimit.core import get_usage

from products.api.throttling import client_ip

logger = logging.getLogger(__name__)

LOGIN_VIEWS = frozenset({"admin:login", "rest_framework:login"})
GROUP = "logins"


def _by_ip(group: str, request: HttpRequest) -> str:
    return f"ip:{client_ip(request)}"


def _by_username(group: str, request: HttpRequest) -> str:
    return "user:" + str(request.POST.get("username", "")).strip().casefold()[:150]


class LoginRateLimitMiddleware:
    """Answers a login POST over RATELIMIT_LOGINS with 429 instead of running the login view.

    Placed after CsrfViewMiddleware: a POST without a valid CSRF token is refused there and
    checks no password, so it does not count.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Any, args: Any, kwargs: Any
    ) -> HttpResponse | None:
        match = request.resolver_match
        if request.method != "POST" or match is None or match.view_name not in LOGIN_VIEWS:
            return None
        if not settings.RATELIMIT_ENABLE:
            return None
        wait = 0
        for key in (_by_ip, _by_username):
            usage = get_usage(
                request, group=GROUP, key=key, rate=settings.RATELIMIT_LOGINS, increment=True
            )
            if usage is None:
                logger.warning("rate limit counters unavailable (Redis down?): logins unlimited")
                return None
            if usage["should_limit"]:
                wait = max(wait, 1, int(usage["time_left"]))
        if not wait:
            return None
        response = render(request, "too_many_logins.html", {"retry_after": wait}, status=429)
        response["Retry-After"] = str(wait)
        return response
