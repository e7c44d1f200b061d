"""Input serializers (strict: unknown fields and wrong JSON types are 400s) and output ones."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any, cast
from urllib.parse import unquote_to_bytes

from django.core.exceptions import ImproperlyConfigured
from django.db.models.manager import BaseManager
from django.http import QueryDict
from django.utils import timezone
from django.utils.text import format_lazy
from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.utils.formatting import lazy_format

from products.models import (
    NAME_CONTROL_CHARACTERS,
    NAME_CONTROL_CHARACTERS_PATTERN,
    NAME_MAX_LENGTH,
    PRICE_DECIMAL_PLACES,
    PRICE_MAX_DIGITS,
    STOCK_MAX,
)

BIGINT_MAX = 9_223_372_036_854_775_807
PRICE_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
# Form posts from the browsable API carry this; it is not a product field.
IGNORED_FORM_KEYS = frozenset({"csrfmiddlewaretoken"})
# ASCII digits only: `\d` and int() also take other scripts' digits (Arabic-Indic, full-width).
# A minus is let through so that a negative number gets the field's minimum as its error.
_DIGITS = re.compile(r"^-?[0-9]+$")
# A decimal as a string: ASCII digits, an optional sign and fraction. Decimal() would also take
# other scripts' digits, underscores ("1_0"), exponents ("1E+1") and a bare fraction (".5").
_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


NOT_UTF8 = "Not valid UTF-8."


def ensure_utf8(encoded: bytes, names: Collection[str] | None = None) -> None:
    """Raise a ValidationError naming each field of a URL-encoded string (a query string or a
    form body) whose name or value is not UTF-8 once percent-decoded; only `names` if given."""
    if b"%" not in encoded and encoded.isascii():
        return  # the common case
    bad: dict[str, list[str]] = {}
    for pair in encoded.split(b"&"):
        name, _, value = (
            unquote_to_bytes(part.replace(b"+", b" ")) for part in pair.partition(b"=")
        )
        try:
            name.decode("utf-8")
            value.decode("utf-8")
        except UnicodeDecodeError:
            label = name.decode("utf-8", errors="replace")
            if names is None or label in names:
                bad[label] = [NOT_UTF8]
    if bad:
        raise serializers.ValidationError(bad)


def _from_form(field: serializers.Field) -> bool:
    return isinstance(getattr(field.root, "initial_data", None), QueryDict)


class StrictIntegerField(serializers.IntegerField):
    """An integer: JSON booleans, fractions and numeric strings in JSON are rejected.

    Strings of digits are accepted where every value is a string anyway: query parameters and
    form posts.
    """

    default_error_messages = {"invalid": "A valid integer is required."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, str):
            if not _from_form(self) or not _DIGITS.match(data.strip()):
                self.fail("invalid")
        elif isinstance(data, Decimal):  # a JSON number written with a fraction or exponent
            # 1e3 and 7.0 are integers; 7.0000000000000001 and 1e-400 are not.
            if not data.is_finite() or data != data.to_integral_value():
                self.fail("invalid")
            # Past 20 digits, a stand-in of the same sign gets the range's message, before
            # int() builds a number of a billion digits (1e999999999).
            data = int(data) if data.adjusted() < 20 else (10**20 if data > 0 else -(10**20))
        elif not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


# No example: Swagger UI fills a parameter with its example, and both price bounds shared one.
@extend_schema_field({"type": "string", "pattern": PRICE_PATTERN})
class PlainDecimalField(serializers.DecimalField):
    """A decimal whose string form is written as a price is (see _DECIMAL)."""

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, str) and not _DECIMAL.match(data.strip()):
            self.fail("invalid")
        return super().to_internal_value(data)

    def validate_precision(self, value: Decimal) -> Decimal:
        """DRF's, except that too many decimal places are named first: 0.30000000000000004 is
        refused for its decimal places, not for its count of digits."""
        exponent = value.as_tuple().exponent
        places = self.decimal_places
        if isinstance(exponent, int) and places is not None and -exponent > places:
            self.fail("max_decimal_places", max_decimal_places=places)
        return super().validate_precision(value)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "pattern": PRICE_PATTERN, "example": "19.99"},
            {"type": "number", "minimum": 0, "maximum": 9999999999.99, "example": 19.99},
        ],
        "description": "Non-negative, at most 10 integer digits and 2 decimal places.",
    }
)
class PriceField(PlainDecimalField):
    """A price as a JSON number or a plain decimal string; never a boolean."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            max_digits=PRICE_MAX_DIGITS,
            decimal_places=PRICE_DECIMAL_PLACES,
            min_value=Decimal("0"),
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, str | int | float | Decimal):
            self.fail("invalid")
        if isinstance(data, int):
            # As a Decimal, a long one gets the digits' message (DRF's text-length check said
            # "String value too large" from 1,001 digits).
            data = Decimal(data)
        if isinstance(data, Decimal) and data.is_finite():
            # A JSON number is its value: 19.990 is 19.99. (A string keeps its form, as ever.)
            # Its precision is checked first: DRF's length limit on the number's text would
            # name a long fraction "String value too large".
            data = self.validate_precision(_without_trailing_zeros(data))
        value = super().to_internal_value(data)
        # -0 would be answered as "-0.00" and stored (PostgreSQL has no negative zero) as 0.
        return abs(value) if value.is_zero() else value


def _without_trailing_zeros(value: Decimal) -> Decimal:
    """The same number without the zeros that end its fraction; exact, unlike normalize(),
    which rounds to the context's 28 digits."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return value
    zeros = len(digits) - len(bytes(digits).rstrip(b"\0"))
    strip = min(zeros, -exponent)
    if not strip:
        return value
    return Decimal((sign, digits[: len(digits) - strip] or (0,), exponent + strip))


class StrictCharField(serializers.CharField):
    """A string: numbers are not silently turned into names; NUL and lone surrogates refused."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictInputSerializer(serializers.Serializer):
    """Unknown keys are an error naming them: a typo must not be silently ignored."""

    # Every serializer binds shallow copies of the declared fields (get_fields), so what the
    # copies share must be safe to share between threads and languages. Subclasses declare
    # plain fields only (no nested serializer, no child field: a test holds them to it), whose
    # state is set in __init__ and only read after it, except:
    # - DRF's min/max messages (`lazy_format`) render once, in the language active then, and
    #   their first render is not thread-safe: made Django lazy strings here, rendered anew
    #   in the active language each time;
    # - a field's __dict__, which CPython 3.11 builds on first access: built here, in the one
    #   thread that defines the class (concurrent first accesses crashed the interpreter in a
    #   stress test).

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, field in cls._declared_fields.items():
            vars(field)
            for validator in field.validators:
                message = getattr(validator, "message", None)
                if isinstance(message, lazy_format):
                    if message.result is not None:
                        raise ImproperlyConfigured(
                            f"{cls.__name__}.{name}: a validator message was rendered before the"
                            " class was defined (a field shared with another serializer?)"
                        )
                    # format_string is itself lazy (a translation): kept as it is.
                    template = cast(str, message.format_string)
                    lazy = format_lazy(template, *message.args, **message.kwargs)
                    setattr(validator, "message", lazy)  # noqa: B010 (any validator type)

    def get_fields(self) -> dict[str, serializers.Field]:
        """Shallow copies of the declared fields, which `fields` then binds to this serializer.

        DRF deep-copies them: it builds every field again from its arguments, about 20 us a
        field, half of the time a search's query parameters take to validate. Binding sets
        attributes of the copy's own; what copies share is made safe in __init_subclass__.
        """
        return {name: _shallow_copy(field) for name, field in self._declared_fields.items()}

    def to_internal_value(self, data: Any) -> Any:
        unknown: dict[str, list[str]] = {}
        if isinstance(data, Mapping):
            names = sorted(set(data) - set(self.fields) - IGNORED_FORM_KEYS)
            unknown = {name: ["Unknown field."] for name in names}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **unknown}) from exc
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


def _shallow_copy(field: serializers.Field) -> serializers.Field:
    """copy.copy(field), without the copy module's generic path (a third of the time)."""
    twin = object.__new__(type(field))
    twin.__dict__.update(field.__dict__)
    return twin


# What the check refuses, as the schema says it: `not` a match anywhere (no anchors, which
# Python's `$` and JavaScript's read differently).
@extend_schema_field(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": NAME_MAX_LENGTH,
        "not": {"pattern": NAME_CONTROL_CHARACTERS_PATTERN},
        "description": "One line: no control characters (line breaks, tabs).",
    }
)
class ProductNameField(StrictCharField):
    """The model's check of a name, here so that a bad name is reported with the other bad
    fields (the service's full_clean saw it only once they were valid), and before the
    surrounding whitespace is trimmed: "Hammer\n" was stored as "Hammer", though the schema
    says a line break is refused. Called, not listed as a validator: drf-spectacular would
    publish its regex (the characters refused) as the pattern a name must match."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=NAME_MAX_LENGTH, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            NAME_CONTROL_CHARACTERS(data)
        return super().to_internal_value(data)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A product",
            value={"name": "Steel Hammer", "price": "12.50", "stock_level": 40},
            request_only=True,
        )
    ]
)
class ProductCreateSerializer(StrictInputSerializer):
    name = ProductNameField()
    price = PriceField()
    stock_level = StrictIntegerField(min_value=0, max_value=STOCK_MAX)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "New price and stock",
            value={"price": "14.00", "stock_level": 35},
            request_only=True,
        )
    ]
)
class ProductUpdateSerializer(StrictInputSerializer):
    """PUT needs both fields; PATCH (partial=True) at least one."""

    price = PriceField()
    stock_level = StrictIntegerField(min_value=0, max_value=STOCK_MAX)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # An empty PATCH would change nothing and still bump the version, failing other
        # clients' If-Match; more likely its body was lost on the way.
        if not attrs:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give at least one of price, stock_level."]}
            )
        return attrs


class ProductListOutputSerializer(serializers.ListSerializer):
    """Products rendered as ProductOutputSerializer renders one, the time zone looked up once."""

    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        items = data.all() if isinstance(data, BaseManager) else data
        zone = _output_zone()
        return [_represent(item, zone) for item in items]


# A change to what these produce is a new shape of the JSON: bump products.cache.REPRESENTATION.
class ProductOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    price = serializers.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES
    )
    stock_level = serializers.IntegerField()
    version = serializers.IntegerField(help_text="Bumped on every write; the ETag carries it.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        list_serializer_class = ProductListOutputSerializer

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return _represent(instance, _output_zone())


def _represent(instance: Any, zone: tzinfo) -> dict[str, Any]:
    """What ProductOutputSerializer's declared fields produce, without DRF's per-field machinery.

    A page renders 20 of these, and the generic path (field lookup, deepcopy, per-field
    timezone and decimal contexts) was a third of an uncached list request. The declared
    fields still document the shape (OpenAPI); a test holds both to the same output.
    """
    return {
        "id": instance.id,
        "name": instance.name,
        "price": f"{instance.price.quantize(_CENT):f}",
        "stock_level": instance.stock_level,
        "version": instance.version,
        "created_at": _iso(instance.created_at, zone),
        "updated_at": _iso(instance.updated_at, zone),
    }


_CENT = Decimal(1).scaleb(-PRICE_DECIMAL_PLACES)


# Zones whose every time reads as in datetime.UTC (offset +00:00, no transitions).
_UTC_KEYS = frozenset({"UTC", "Etc/UTC"})


def _output_zone() -> tzinfo:
    """The current time zone; datetime.UTC for a UTC ZoneInfo, which gives the same text."""
    zone = timezone.get_current_timezone()
    return UTC if getattr(zone, "key", None) in _UTC_KEYS else zone


def _iso(value: datetime, zone: tzinfo) -> str:
    # Values loaded from the database are in datetime.UTC already: no conversion.
    local = value if value.tzinfo is zone else value.astimezone(zone)
    text = local.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


GIVEN_TWICE_IN_QUERY = (
    "Given more than once in this query string: which one was meant is ambiguous."
)


class ListQuerySerializer(StrictInputSerializer):
    """page/limit paging, or keyset paging with after_id (the two do not mix)."""

    page = StrictIntegerField(
        required=False, min_value=1, max_value=2_147_483_647, help_text="1-based page number."
    )
    limit = StrictIntegerField(
        required=False, min_value=1, max_value=100, default=20, help_text="Page size, 1-100."
    )
    after_id = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=BIGINT_MAX,
        help_text="Keyset paging: products with id greater than this (cost independent of depth).",
    )

    def to_internal_value(self, data: Any) -> Any:
        # A QueryDict reads the last of a name given twice, where proxies and other frameworks
        # often read the first: refused, as in a JSON body or a form (inventory_project/parsers).
        if isinstance(data, QueryDict):
            twice = sorted(key for key in data if key in self.fields and len(data.getlist(key)) > 1)
            if twice:
                raise serializers.ValidationError({key: [GIVEN_TWICE_IN_QUERY] for key in twice})
        # Query strings may carry anything else (cache busters, tracking): only ours are read.
        if isinstance(data, Mapping):
            data = {key: data[key] for key in data if key in self.fields}
        return serializers.Serializer.to_internal_value(self, data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "after_id" in attrs and "page" in attrs:
            raise serializers.ValidationError({"page": ["Use either page or after_id, not both."]})
        return attrs


def _price_bound(help_text: str) -> serializers.DecimalField:
    """An optional price bound in a query string, held to the prices the model accepts."""
    return PlainDecimalField(
        required=False,
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        min_value=Decimal("0"),
        help_text=help_text,
    )


class SearchQuerySerializer(ListQuerySerializer):
    name = StrictCharField(
        required=False,
        max_length=NAME_MAX_LENGTH,
        trim_whitespace=False,
        help_text="Case-insensitive substring of the name.",
    )
    min_price = _price_bound("Inclusive lower bound.")
    max_price = _price_bound("Inclusive upper bound.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if not any(key in attrs for key in ("name", "min_price", "max_price")):
            raise serializers.ValidationError(
                {"name": ["Give at least one of name, min_price, max_price."]}
            )
        low, high = attrs.get("min_price"), attrs.get("max_price")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError(
                {"min_price": ["min_price must not be greater than max_price."]}
            )
        return attrs


class ProductPageSerializer(serializers.Serializer):
    """Either mode fills the same keys; those that do not apply are null."""

    count = serializers.IntegerField(
        allow_null=True, help_text="Matching products; null in keyset mode."
    )
    page = serializers.IntegerField(allow_null=True)
    limit = serializers.IntegerField()
    total_pages = serializers.IntegerField(allow_null=True)
    after_id = serializers.IntegerField(allow_null=True)
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ProductOutputSerializer(many=True)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    # The metaclass pops declared fields off the class, so this does not shadow `.fields`.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Per-field messages, on validation errors only.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
