"""OpenAPI details drf-spectacular cannot infer from our permission class."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework.permissions import SAFE_METHODS


class ProductAutoSchema(AutoSchema):
    def get_auth(self) -> list[Any]:
        # Reads are public (DjangoModelPermissionsOrAnonReadOnly): no security requirement.
        # Credentials on a read change nothing but which rate-limit bucket is used.
        if self.method in SAFE_METHODS:
            return [{}]
        return super().get_auth()
