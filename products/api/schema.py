"""OpenAPI details drf-spectacular cannot infer from our permission class and serializers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import SAFE_METHODS
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from products.api.serializers import ProductUpdateSerializer, StrictInputSerializer

# Every operation may answer 429 and 503 (views.EVERY_OPERATION), both with Retry-After.
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    required=True,
    response=[429, 503],
    description="Seconds to wait before trying again.",
)


class ProductAutoSchema(AutoSchema):
    def get_override_parameters(self) -> list[Any]:
        return [*super().get_override_parameters(), RETRY_AFTER]

    def get_auth(self) -> list[Any]:
        # Reads are public (DjangoModelPermissionsOrAnonReadOnly): no security requirement.
        # Credentials on a read change nothing but which rate-limit bucket is used.
        if self.method in SAFE_METHODS:
            return [{}]
        return super().get_auth()

    def _map_serializer(
        self, serializer: Any, direction: str, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_serializer(serializer, direction, bypass_extensions)
        # Our input serializers refuse unknown keys with a 400 naming them: say so.
        if direction == "request" and isinstance(serializer, StrictInputSerializer):
            schema["additionalProperties"] = False
        # A PATCH must set something (ProductUpdateSerializer.validate).
        if isinstance(serializer, ProductUpdateSerializer) and serializer.partial:
            schema["minProperties"] = 1
        return schema


Endpoint = tuple[str, str, str, Any]


def without_slash_twins(endpoints: list[Endpoint]) -> list[Endpoint]:
    """SPECTACULAR_SETTINGS["PREPROCESSING_HOOKS"]: each operation once, at its bare path.

    Every route also answers with a trailing slash (products/api/urls.py), through the same
    view: one view, so that the browsable API's breadcrumbs do not name it twice.
    """
    views = {(path, method): view for path, _, method, view in endpoints}
    return [
        (path, regex, method, view)
        for path, regex, method, view in endpoints
        if not (path.endswith("/") and views.get((path[:-1], method)) is view)
    ]


class JSONErrors:
    """Errors in the API's JSON, as under every /api/ path, whatever the view renders its 200
    in: a 405, a 404 for an unknown `format`, a 406 for an Accept it has no renderer for."""

    def handle_exception(self, exc: Exception) -> Response:
        response: Response = super().handle_exception(exc)  # type: ignore[misc]
        self.request.accepted_renderer = JSONRenderer()  # type: ignore[attr-defined]
        self.request.accepted_media_type = JSONRenderer.media_type  # type: ignore[attr-defined]
        return response


class SwaggerView(JSONErrors, SpectacularSwaggerSplitView):
    """The Swagger page. It answers GET and HEAD: DRF answered OPTIONS (its metadata) through
    the page's template renderer, which has no template for it, a 500. Its errors (a 405 for
    any other method) are JSON (JSONErrors), not that renderer's plain-text "405 Method Not
    Allowed" labelled text/html. Its settings script is served by the page's own URL
    (`?script`), not inline, which the Content-Security-Policy would not run."""

    http_method_names = ["get", "head"]

    @extend_schema(exclude=True)  # as the page's own get: not an operation of the API
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response: Response = super().get(request, *args, **kwargs)
        if request.GET.get("script") is not None:
            # The script holds the visitor's CSRF token: another site's <script src> of it
            # is refused by the browser, not left to SameSite cookies alone.
            response["Cross-Origin-Resource-Policy"] = "same-origin"
        return response


class SchemaView(JSONErrors, SpectacularAPIView):
    """The OpenAPI document (YAML, or JSON with `?format=json`); its errors are JSON, not YAML."""
