"""A Content-Security-Policy on the HTML pages: the admin, the browsable API, the Swagger page,
the logins and the error pages.

The pages load only the project's own static files (Swagger UI's from drf-spectacular-sidecar),
and none of them runs an inline script or event handler (tests/inventory_project/test_csp.py
holds them to it), so the policy can refuse both: a script injected into a page through stored
data would not run. Inline styles stay allowed: DRF's and the logins' templates use them, and
they run nothing.

Only HTML answers carry it. A JSON answer runs nothing in a browser (nosniff keeps it from
being read as anything else), and the cached product answers, written ahead of Django
(products/api/fast_path.py), stay as they are. Django 6.0 brings a middleware of its own
(django.middleware.csp), which this one can give way to.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class ContentSecurityPolicyMiddleware:
    """Adds settings.CONTENT_SECURITY_POLICY to the HTML answers; not with DEBUG on, whose
    error pages (Django 5.2's) run inline scripts."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not settings.DEBUG and response.get("Content-Type", "").startswith("text/html"):
            response["Content-Security-Policy"] = settings.CONTENT_SECURITY_POLICY
        return response
