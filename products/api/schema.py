"""OpenAPI details drf-spectacular cannot infer from our permission class and serializers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework.permissions import SAFE_METHODS

from products.api.serializers import StrictInputSerializer


class ProductAutoSchema(AutoSchema):
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
        return schema
