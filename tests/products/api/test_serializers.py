"""The output serializer's hand-written representation matches its declared fields; the input
serializers' shallow field copies behave as DRF's deep ones."""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import QueryDict
from django.test import override_settings
from django.utils import translation
from rest_framework import serializers
from rest_framework.utils.formatting import lazy_format

from products.api.serializers import (
    ListQuerySerializer,
    ProductCreateSerializer,
    ProductOutputSerializer,
    SearchQuerySerializer,
    StrictInputSerializer,
)
from products.models import Product
from tests.products.conftest import ProductFactory


def by_declared_fields(product: Product) -> dict[str, object]:
    """DRF's generic path over the same declared fields."""
    return dict(serializers.Serializer.to_representation(ProductOutputSerializer(), product))


@pytest.mark.parametrize(
    "price",
    [Decimal("0"), Decimal("0.5"), Decimal("1.5"), Decimal("19.99"), Decimal("9999999999.99")],
)
@pytest.mark.parametrize(
    "stamp",
    [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(2026, 6, 30, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=-7))),
    ],
)
def test_the_fast_representation_equals_the_declared_fields(price, stamp) -> None:
    product = Product(
        id=7, name="Steel bolt", price=price, stock_level=3, version=2, created_at=stamp
    )
    product.updated_at = stamp + timedelta(microseconds=250)
    assert ProductOutputSerializer(product).data == by_declared_fields(product)


@pytest.mark.parametrize("zone", ["UTC", "Etc/UTC"])
def test_utc_zones_render_as_drf_renders_them(zone) -> None:
    """A UTC zone skips the conversion of values already in UTC (as loaded from PostgreSQL)."""
    stamps = [
        datetime(2026, 7, 1, 12, 0, tzinfo=UTC),
        datetime(2026, 7, 1, 12, 0, 0, 5, tzinfo=UTC),
        datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ]
    with override_settings(TIME_ZONE=zone):
        for stamp in stamps:
            product = Product(
                id=1, name="x", price=Decimal("1"), stock_level=0, version=1, created_at=stamp
            )
            product.updated_at = stamp
            data = ProductOutputSerializer(product).data
            assert data == by_declared_fields(product)
            assert data["created_at"].endswith("Z")


@override_settings(TIME_ZONE="Europe/Berlin")
def test_the_fast_representation_follows_the_current_time_zone_as_drf_does() -> None:
    stamp = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    product = Product(
        id=1, name="x", price=Decimal("1"), stock_level=0, version=1, created_at=stamp
    )
    product.updated_at = stamp
    data = ProductOutputSerializer(product).data
    assert data == by_declared_fields(product)
    assert data["created_at"] == "2026-07-01T14:00:00+02:00"


@override_settings(TIME_ZONE="Europe/Berlin")
def test_a_list_renders_each_product_as_the_declared_fields_do() -> None:
    stamp = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    products = [
        Product(id=n, name=f"p{n}", price=Decimal(n), stock_level=n, version=1, created_at=stamp)
        for n in (1, 2, 3)
    ]
    for product in products:
        product.updated_at = stamp + timedelta(days=product.id)
    assert ProductOutputSerializer(products, many=True).data == [
        by_declared_fields(product) for product in products
    ]


@pytest.mark.django_db
def test_a_manager_renders_as_the_list_of_its_products() -> None:
    """As DRF's ListSerializer takes one (a related manager, when nested)."""
    products = [ProductFactory(), ProductFactory()]
    data = ProductOutputSerializer(Product.objects, many=True).data
    assert sorted(data, key=lambda item: item["id"]) == [
        by_declared_fields(product) for product in products
    ]


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def test_strict_input_serializers_declare_plain_fields_only() -> None:
    """StrictInputSerializer copies its fields shallowly: a field with parts of its own (a nested
    serializer, a child field) would share them between serializers."""
    subclasses = _subclasses(StrictInputSerializer)
    assert len(subclasses) >= 4
    for serializer_class in subclasses:
        for name, field in serializer_class._declared_fields.items():
            assert not isinstance(field, serializers.BaseSerializer), (serializer_class, name)
            assert not hasattr(field, "child"), (serializer_class, name)


def test_each_serializer_binds_copies_of_its_own() -> None:
    first, second = SearchQuerySerializer(data={}), SearchQuerySerializer(data={})
    declared = SearchQuerySerializer._declared_fields["min_price"]
    assert first.fields["min_price"] is not declared
    assert first.fields["min_price"] is not second.fields["min_price"]
    assert first.fields["min_price"].parent is first
    assert first.fields["min_price"].validators is declared.validators  # shared, never changed


def test_copies_validate_as_drfs_deep_copies_do() -> None:
    """The same validated data and errors as with DRF's own get_fields, request after request."""

    class DeepCopied(SearchQuerySerializer):
        def get_fields(self):  # DRF's: deep copies
            return serializers.Serializer.get_fields(self)

    cases = [
        {"name": "steel", "min_price": "100", "max_price": "200.5"},
        {"name": "x", "min_price": "-1", "limit": "0"},
        {"min_price": "3", "max_price": "2"},
        {"page": "2", "after_id": "5", "name": "a"},
        {"name": "a" * 300, "limit": "abc", "nope": "1"},
        {},
    ]
    for data in cases * 2:
        ours, drf = SearchQuerySerializer(data=data), DeepCopied(data=data)
        assert ours.is_valid() == drf.is_valid(), data
        assert ours.errors == drf.errors, data
        if not ours.errors:
            assert ours.validated_data == drf.validated_data, data


def _messages(serializer_class, data) -> dict[str, list[str]]:
    serializer = serializer_class(data=data)
    serializer.is_valid()
    return {
        name: [str(message) for message in messages] for name, messages in serializer.errors.items()
    }


def test_messages_follow_the_active_language_every_time() -> None:
    """The fields' shared validators render their messages anew in each language (DRF's own
    lazy messages keep the first language that renders them)."""
    query = QueryDict("limit=500")
    body = {"name": "x" * 300, "price": "1.00", "stock_level": -1}
    english = _messages(ListQuerySerializer, query), _messages(ProductCreateSerializer, body)
    for language in ("fr", "de"):
        with translation.override(language):
            other = _messages(ListQuerySerializer, query), _messages(ProductCreateSerializer, body)
        assert other != english
    assert (
        _messages(ListQuerySerializer, query),
        _messages(ProductCreateSerializer, body),
    ) == english
    assert english[0] == {"limit": ["Ensure this value is less than or equal to 100."]}


def test_no_shared_validator_keeps_a_message_rendered_once() -> None:
    for serializer_class in _subclasses(StrictInputSerializer):
        for field in serializer_class._declared_fields.values():
            for validator in field.validators:
                assert not isinstance(getattr(validator, "message", None), lazy_format)


def test_a_field_whose_message_was_rendered_before_its_class_is_refused() -> None:
    """Rendered once, a DRF message keeps that language for good (and its first render is not
    thread-safe): a serializer given such a field, one shared with another serializer, fails
    as it is defined rather than in production."""
    field = serializers.IntegerField(max_value=5)
    str(field.validators[0].message)  # rendered, as when another serializer used the field
    with pytest.raises(ImproperlyConfigured, match="rendered before the class was defined"):
        types.new_class("Shared", (StrictInputSerializer,), exec_body=lambda ns: ns.update(n=field))


def test_a_name_holding_a_lone_surrogate_is_refused() -> None:
    """The JSON parser refuses one first; the field holds to it for any other caller, since
    such a name fails only later, when the answer naming it is encoded."""
    serializer = ProductCreateSerializer(
        data={"name": "Lamp \ud800", "price": "1.00", "stock_level": 1}
    )
    assert not serializer.is_valid()
    assert serializer.errors == {"name": ["Not a valid string."]}


@pytest.mark.parametrize("field", ["price", "stock_level"])
@pytest.mark.parametrize("number", [Decimal("Infinity"), Decimal("-Infinity"), Decimal("NaN")])
def test_a_number_that_is_not_finite_is_refused_not_a_crash(field, number) -> None:
    """The JSON parser refuses NaN and Infinity first; the fields hold to it for any other
    caller (int() of an infinity, DRF's digit count of one, raised)."""
    serializer = ProductCreateSerializer(
        data={"name": "Lamp", "price": "1.00", "stock_level": 1, field: number}
    )
    assert not serializer.is_valid()
    assert list(serializer.errors) == [field]
