"""The project's URLs: `/` (a redirect to the API), the probes (`/healthz`, `/readyz`), the
admin, the API under `/api/` with its schema and Swagger page, the browsable API's login and
logout (`/api-auth/`), and the handlers that answer Django's own errors in the API's JSON shape
under `/api/`."""

from typing import cast

from django.contrib import admin
from django.urls import include, path, re_path, reverse_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView

from inventory_project import health
from products.api import errors
from products.api import schema as api_schema
from products.api.schema import SwaggerView
from products.api.throttling import CountsRefusals, ProductRateThrottle

# The admin's "View site" and the browsable API's login without ?next= (LOGIN_REDIRECT_URL)
# lead to the API's list, by its route name as the redirect of / below, not to a 404.
# Lazy (the URLconf is loading), and rendered as text like any str.
admin.site.site_url = cast(str, reverse_lazy("products:list"))
swagger_ui = SwaggerView.as_view(url_name="schema")


class SchemaView(CountsRefusals, api_schema.SchemaView):
    # Built at every request (about 30 KB): it counts as a read against the limit, refused
    # requests (a made-up token) too.
    throttle_classes = [ProductRateThrottle]


schema = SchemaView.as_view()

urlpatterns = [
    # Someone who opens the server's address lands on the API, not on a 404.
    path("", RedirectView.as_view(pattern_name="products:list")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/schema/", schema, name="schema"),
    path("api/docs/", swagger_ui, name="swagger-ui"),
    # Without the trailing slash too, as every API route.
    path("api/schema", schema),
    path("api/docs", swagger_ui),
    path("api/", include("products.api.urls")),
    # The browsable API's "Log in" and "Log out": a session for its forms (writes need CSRF).
    path("api-auth/", include("rest_framework.urls")),
    # Unknown /api/ URLs get the JSON error shape even with DEBUG on, where Django would
    # otherwise answer with its HTML debug page instead of calling handler404. CSRF-exempt (it
    # changes nothing): a PUT to an unknown URL is a 404, not the CSRF check's HTML 403.
    re_path(r"^api/", csrf_exempt(errors.handler404)),
]

# Django's own errors answer in the API's JSON shape for /api/ paths, and as usual elsewhere.
handler400 = "products.api.errors.handler400"
handler403 = "products.api.errors.handler403"
handler404 = "products.api.errors.handler404"
handler500 = "products.api.errors.handler500"
