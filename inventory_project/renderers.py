"""DRF's browsable API, with forms that follow what the last request did."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import renderers
from rest_framework.request import Request, override_method

if TYPE_CHECKING:  # DRF's settings import this module while rest_framework.views loads
    from rest_framework.views import APIView


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF's, except that an answer's own serializer is never reused as a form.

    DRF reuses the serializer of the answer's data as the form of the method just used. After a
    successful write that is the output serializer: the PUT form after a PUT, and the POST form
    after a create, offered every output field (id, version, timestamps), and sending one back
    was refused as unknown fields. Here the form is built as after a read: for the product as it
    now is. A serializer that failed validation is still reused (the error handler keeps it on
    the error body), so after a 400 the form keeps what was sent, each error beside its field.
    """

    def get_rendered_html_form(
        self, data: Any, view: APIView, method: str, request: Request
    ) -> Any:
        serializer = getattr(data, "serializer", None)
        if serializer is not None and request.method == method and not _failed(serializer):
            with override_method(view, request, "GET") as read:
                return super().get_rendered_html_form(data, view, method, read)
        return super().get_rendered_html_form(data, view, method, request)


def _failed(serializer: Any) -> bool:
    return bool(getattr(serializer, "_errors", None))
