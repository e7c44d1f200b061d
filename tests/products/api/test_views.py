"""The products API over HTTP (Django's test client, real PostgreSQL and Redis)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import ProgrammingError
from django.test import override_settings
from rest_framework.test import APIClient

from inventory_project.parsers import GIVEN_TWICE, GIVEN_TWICE_IN_FORM
from products import cache, selectors
from products.models import NAME_MAX_LENGTH, STOCK_MAX, Product
from tests.processes import run_python
from tests.products.conftest import ProductFactory

pytestmark = pytest.mark.django_db


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


# --- detail --------------------------------------------------------------------------------


def test_get_product_returns_it_with_an_etag(anon, product) -> None:
    response = anon.get(f"/api/products/{product.id}")
    assert response.status_code == 200
    assert response.json() == {
        "id": product.id,
        "name": "Steel Hammer",
        "price": "12.50",
        "stock_level": 7,
        "version": 1,
        "created_at": response.json()["created_at"],
        "updated_at": response.json()["updated_at"],
    }
    assert response["ETag"] == f'"{product.id}-1-1"'


def test_options_describes_put_to_those_who_may_change_the_product(
    clerk, reader, anon, product
) -> None:
    """DRF's metadata asks the view for the object before it lists PUT's fields (get_object):
    a user who may change an existing product is shown them, anyone else, or a missing id,
    gets the description without them, never a 500 (an id past bigint included)."""
    response = clerk.options(f"/api/products/{product.pk}")
    assert response.status_code == 200
    assert set(response.json()["actions"]["PUT"]) == {"price", "stock_level"}
    for client, path in [
        (reader, f"/api/products/{product.pk}"),
        (anon, f"/api/products/{product.pk}"),
        (clerk, f"/api/products/{product.pk + 1}"),
        (clerk, "/api/products/9223372036854775808"),
    ]:
        response = client.options(path)
        assert response.status_code == 200, path
        assert "actions" not in response.json(), path


def test_get_product_with_trailing_slash_is_the_same(anon, product) -> None:
    response = anon.get(f"/api/products/{product.id}/")
    assert response.status_code == 200
    assert response.json()["id"] == product.id


def test_get_missing_product_is_404_in_the_error_shape(anon) -> None:
    response = anon.get("/api/products/999999")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_get_product_with_id_beyond_bigint_is_404(anon) -> None:
    response = anon.get("/api/products/99999999999999999999999")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_unknown_api_url_is_404_in_the_error_shape(anon) -> None:
    response = anon.get("/api/products/not-a-number")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_if_none_match_with_current_etag_is_304(anon, product) -> None:
    response = anon.get(f"/api/products/{product.id}", HTTP_IF_NONE_MATCH=f'"{product.id}-1-1"')
    assert response.status_code == 304
    assert response["ETag"] == f'"{product.id}-1-1"'


@pytest.mark.parametrize("cache_on", [True, False])
def test_if_none_match_star_on_a_read_of_an_existing_product_is_304(
    anon, product, settings, cache_on
) -> None:
    """RFC 9110, 13.1.2: `*` matches any current representation, from the view (a miss)
    and from the cache (the second read) alike."""
    settings.PRODUCT_CACHE_ENABLED = cache_on
    for _ in range(2):
        response = anon.get(f"/api/products/{product.id}", HTTP_IF_NONE_MATCH="*")
        assert response.status_code == 304
        assert response["ETag"] == product.etag


def test_if_none_match_with_old_etag_is_200(anon, product) -> None:
    Product.objects.filter(pk=product.pk).update(stock_level=3)
    response = anon.get(f"/api/products/{product.id}", HTTP_IF_NONE_MATCH=f'"{product.id}-1-1"')
    assert response.status_code == 200
    assert response["ETag"] == f'"{product.id}-2-1"'


@pytest.mark.parametrize(
    "path", ["/api/products/{id}", "/api/products", "/api/products/search?name=a"]
)
def test_a_read_whose_if_match_fails_is_412(anon, product, path: str) -> None:
    url = path.format(id=product.id)
    etag = anon.get(url)["ETag"]
    assert anon.get(url, HTTP_IF_MATCH=f"{etag}, *").status_code == 200
    response = anon.get(url, HTTP_IF_MATCH=f'"{product.id}-999-1"')
    assert response.status_code == 412
    assert error_of(response)["code"] == "precondition_failed"


def test_a_reads_412_varies_as_its_200_does(anon, product) -> None:
    url = f"/api/products/{product.id}"
    response = anon.get(url, HTTP_IF_MATCH='"nope"')
    assert response.status_code == 412
    assert response["Vary"] == anon.get(url)["Vary"]


def test_list_if_none_match_is_304_until_the_catalogue_changes(anon, product) -> None:
    etag = anon.get("/api/products")["ETag"]
    assert anon.get("/api/products", HTTP_IF_NONE_MATCH=etag).status_code == 304
    Product.objects.filter(pk=product.pk).update(stock_level=3)
    # A bulk update sends no signals: its caller invalidates (the listener does it for raw SQL).
    cache.invalidate([product.pk])
    assert anon.get("/api/products", HTTP_IF_NONE_MATCH=etag).status_code == 200


# --- list ----------------------------------------------------------------------------------


def test_list_defaults_to_page_1_of_20_in_id_order(anon) -> None:
    ProductFactory.create_batch(25)
    body = anon.get("/api/products").json()
    assert body["count"] == 25
    assert (body["page"], body["limit"], body["total_pages"]) == (1, 20, 2)
    assert body["previous"] is None
    assert body["next"].endswith("/api/products?page=2")
    ids = [item["id"] for item in body["results"]]
    assert ids == sorted(ids)
    assert len(ids) == 20


def test_list_last_page_has_the_rest_and_no_next(anon) -> None:
    ProductFactory.create_batch(25)
    body = anon.get("/api/products/?page=2&limit=20").json()
    assert len(body["results"]) == 5
    assert body["next"] is None
    assert body["previous"].endswith("/api/products/?limit=20")


def test_the_previous_link_of_a_later_page_names_the_page_before(anon) -> None:
    ProductFactory.create_batch(3)
    body = anon.get("/api/products?page=3&limit=1").json()
    assert body["previous"].endswith("/api/products?limit=1&page=2")


def test_list_page_past_the_end_is_404(anon) -> None:
    ProductFactory.create_batch(3)
    response = anon.get("/api/products?page=2&limit=3")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_list_of_empty_catalogue_is_an_empty_page_1(anon) -> None:
    body = anon.get("/api/products").json()
    assert (body["count"], body["total_pages"], body["results"]) == (0, 1, [])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=1.5", "page"),
        ("page=", "page"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("after_id=-1", "after_id"),
        ("page=2&after_id=5", "page"),
        # Past PostgreSQL's integer (the page) and bigint (an id).
        ("page=2147483648", "page"),
        ("after_id=9223372036854775808", "after_id"),
    ],
)
def test_list_bad_paging_parameter_is_400_naming_it(anon, query, field) -> None:
    response = anon.get(f"/api/products?{query}")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert field in error["fields"]


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/products", "page=2&page=1", "page"),
        ("/api/products", "limit=5&limit=7", "limit"),
        ("/api/products", "after_id=1&after_id=2", "after_id"),
        ("/api/products/search", "name=steel&name=hammer", "name"),
        ("/api/products/search", "name=a&max_price=1&max_price=1", "max_price"),
    ],
)
def test_a_parameter_given_twice_is_400_naming_it(anon, path, query, field) -> None:
    """A QueryDict reads the last one; a proxy or another framework may read the first."""
    response = anon.get(f"{path}?{query}&utm=1&utm=2")
    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {field}
    assert "more than once" in error_of(response)["fields"][field][0]


def test_list_limit_100_is_allowed(anon) -> None:
    assert anon.get("/api/products?limit=100").status_code == 200


def test_keyset_paging_after_the_largest_id_there_can_be_is_an_empty_page(anon) -> None:
    ProductFactory()
    response = anon.get("/api/products?after_id=9223372036854775807")
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_keyset_paging_walks_the_whole_catalogue(anon) -> None:
    created = [p.id for p in ProductFactory.create_batch(7)]
    seen: list[int] = []
    url = "/api/products?after_id=0&limit=3"
    while url:
        body = anon.get(url).json()
        assert body["count"] is None
        seen.extend(item["id"] for item in body["results"])
        url = body["next"]
    assert seen == created


def test_both_paging_modes_answer_every_key_of_the_page_the_other_s_null(anon) -> None:
    ProductFactory.create_batch(3)
    offset = anon.get("/api/products?limit=2").json()
    keyset = anon.get("/api/products?after_id=0&limit=2").json()
    keys = {"count", "page", "limit", "total_pages", "after_id", "next", "previous", "results"}
    assert set(offset) == set(keyset) == keys
    assert (offset["count"], offset["page"], offset["limit"], offset["after_id"]) == (3, 1, 2, None)
    assert (keyset["count"], keyset["page"], keyset["total_pages"]) == (None, None, None)
    assert (keyset["limit"], keyset["after_id"], keyset["previous"]) == (2, 0, None)


# --- create --------------------------------------------------------------------------------


def test_create_returns_201_with_location_and_etag(clerk) -> None:
    response = clerk.post(
        "/api/products",
        {"name": "Oak Shelf", "price": "19.90", "stock_level": 4},
        format="json",
    )
    assert response.status_code == 201, response.json()
    product = Product.objects.get(name="Oak Shelf")
    assert response["Location"] == f"/api/products/{product.id}"
    assert response["ETag"] == f'"{product.id}-1-1"'
    assert (product.price, product.stock_level) == (Decimal("19.90"), 4)


def test_create_accepts_a_json_number_price(clerk) -> None:
    response = clerk.post(
        "/api/products/", {"name": "Lamp", "price": 5.5, "stock_level": 0}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["price"] == "5.50"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "A", "price": "1.00", "stock_level": "ten"}, "stock_level"),
        ({"name": "A", "price": "1.00", "stock_level": True}, "stock_level"),
        ({"name": "A", "price": "1.00", "stock_level": 1.5}, "stock_level"),
        ({"name": "A", "price": "1.00", "stock_level": "5"}, "stock_level"),
        ({"name": "A", "price": "1.00", "stock_level": -1}, "stock_level"),
        ({"name": "A", "price": "1.00", "stock_level": 2**31}, "stock_level"),
        ({"name": "A", "price": "-0.01", "stock_level": 1}, "price"),
        ({"name": "A", "price": "1.001", "stock_level": 1}, "price"),
        ({"name": "A", "price": True, "stock_level": 1}, "price"),
        ({"name": "A", "price": "NaN", "stock_level": 1}, "price"),
        ({"name": "A", "price": "99999999999", "stock_level": 1}, "price"),
        ({"name": "x" * 256, "price": "1.00", "stock_level": 1}, "name"),
        ({"name": "", "price": "1.00", "stock_level": 1}, "name"),
        ({"name": "   ", "price": "1.00", "stock_level": 1}, "name"),
        ({"name": 42, "price": "1.00", "stock_level": 1}, "name"),
        ({"name": "nul\x00byte", "price": "1.00", "stock_level": 1}, "name"),
        ({"name": "two\nlines", "price": "1.00", "stock_level": 1}, "name"),
        ({"name": "a\ttab", "price": "1.00", "stock_level": 1}, "name"),
        ({"name": "two\x85lines", "price": "1.00", "stock_level": 1}, "name"),
        ({"name": "two\u2028lines", "price": "1.00", "stock_level": 1}, "name"),
        ({"name": "csi\x9b", "price": "1.00", "stock_level": 1}, "name"),
        ({"price": "1.00", "stock_level": 1}, "name"),
        ({"name": "A", "price": "1.00", "stock_level": 1, "stock": 3}, "stock"),
    ],
)
def test_create_with_bad_field_is_400_naming_it_and_writes_nothing(clerk, body, field) -> None:
    response = clerk.post("/api/products", body, format="json")
    assert response.status_code == 400
    assert field in error_of(response)["fields"]
    assert not Product.objects.exists()


def test_a_name_with_control_characters_is_reported_with_the_other_bad_fields(clerk) -> None:
    """`fields` named price and stock_level only: the name was checked once they were valid."""
    body = {"name": "a\tb", "price": "x", "stock_level": -1}
    fields = error_of(clerk.post("/api/products", body, format="json"))["fields"]
    assert set(fields) == {"name", "price", "stock_level"}
    assert fields["name"] == ["Names cannot contain control characters (line breaks, tabs)."]
    assert not Product.objects.exists()


@pytest.mark.parametrize("name", ["Hammer\n", "\tHammer", "Hammer\u2028"])
def test_a_line_break_at_either_end_of_a_name_is_refused_not_trimmed(clerk, name) -> None:
    """ "Hammer\n" was trimmed and stored as "Hammer", though the schema says it is refused."""
    body = {"name": name, "price": "1.00", "stock_level": 1}
    response = clerk.post("/api/products", body, format="json")
    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["name"]
    assert not Product.objects.exists()


def test_surrounding_spaces_are_still_trimmed(clerk) -> None:
    body = {"name": "  Hammer  ", "price": "1.00", "stock_level": 1}
    assert clerk.post("/api/products", body, format="json").json()["name"] == "Hammer"


def test_a_name_too_long_is_reported_with_the_other_bad_fields(clerk) -> None:
    body = {"name": "x" * 256, "price": "x", "stock_level": 1}
    fields = error_of(clerk.post("/api/products", body, format="json"))["fields"]
    assert set(fields) == {"name", "price"}
    assert not Product.objects.exists()


def test_a_name_of_the_longest_length_allowed_is_accepted(clerk) -> None:
    name = "x" * NAME_MAX_LENGTH
    body = {"name": name, "price": "1.00", "stock_level": 1}
    response = clerk.post("/api/products", body, format="json")
    assert response.status_code == 201
    assert response.json()["name"] == name


def write(client, method: str, product: Product, **fields):
    """A create (with a name) or an update of `product`, sending `fields` as JSON."""
    if method == "post":
        return client.post("/api/products", {"name": "Bolt", **fields}, format="json")
    return getattr(client, method)(f"/api/products/{product.id}", fields, format="json")


@pytest.mark.parametrize("stock_level", [0, STOCK_MAX])
@pytest.mark.parametrize("method", ["post", "put"])
def test_a_stock_level_at_either_end_of_its_range_is_accepted(
    clerk, product, method, stock_level
) -> None:
    response = write(clerk, method, product, price="1.00", stock_level=stock_level)
    assert response.status_code in {200, 201}, response.json()
    assert response.json()["stock_level"] == stock_level


@pytest.mark.parametrize("stock_level", [-1, STOCK_MAX + 1])
@pytest.mark.parametrize("method", ["post", "put"])
def test_a_stock_level_out_of_range_is_reported_with_the_other_bad_fields(
    clerk, product, method, stock_level
) -> None:
    """The model refuses it too, but only once every other field is valid: a client would
    mend the price and then learn of the stock level."""
    response = write(clerk, method, product, price="x", stock_level=stock_level)
    assert set(error_of(response)["fields"]) == {"price", "stock_level"}


def test_unknown_fields_are_reported_together_with_other_errors(clerk) -> None:
    body = {"name": "A", "price": "1.001", "stock_level": 1, "colour": "red"}
    fields = error_of(clerk.post("/api/products", body, format="json"))["fields"]
    assert set(fields) == {"price", "colour"}
    assert fields["colour"] == ["Unknown field."]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ('"price": 1e-400, "stock_level": 1', "price", "decimal places"),
        ('"price": 0.30000000000000004, "stock_level": 1', "price", "decimal places"),
        ('"price": 1.0000000000000000000000000000001, "stock_level": 1', "price", "decimal"),
        ('"price": 1e400, "stock_level": 1', "price", "digits"),
        ('"price": 1, "stock_level": 7.0000000000000001', "stock_level", "integer"),
        ('"price": 1, "stock_level": 1e-400', "stock_level", "integer"),
        ('"price": 1, "stock_level": 1e25', "stock_level", "less than or equal"),
        ('"price": 1, "stock_level": -1e20', "stock_level", "greater than or equal"),
        ('"price": 1, "stock_level": 1.55e1', "stock_level", "integer"),
        ('"price": 1.' + "1" * 1200 + ', "stock_level": 1', "price", "decimal places"),
    ],
)
def test_json_numbers_are_checked_as_written_not_as_floats(clerk, body, field, message) -> None:
    """As floats, 1e-400 was stored as 0.00 and 7.0000000000000001 as 7."""
    response = clerk.post(
        "/api/products", f'{{"name": "A", {body}}}', content_type="application/json"
    )
    assert response.status_code == 400
    assert message in " ".join(error_of(response)["fields"][field])
    assert not Product.objects.exists()


# In a process of its own, on a CPU-time limit: without the serializers' 20-digit guard, int()
# of 1e999999999 runs in C for hours holding the GIL, where no timeout of pytest's can stop it.
_HUGE_EXPONENT = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_CPU, (30, 30))
import django
django.setup()
from inventory_project.parsers import load_json
from products.api.serializers import ProductCreateSerializer
serializer = ProductCreateSerializer(data=load_json(sys.argv[1]))
print(json.dumps([serializer.is_valid(), serializer.errors]))
"""


@pytest.mark.parametrize("exponent", ["1e999999999", "-1e999999999"])
def test_a_huge_exponent_is_out_of_range_without_the_number_being_built(exponent) -> None:
    body = f'{{"name": "A", "price": 1, "stock_level": {exponent}}}'
    result = run_python(_HUGE_EXPONENT, body)  # exit -24 (SIGXCPU) at the CPU limit
    valid, errors = json.loads(result.stdout)
    assert not valid
    bound = "less than or equal" if exponent[0] != "-" else "greater than or equal"
    assert list(errors) == ["stock_level"]
    assert bound in errors["stock_level"][0]


@pytest.mark.parametrize("digits", [13, 2000, 5000])
def test_a_long_integer_price_gets_the_digits_message_whatever_its_length(clerk, digits) -> None:
    """From 1,001 digits DRF's text-length check said "String value too large"."""
    body = f'{{"name": "A", "price": {"9" * digits}, "stock_level": 1}}'
    response = clerk.post("/api/products", body, content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["fields"]["price"] == [
        "Ensure that there are no more than 12 digits in total."
    ]


def test_a_price_that_is_a_long_json_list_is_not_a_number(clerk) -> None:
    """Not "String value too large", DRF's message for a value whose text is that long."""
    body = {"name": "A", "price": [0] * 500, "stock_level": 1}
    response = clerk.post("/api/products", body, format="json")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"price": ["A valid number is required."]}


@pytest.mark.parametrize("field", ["price", "stock_level"])
def test_a_json_integer_of_thousands_of_digits_is_refused_naming_its_field(clerk, field) -> None:
    """int() refuses more than 4,300 digits: the 400 named no field and told the client to
    call sys.set_int_max_str_digits()."""
    values = {"price": '"1.00"', "stock_level": "1", field: "1" * 5001}
    body = f'{{"name": "A", "price": {values["price"]}, "stock_level": {values["stock_level"]}}}'
    response = clerk.post("/api/products", body, content_type="application/json")
    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {field}
    assert not Product.objects.exists()


def test_json_numbers_with_a_fraction_or_exponent_that_are_exact_are_taken(clerk) -> None:
    body = '{"name": "A", "price": 19.990, "stock_level": 1e3}'
    response = clerk.post("/api/products", body, content_type="application/json")
    assert response.status_code == 201
    assert (response.json()["price"], response.json()["stock_level"]) == ("19.99", 1000)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"\\ud800": 1, "name": "A", "price": "1.00", "stock_level": 1}', "\\ud800"),
        ('{"name": "A\\udfff", "price": "1.00", "stock_level": 1}', "name"),
        ('{"name": ["\\ud800"], "price": "1.00", "stock_level": 1}', "name"),
    ],
)
def test_a_lone_surrogate_escape_is_a_400_naming_where_it_is(clerk, body, field) -> None:
    """Kept, it could not be encoded in the answer: the 400 naming an unknown key was a 500."""
    response = clerk.post("/api/products", body, content_type="application/json")
    assert response.status_code == 400
    assert "lone surrogate" in error_of(response)["fields"][field][0]
    assert not Product.objects.exists()


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("post", '{"name": "A", "price": "1.00", "stock_level": 1, "price": "9.00"}'),
        ("put", '{"price": "1.00", "stock_level": 1, "price": "9.00"}'),
        ("patch", '{"price": "1.00", "price": "9.00"}'),
    ],
)
def test_a_json_name_given_twice_is_a_400_naming_it(clerk, method, body) -> None:
    """The last one won: a proxy or gateway that keeps the first could check one price and let
    the other be stored."""
    product = ProductFactory(price=Decimal("5.00"))
    path = "/api/products" if method == "post" else f"/api/products/{product.pk}"
    response = getattr(clerk, method)(path, body, content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"price": [GIVEN_TWICE]}
    product.refresh_from_db()
    assert (Product.objects.count(), product.price, product.version) == (1, Decimal("5.00"), 1)


def test_a_json_body_that_is_only_a_lone_surrogate_is_a_parse_error(clerk) -> None:
    response = clerk.post("/api/products", '"\\ud800"', content_type="application/json")
    assert (response.status_code, error_of(response)["code"]) == (400, "parse_error")


def test_a_surrogate_pair_escape_is_the_character_it_encodes(clerk) -> None:
    body = '{"name": "\\ud83d\\udca1 Lamp", "price": "1.00", "stock_level": 1}'
    response = clerk.post("/api/products", body, content_type="application/json")
    assert response.status_code == 201
    assert response.json()["name"] == "\U0001f4a1 Lamp"


def test_huge_page_number_is_404_not_an_overflow(anon) -> None:
    ProductFactory()
    assert anon.get("/api/products?page=2147483647&limit=100").status_code == 404
    assert anon.get("/api/products/search?name=w&page=2147483647&limit=100").status_code == 404


@pytest.mark.parametrize(
    ("query", "field", "minimum"),
    [("page=-1", "page", "1"), ("after_id=-1", "after_id", "0"), ("limit=-5", "limit", "1")],
)
def test_a_negative_number_in_the_query_is_told_its_minimum(anon, query, field, minimum) -> None:
    error = error_of(anon.get(f"/api/products?{query}"))
    assert error["fields"][field] == [f"Ensure this value is greater than or equal to {minimum}."]


def test_a_negative_stock_level_in_a_form_is_told_its_minimum(clerk, product) -> None:
    response = clerk.patch(f"/api/products/{product.id}", {"stock_level": "-1"})
    assert response.status_code == 400
    assert error_of(response)["fields"]["stock_level"] == [
        "Ensure this value is greater than or equal to 0."
    ]


def test_an_unknown_format_names_the_formats_there_are(anon, product) -> None:
    response = anon.get(f"/api/products/{product.id}?format=xml")
    assert response.status_code == 404
    assert error_of(response)["message"] == (
        "There is no format 'xml' here; use one of: api, json."
    )


def test_create_with_malformed_json_is_400_parse_error(clerk) -> None:
    response = clerk.post("/api/products", '{"name": ', content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_create_with_a_json_list_body_is_400(clerk) -> None:
    response = clerk.post("/api/products", "[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"


def test_create_with_unsupported_media_type_is_415(clerk) -> None:
    response = clerk.post("/api/products", "<xml/>", content_type="application/xml")
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_unsupported_method_is_405_with_allow(clerk) -> None:
    response = clerk.put("/api/products", {}, format="json")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "POST" in response["Allow"]


# --- update --------------------------------------------------------------------------------


def test_put_sets_price_and_stock_and_bumps_the_etag(clerk, product) -> None:
    response = clerk.put(
        f"/api/products/{product.id}", {"price": "3.00", "stock_level": 2}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert response["ETag"] == f'"{product.id}-2-1"'
    product.refresh_from_db()
    assert (product.price, product.stock_level, product.version) == (Decimal("3.00"), 2, 2)


@pytest.mark.parametrize(
    ("body", "missing"), [({"price": "3.00"}, "stock_level"), ({"stock_level": 2}, "price")]
)
def test_put_needs_both_fields(clerk, product, body, missing) -> None:
    response = clerk.put(f"/api/products/{product.id}", body, format="json")
    assert response.status_code == 400
    assert missing in error_of(response)["fields"]


def test_put_cannot_rename(clerk, product) -> None:
    response = clerk.put(
        f"/api/products/{product.id}",
        {"price": "3.00", "stock_level": 2, "name": "Renamed"},
        format="json",
    )
    assert response.status_code == 400
    assert "name" in error_of(response)["fields"]
    product.refresh_from_db()
    assert product.name == "Steel Hammer"


def test_patch_updates_only_stock(clerk, product) -> None:
    response = clerk.patch(f"/api/products/{product.id}/", {"stock_level": 0}, format="json")
    assert response.status_code == 200
    assert (response.json()["stock_level"], response.json()["price"]) == (0, "12.50")


def test_patch_with_negative_price_is_rejected(clerk, product) -> None:
    response = clerk.patch(f"/api/products/{product.id}", {"price": "-1"}, format="json")
    assert response.status_code == 400
    assert "price" in error_of(response)["fields"]


def test_put_on_missing_product_is_404(clerk) -> None:
    response = clerk.put("/api/products/424242", {"price": "1", "stock_level": 1}, format="json")
    assert response.status_code == 404


# The current ETag; one from another shape of the JSON; one from before the shape was in it.
@pytest.mark.parametrize("tail", ["-1", "-7", ""])
def test_put_with_current_if_match_succeeds(clerk, product, tail) -> None:
    response = clerk.put(
        f"/api/products/{product.id}",
        {"price": "1.00", "stock_level": 6},
        format="json",
        HTTP_IF_MATCH=f'"{product.id}-1{tail}"',
    )
    assert response.status_code == 200


def test_put_with_stale_if_match_is_412_and_writes_nothing(clerk, product) -> None:
    Product.objects.filter(pk=product.pk).update(stock_level=5)  # someone else wrote: v2
    response = clerk.put(
        f"/api/products/{product.id}",
        {"price": "1.00", "stock_level": 6},
        format="json",
        HTTP_IF_MATCH=f'"{product.id}-1-1"',
    )
    assert response.status_code == 412
    assert error_of(response)["code"] == "precondition_failed"
    product.refresh_from_db()
    assert (product.stock_level, product.version) == (5, 2)


def test_if_match_naming_another_product_is_412(clerk, product) -> None:
    response = clerk.patch(
        f"/api/products/{product.id}",
        {"stock_level": 1},
        format="json",
        HTTP_IF_MATCH=f'"{product.id + 1}-1"',
    )
    assert response.status_code == 412


@pytest.mark.parametrize("pad", ["0{id}-{version}", "{id}-0{version}"])
def test_an_if_match_with_leading_zeros_is_not_the_etag(clerk, product, pad: str) -> None:
    etag = '"' + pad.format(id=product.id, version=product.version) + '"'
    response = clerk.patch(
        f"/api/products/{product.id}", {"stock_level": 1}, format="json", HTTP_IF_MATCH=etag
    )
    assert response.status_code == 412
    product.refresh_from_db()
    assert product.version == 1


def test_if_match_star_matches_any_version(clerk, product) -> None:
    response = clerk.patch(
        f"/api/products/{product.id}", {"stock_level": 1}, format="json", HTTP_IF_MATCH="*"
    )
    assert response.status_code == 200


@pytest.mark.parametrize("method", ["put", "patch"])
def test_if_none_match_star_on_an_existing_product_is_412_and_writes_nothing(
    clerk, product, method: str
) -> None:
    response = getattr(clerk, method)(
        f"/api/products/{product.id}",
        {"price": "1.00", "stock_level": 1},
        format="json",
        HTTP_IF_NONE_MATCH="*",
    )
    assert response.status_code == 412
    assert "If-None-Match" in error_of(response)["message"]
    product.refresh_from_db()
    assert product.version == 1


@pytest.mark.parametrize("weak", ["", "W/"])
def test_if_none_match_naming_the_current_etag_refuses_the_write(clerk, product, weak) -> None:
    response = clerk.patch(
        f"/api/products/{product.id}",
        {"stock_level": 1},
        format="json",
        HTTP_IF_NONE_MATCH=f'"{product.id}-0-1", {weak}{product.etag}',
    )
    assert response.status_code == 412
    product.refresh_from_db()
    assert product.version == 1


@pytest.mark.parametrize("header", ["{id}-1-1", '"{id}-1-1', '*, "{id}-1-1"', "*, *"])
def test_a_malformed_if_none_match_is_400_and_writes_nothing(clerk, product, header) -> None:
    """Ignored, a guard with a typo in it (an unquoted ETag) let the write overwrite."""
    response = clerk.patch(
        f"/api/products/{product.id}",
        {"stock_level": 1},
        format="json",
        HTTP_IF_NONE_MATCH=header.format(id=product.id),
    )
    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"If-None-Match"}
    product.refresh_from_db()
    assert product.version == 1


@pytest.mark.parametrize("header", ["", " , ", '"x,y", W/"z"', '"{id}-9-1",,'])
def test_a_well_formed_if_none_match_naming_no_current_etag_lets_the_write_through(
    clerk, product, header
) -> None:
    response = clerk.patch(
        f"/api/products/{product.id}",
        {"stock_level": 1},
        format="json",
        HTTP_IF_NONE_MATCH=header.format(id=product.id),
    )
    assert response.status_code == 200


@pytest.mark.parametrize("headers", [{"HTTP_IF_NONE_MATCH": "*"}, {"HTTP_IF_MATCH": '"1-9-1"'}])
def test_a_failed_precondition_is_answered_before_the_body_is_read(clerk, product, headers) -> None:
    """RFC 9110, 13.2.1: a 412, not the 400 the incomplete PUT would get without it."""
    response = clerk.put(
        f"/api/products/{product.id}", {"stock_level": 1}, format="json", **headers
    )
    assert response.status_code == 412


def test_if_none_match_naming_an_older_etag_lets_the_write_through(clerk, product) -> None:
    old_etag = product.etag
    Product.objects.filter(pk=product.pk).update(stock_level=5)  # someone else wrote: v2
    response = clerk.patch(
        f"/api/products/{product.id}",
        {"stock_level": 1},
        format="json",
        HTTP_IF_NONE_MATCH=old_etag,
    )
    assert response.status_code == 200
    assert response.json()["version"] == 3


def test_if_none_match_star_on_a_missing_product_is_404(clerk) -> None:
    response = clerk.patch(
        "/api/products/999999", {"stock_level": 1}, format="json", HTTP_IF_NONE_MATCH="*"
    )
    assert response.status_code == 404


def test_a_failed_if_match_is_named_when_if_none_match_passes(clerk, product) -> None:
    response = clerk.patch(
        f"/api/products/{product.id}",
        {"stock_level": 1},
        format="json",
        HTTP_IF_MATCH=f'"{product.id}-9-1"',
        HTTP_IF_NONE_MATCH=f'"{product.id}-8-1"',
    )
    assert response.status_code == 412
    assert "If-Match does not name" in error_of(response)["message"]


# --- delete --------------------------------------------------------------------------------


def test_delete_is_204_and_then_404(clerk, product) -> None:
    assert clerk.delete(f"/api/products/{product.id}").status_code == 204
    assert clerk.get(f"/api/products/{product.id}").status_code == 404
    assert clerk.delete(f"/api/products/{product.id}").status_code == 404


def test_delete_with_stale_if_match_is_412(clerk, product) -> None:
    response = clerk.delete(f"/api/products/{product.id}", HTTP_IF_MATCH=f'"{product.id}-9-1"')
    assert response.status_code == 412
    assert Product.objects.filter(pk=product.pk).exists()


@pytest.mark.parametrize("header", ["*", "{etag}"])
def test_delete_with_if_none_match_naming_the_product_is_412(clerk, product, header) -> None:
    response = clerk.delete(
        f"/api/products/{product.id}", HTTP_IF_NONE_MATCH=header.format(etag=product.etag)
    )
    assert response.status_code == 412
    assert Product.objects.filter(pk=product.pk).exists()


# --- search --------------------------------------------------------------------------------


@pytest.fixture
def catalogue(db) -> dict[str, Product]:
    return {
        "hammer": ProductFactory(name="Steel Hammer", price=Decimal("12.50")),
        "ladder": ProductFactory(name="Aluminium ladder", price=Decimal("80.00")),
        "pan": ProductFactory(name="stainless STEEL pan", price=Decimal("50.00")),
        "odd": ProductFactory(name="100% wool_sock", price=Decimal("5.00")),
    }


def names(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [item["name"] for item in response.json()["results"]]


def test_search_name_is_a_case_insensitive_substring(anon, catalogue) -> None:
    assert names(anon.get("/api/products/search?name=steel")) == [
        "Steel Hammer",
        "stainless STEEL pan",
    ]


def test_search_price_bounds_are_inclusive(anon, catalogue) -> None:
    response = anon.get("/api/products/search/?min_price=12.50&max_price=50")
    assert names(response) == ["Steel Hammer", "stainless STEEL pan"]


def test_search_by_max_price_alone(anon, catalogue) -> None:
    assert names(anon.get("/api/products/search?max_price=10")) == ["100% wool_sock"]


def test_search_with_equal_bounds_finds_that_price(anon, catalogue) -> None:
    response = anon.get("/api/products/search?min_price=12.50&max_price=12.50")
    assert names(response) == ["Steel Hammer"]


def test_numbers_in_the_query_may_carry_surrounding_spaces(anon, catalogue) -> None:
    """As DRF's fields read them (the digits-only checks look past the spaces)."""
    response = anon.get("/api/products/search?name=steel&min_price=%2013%20&limit=%201%20")
    assert names(response) == ["stainless STEEL pan"]
    assert response.json()["limit"] == 1


def test_search_bounds_take_any_price_a_product_may_have(anon, catalogue) -> None:
    """From 0 to the largest price (10 integer digits, 2 decimal places)."""
    response = anon.get("/api/products/search?min_price=0&max_price=9999999999.99")
    assert sorted(names(response)) == sorted(product.name for product in catalogue.values())


def test_search_by_a_name_of_the_longest_length_allowed(anon, catalogue) -> None:
    assert names(anon.get("/api/products/search?name=" + "x" * NAME_MAX_LENGTH)) == []


def test_search_name_keeps_its_surrounding_spaces(anon, catalogue) -> None:
    """A name is trimmed when stored, but a space searched for is part of the substring."""
    assert names(anon.get("/api/products/search?name=l%20")) == [
        "Steel Hammer",
        "stainless STEEL pan",
    ]


def test_search_combines_name_and_price(anon, catalogue) -> None:
    response = anon.get("/api/products/search?name=steel&min_price=5&max_price=20")
    assert names(response) == ["Steel Hammer"]


def test_search_treats_like_wildcards_literally(anon, catalogue) -> None:
    assert names(anon.get("/api/products/search?name=%25")) == ["100% wool_sock"]
    assert names(anon.get("/api/products/search?name=l_s")) == ["100% wool_sock"]


def test_search_with_sql_in_the_name_is_just_a_string(anon, catalogue) -> None:
    response = anon.get("/api/products/search?name=' OR 1=1; DROP TABLE products_product; --")
    assert names(response) == []
    assert Product.objects.count() == 4


def test_search_is_paginated_like_the_list(anon, catalogue) -> None:
    body = anon.get("/api/products/search?name=l&limit=1&page=2").json()
    assert (body["count"], body["page"], body["total_pages"]) == (4, 2, 4)
    assert body["next"].endswith("page=3")


def test_search_keyset_paging(anon, catalogue) -> None:
    body = anon.get(f"/api/products/search?name=steel&after_id={catalogue['hammer'].id}").json()
    assert [item["name"] for item in body["results"]] == ["stainless STEEL pan"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "name"),
        ("limit=5", "name"),
        ("name=", "name"),
        ("min_price=abc", "min_price"),
        ("min_price=-1", "min_price"),
        ("min_price=-0.01", "min_price"),
        ("max_price=1.234", "max_price"),
        ("max_price=99999999999", "max_price"),
        ("min_price=10&max_price=5", "min_price"),
        ("name=" + "x" * 256, "name"),
        ("name=a%00b", "name"),
        ("name=steel&page=0", "page"),
    ],
)
def test_search_bad_criteria_are_400_naming_the_parameter(anon, query, field) -> None:
    response = anon.get(f"/api/products/search?{query}")
    assert response.status_code == 400
    assert field in error_of(response)["fields"]


def test_a_search_with_both_page_and_after_id_is_400_naming_page(anon) -> None:
    response = anon.get("/api/products/search?name=steel&page=2&after_id=5")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"page": ["Use either page or after_id, not both."]}


def test_search_page_past_the_end_is_404(anon, catalogue) -> None:
    assert anon.get("/api/products/search?name=steel&page=2").status_code == 404


@pytest.mark.django_db
@override_settings(DEBUG=True)
def test_an_unknown_api_url_is_a_json_404_even_with_debug_on() -> None:
    response = APIClient().get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- input found by fuzzing the running API (schemathesis and by hand) ---------------------


def test_an_if_match_with_a_version_too_long_to_be_one_is_a_412(clerk, product) -> None:
    etag = f'"{product.id}-{"9" * 4301}"'  # int() of it raises
    response = clerk.patch(
        f"/api/products/{product.id}", {"stock_level": 1}, format="json", HTTP_IF_MATCH=etag
    )
    assert response.status_code == 412
    assert error_of(response)["code"] == "precondition_failed"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_write_to_an_unknown_api_url_is_a_json_404_not_a_csrf_page(method: str) -> None:
    client = APIClient(enforce_csrf_checks=True)
    response = getattr(client, method)("/api/products/abc", {"price": "1"}, format="json")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_an_empty_patch_is_refused_and_changes_nothing(clerk, product) -> None:
    response = clerk.patch(f"/api/products/{product.id}", {}, format="json")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {
        "non_field_errors": ["Give at least one of price, stock_level."]
    }
    product.refresh_from_db()
    assert product.version == 1


@pytest.mark.parametrize("price", ["\u0663", "1_0", "1E+1", "+5", ".5", "\uff11"])
def test_a_price_string_is_plain_ascii_decimal(clerk, product, price: str) -> None:
    response = clerk.patch(f"/api/products/{product.id}", {"price": price}, format="json")
    assert response.status_code == 400
    assert "price" in error_of(response)["fields"]


@pytest.mark.parametrize(
    "query",
    ["page=\uff11", "limit=\u0663", "after_id=\u0661", "min_price=\u0663&name=x", "max_price=1_0"],
)
def test_paging_and_price_bounds_take_ascii_digits_only(anon, query: str) -> None:
    path = "/api/products/search" if "price" in query else "/api/products"
    response = anon.get(f"{path}?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in error_of(response)["fields"]


@pytest.mark.parametrize("price", ["-0", "-0.00", -0.0])
def test_a_negative_zero_price_is_answered_as_it_is_stored(clerk, price: object) -> None:
    response = clerk.post(
        "/api/products", {"name": "Zero", "price": price, "stock_level": 1}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["price"] == "0.00"
    assert APIClient().get(f"/api/products/{response.json()['id']}").json()["price"] == "0.00"


def test_a_form_body_over_the_upload_limit_is_a_413_naming_the_limit(clerk, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = clerk.post("/api/products", {"name": "x" * 200, "price": "1", "stock_level": 1})
    assert response.status_code == 413
    assert "100 bytes" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"name=%FF%FE&price=1&stock_level=1", "application/x-www-form-urlencoded"),
        # Another spelling of UTF-8 is checked too.
        (b"name=caf%E9&price=1&stock_level=1", "application/x-www-form-urlencoded; charset=utf_8"),
        # Bytes sent unquoted are checked too.
        (b"name=caf\xe9&price=1&stock_level=1", "application/x-www-form-urlencoded"),
    ],
)
def test_a_form_name_that_is_not_utf8_is_refused_not_stored_mangled(
    clerk, body: bytes, content_type: str
) -> None:
    response = clerk.post("/api/products", body, content_type=content_type)
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"name": ["Not valid UTF-8."]}
    assert not Product.objects.exists()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"name=A&price=1&stock_level=%FF", "stock_level"),  # not the first field
        (b"name=A&price=1&stock_level=1&%FF=1", "\ufffd"),  # the name, as it reads
        (b"name=A&price=1&stock_level=1&gift+note=%FF", "gift note"),  # "+" reads as a space
    ],
)
def test_a_form_field_that_is_not_utf8_is_named_wherever_it_comes(
    clerk, body: bytes, named: str
) -> None:
    response = clerk.post("/api/products", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {named: ["Not valid UTF-8."]}
    assert not Product.objects.exists()


def test_a_search_term_that_is_not_utf8_is_refused(anon) -> None:
    response = anon.get("/api/products/search?name=%FF")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"name": ["Not valid UTF-8."]}


def test_a_replacement_character_sent_as_utf8_is_a_name_like_any_other(clerk, anon) -> None:
    response = clerk.post(
        "/api/products",
        b"name=a%EF%BF%BDb&price=1&stock_level=1",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 201
    assert response.json()["name"] == "a\ufffdb"
    found = anon.get("/api/products/search?name=%EF%BF%BD")
    assert (found.status_code, found.json()["count"]) == (200, 1)


def test_a_foreign_query_parameter_that_is_not_utf8_is_ignored_like_any_other(anon) -> None:
    assert anon.get("/api/products?utm_source=%FF").status_code == 200


def test_a_multipart_field_that_is_not_utf8_is_refused(clerk) -> None:
    boundary = "b0undary"
    parts = [("name", b"caf\xe9"), ("price", b"1"), ("stock_level", b"1")]
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value
            + b"\r\n"
            for name, value in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    response = clerk.generic(
        "POST", "/api/products", body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"name": ["Not valid UTF-8."]}
    assert not Product.objects.exists()


@pytest.mark.parametrize("form", ["urlencoded", "multipart"])
def test_a_form_field_given_twice_is_a_400_naming_it(clerk, form) -> None:
    """The last one was stored (201), as with a JSON name given twice."""
    parts = [("name", "A"), ("name", "B"), ("price", "1"), ("stock_level", "1")]
    if form == "urlencoded":
        body = "&".join(f"{name}={value}" for name, value in parts).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        boundary = "b0undary"
        body = (
            b"".join(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                + f"{value}\r\n".encode()
                for name, value in parts
            )
            + f"--{boundary}--\r\n".encode()
        )
        content_type = f"multipart/form-data; boundary={boundary}"
    response = clerk.generic("POST", "/api/products", body, content_type=content_type)
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"name": [GIVEN_TWICE_IN_FORM]}
    assert not Product.objects.exists()


def test_a_cached_search_for_a_real_replacement_character_does_not_answer_bad_bytes(
    anon,
) -> None:
    ProductFactory(name="a\ufffdb")
    assert anon.get("/api/products/search?name=a%EF%BF%BDb").status_code == 200
    assert anon.get("/api/products/search?name=a%EF%BF%BDb").status_code == 200  # a cache hit
    response = anon.get("/api/products/search?name=a%FFb")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"name": ["Not valid UTF-8."]}


def test_a_database_error_that_is_not_the_client_s_is_a_500(anon, product, monkeypatch) -> None:
    def missing_column(**kwargs: object) -> None:
        raise ProgrammingError('column "stock_level" does not exist')

    monkeypatch.setattr(selectors, "product_list", missing_column)
    anon.raise_request_exception = False

    response = anon.get("/api/products?page=1&limit=5")

    assert response.status_code == 500
    assert error_of(response)["code"] == "server_error"
