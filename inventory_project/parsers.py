"""The API's parsers."""

from __future__ import annotations

import codecs
from typing import Any

from django.conf import settings
from django.http import QueryDict
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

from products.api.serializers import NOT_UTF8, ensure_utf8


class JSONParser(parsers.JSONParser):
    """DRF's, except that JSON nested too deeply for Python's json module is a 400, not a 500."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc


class FormParser(parsers.FormParser):
    """DRF's, except that a field that is not UTF-8 is a 400 naming it.

    Django decodes URL-encoded bodies with errors="replace": a name sent as `%FF%FE` was
    stored as two U+FFFD with a 201.
    """

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        body = stream.read()
        if _is_utf8(encoding):
            ensure_utf8(body)
        return QueryDict(body, encoding=encoding)


class MultiPartParser(parsers.MultiPartParser):
    """DRF's, except that a field holding U+FFFD is a 400 naming it.

    Django's multipart parser, too, decodes fields with errors="replace", and keeps no raw
    bytes to check. A form typed in a browser is sent as UTF-8 and does not carry U+FFFD; a
    name that really holds one can be sent as JSON or URL-encoded.
    """

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        bad = {
            name: [NOT_UTF8]
            for name, values in parsed.data.lists()
            if any("\ufffd" in value for value in values)
        }
        if bad:
            raise ValidationError(bad)
        return parsed


def _is_utf8(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False
