"""The API's parsers."""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from decimal import Decimal
from typing import Any

from django.http import QueryDict
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.settings import api_settings
from rest_framework.utils.json import strict_constant

from products.api.serializers import NOT_UTF8, ensure_utf8

NOT_UNICODE = "Not valid Unicode: a lone surrogate escape (\\ud800 to \\udfff) is not a character."
GIVEN_TWICE = "Given more than once in this JSON object: which one was meant is ambiguous."
GIVEN_TWICE_IN_FORM = "Given more than once in this form: which one was meant is ambiguous."

# A lone surrogate can only come from an escape: raw text decoded as UTF-8 holds none.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_INT_DIGITS_MAX = 4000
_PARSE_CONSTANT = strict_constant if api_settings.STRICT_JSON else None


def load_json(text: str) -> Any:
    """A JSON body as the API reads it, for the parser and for `products.api.fast_writes`.

    - Numbers with a fraction or an exponent are Decimals: as binary floats, `1e-400` became 0
      and `7.0000000000000001` became 7 before any field could refuse them. So are integers of
      thousands of digits, which int() refuses with a message that names no field.
    - NaN and Infinity are refused (DRF's STRICT_JSON).
    - Text that is not Unicode (a lone surrogate escape, `"\\ud800"`) is a 400 naming the field
      that holds it: kept, it would fail later, when the answer naming it is encoded (a 500).
    - A name given twice in one object (`{"price": "1.00", "price": "9.00"}`) is a 400 naming
      it. Python's json keeps the last; other parsers on the way (a proxy, a gateway that
      checks bodies) may keep the first, so what was checked and what is stored could differ.

    Raises ValueError for malformed JSON, and ValidationError or ParseError for the rest.
    """
    data = json.loads(
        text,
        parse_constant=_PARSE_CONSTANT,
        parse_float=Decimal,
        parse_int=_integer,
        object_pairs_hook=_object,
    )
    if _SURROGATE_ESCAPE.search(text):
        _refuse_surrogates(data)
    return data


def _integer(text: str) -> int | Decimal:
    # int() refuses more than 4,300 digits (sys.set_int_max_str_digits) with a message that names
    # no field; as a Decimal, the field refuses it as out of range, naming itself.
    return int(text) if len(text) <= _INT_DIGITS_MAX else Decimal(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of the body; one name given twice is refused (see load_json)."""
    found = dict(pairs)
    if len(found) < len(pairs):
        counts = Counter(key for key, _ in pairs)
        twice = sorted(key for key, n in counts.items() if n > 1)
        raise ValidationError({_printable(key): [GIVEN_TWICE] for key in twice})
    return found


def _refuse_surrogates(data: Any) -> None:
    if not isinstance(data, dict):
        if _holds_surrogate(data):
            raise ParseError(f"JSON parse error - {NOT_UNICODE}")
        return
    bad = {
        _printable(key): [NOT_UNICODE]
        for key, value in data.items()
        if _holds_surrogate(key) or _holds_surrogate(value)
    }
    if bad:
        raise ValidationError(bad)


def _holds_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _printable(value) != value
    if isinstance(value, list):
        return any(_holds_surrogate(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_surrogate(k) or _holds_surrogate(v) for k, v in value.items())
    return False


def _printable(text: str) -> str:
    """The text, with each lone surrogate written as its escape (`\\ud800`)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class JSONParser(parsers.JSONParser):
    """DRF's, reading JSON with `load_json`; JSON nested too deeply for Python's json module is
    a 400, not a 500. (Django reads a charset it does not know as UTF-8, as JSON is.)"""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        encoding = _charset(parser_context)
        try:
            return load_json(stream.read().decode(encoding))
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


class FormParser(parsers.FormParser):
    """DRF's, except that a field that is not UTF-8, or given twice, is a 400 naming it.

    Django decodes URL-encoded bodies with errors="replace": a name sent as `%FF%FE` was
    stored as two U+FFFD with a 201.
    """

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        encoding = _charset(parser_context)
        body = stream.read()
        if _is_utf8(encoding):
            ensure_utf8(body)
        return _once_each(QueryDict(body, encoding=encoding))


class MultiPartParser(parsers.MultiPartParser):
    """DRF's, except that a field holding U+FFFD, or given twice, is a 400 naming it.

    Django's multipart parser, too, decodes fields with errors="replace", and keeps no raw
    bytes to check. A form typed in a browser is sent as UTF-8 and does not carry U+FFFD; a
    name that really holds one can be sent as JSON or URL-encoded.
    """

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        _once_each(parsed.data)
        bad = {
            name: [NOT_UTF8]
            for name, values in parsed.data.lists()
            if any("\ufffd" in value for value in values)
        }
        if bad:
            raise ValidationError(bad)
        return parsed


def _charset(parser_context: Any) -> str:
    """The body's charset, as DRF's own parsers take it (`get_encoding`): a 400 naming it unless
    it is a text encoding. Django keeps any codec Python knows, `rot13`, `hex` or `bz2_codec`
    among them, and decoding with one was a LookupError, a 500."""
    # The DRF type stubs lack it.
    return str(parsers.get_encoding(parser_context or {}))  # type: ignore[attr-defined]


def charset_refusal(charset: str) -> str | None:
    """The 400's message for a charset that is no text encoding, the parsers' (`_charset`)
    word for word; None for a text encoding. For the layers that refuse one before Django reads
    the request (inventory_project/request_body.py)."""
    try:
        _charset({"encoding": charset})
    except ParseError as exc:
        return str(exc.detail)
    return None


def _once_each(data: QueryDict) -> QueryDict:
    """The form's fields, each given once: as in JSON (load_json), a field given twice is a
    400 naming it (DRF took the last)."""
    twice = sorted(name for name, values in data.lists() if len(values) > 1)
    if twice:
        raise ValidationError({name: [GIVEN_TWICE_IN_FORM] for name in twice})
    return data


def _is_utf8(encoding: str) -> bool:
    # `encoding` passed _charset: a codec Python knows.
    return codecs.lookup(encoding).name == "utf-8"
