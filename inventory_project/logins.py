"""Login attempts are rate limited, per client IP and per username; so are password changes.

The admin's login and the browsable API's (`api-auth/login/`) check a password on every POST:
unlimited, they let a client guess passwords as fast as the server hashes them, and each guess
costs the server a password hash (hundreds of milliseconds of CPU with Django's default
hasher). Two counters, both at RATELIMIT_LOGINS, on django-ratelimit's counters in the shared
Redis cache:

- per client IP (an IPv6 client is its /64), every login POST (one client guessing many
  accounts);
- per username, the failed logins only (many clients guessing one account), so a user's own
  logins never count. The username is read as the login form reads it (NFKC, which makes
  a full-width `b` in `boss` log in as `boss`), and case-folded.

The admin's "Change password" form checks the signed-in user's password on every POST too:
unlimited, whoever holds a session (a stolen cookie, a screen left unlocked) could guess the
password behind it, which outlasts the session and opens the account wherever else it is used.
Its POSTs count against the same client-IP counter, and against a counter of the account's own
(every POST: a user changes their password once, not ten times a minute).

Over any limit the answer is a 429 page with Retry-After, before the password is checked,
and a POST refused for its IP adds nothing to the username's count. The price of the username
limit: whoever fails on purpose can keep that username from logging in for as long as they keep
failing, and one window after; its API tokens keep working. With Redis down, logins are not
limited and the outage is logged, as for the API's limits.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from inventory_project import logs
from products.api.throttling import client_ip, counted_usage

logger = logging.getLogger(__name__)

LOGIN_VIEWS = frozenset({"admin:login", "rest_framework:login"})
# Views that check the signed-in user's own password on every POST.
PASSWORD_CHANGE_VIEWS = frozenset({"admin:password_change"})
IP_GROUP = "logins:ip"
FAILURES_GROUP = "logins:failures"
CHANGE_FORM_GROUP = "logins:password_changes"


def username_key(username: object) -> str:
    return "user:" + unicodedata.normalize("NFKC", str(username)).strip().casefold()[:150]


def _by_ip(group: str, request: HttpRequest) -> str:
    return f"ip:{client_ip(request)}"


_UNCOUNTED = logs.Every()


def _usage(
    request: HttpRequest, group: str, key: Callable[[str, HttpRequest], str], increment: bool
) -> dict[str, Any] | None:
    usage = counted_usage(
        request, group=group, key=key, rate=settings.RATELIMIT_LOGINS, increment=increment
    )
    if usage is None and settings.RATELIMIT_ENABLE:
        _UNCOUNTED.warning(
            logger, "rate limit counters unavailable (Redis down?): logins unlimited"
        )
    return usage


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
        if request.method != "POST" or match is None:
            return None
        if match.view_name in PASSWORD_CHANGE_VIEWS:
            return _password_change_limited(request)
        if match.view_name not in LOGIN_VIEWS:
            return None
        by_ip = _usage(request, IP_GROUP, _by_ip, increment=True)
        if by_ip is not None and by_ip["should_limit"]:
            return _too_many(request, by_ip)
        failures = _failures(request, request.POST.get("username", ""), increment=False)
        # Not incremented here: `count` is the failures so far, and the limit-th was the last.
        if failures is not None and failures["count"] >= failures["limit"]:
            return _too_many(request, failures)
        return None


def _password_change_limited(request: HttpRequest) -> HttpResponse | None:
    """The 429 for a password change POST over the client's or the account's limit, or None.

    Only a signed-in user's POST checks a password (the admin sends anyone else to its login
    page); it is counted by client IP, with the logins, and by account."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    for group, key in (
        (IP_GROUP, _by_ip),
        (CHANGE_FORM_GROUP, lambda group, request: f"user:{user.pk}"),
    ):
        usage = _usage(request, group, key, increment=True)
        if usage is not None and usage["should_limit"]:
            return _too_many(request, usage, attempts="password")
    return None


def _too_many(request: HttpRequest, usage: dict[str, Any], attempts: str = "login") -> HttpResponse:
    wait = max(1, int(usage["time_left"]))
    context = {"retry_after": wait, "attempts": attempts}
    response = render(request, "too_many_logins.html", context, status=429)
    response["Retry-After"] = str(wait)
    return response


def count_login_failure(
    sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    """user_login_failed (connected in apps.py): count a failure against its username, which
    the form has cleaned (NFKC) already."""
    if request is None or "username" not in credentials:
        return
    _failures(request, credentials["username"], increment=True)


def _failures(request: HttpRequest, username: object, *, increment: bool) -> dict[str, Any] | None:
    """The failed-logins counter of this username."""
    key = username_key(username)
    return _usage(request, FAILURES_GROUP, lambda group, request: key, increment=increment)
