"""Schemathesis over /api/schema/: every check, positive and negative data, authenticated writes.

Runs in-process over WSGI against the test database; rate limits are off so the fuzzing is not
cut short by 429s (they are tested on their own).
"""

from __future__ import annotations

import json
import re

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.db import OperationalError, close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import DataGenerationMethod, GenerationConfig
from schemathesis.checks import ALL_CHECKS

from inventory_project.wsgi import application
from products import selectors
from products.api.schema import without_slash_twins
from tests.products.api.wsgi_client import send
from tests.products.conftest import ProductFactory, make_user

EXAMPLES_PER_OPERATION = 50


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Raw WSGI calls would close the connection at request end, inside the test transaction.

    Django's own test client does the same disconnection around each request.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def operations():
    schema = schemathesis.from_wsgi(
        "/api/schema/",
        application,
        data_generation_methods=[DataGenerationMethod.positive, DataGenerationMethod.negative],
        # Credentials are ours (a real token); generated ones would only be random junk.
        generation_config=GenerationConfig(with_security_parameters=False),
    )
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_lists_every_operation_once() -> None:
    names = sorted(op.verbose_name for op in operations())
    assert names == [
        "DELETE /api/products/{id}",
        "GET /api/products",
        "GET /api/products/search",
        "GET /api/products/{id}",
        "PATCH /api/products/{id}",
        "POST /api/products",
        "PUT /api/products/{id}",
    ]


@pytest.mark.parametrize("operation", operations(), ids=lambda op: op.verbose_name)
def test_operation_conforms_to_its_schema(operation) -> None:
    user = make_user("fuzzer", "add_product", "change_product", "delete_product")
    auth = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    # Positive cases for /{id} mostly name an existing product, so success paths are fuzzed too.
    ids = [product.id for product in ProductFactory.create_batch(60)]
    headers = auth if operation.method.upper() not in {"GET", "HEAD"} else {}

    statuses: list[int] = []

    @given(case=operation.as_strategy(), existing=st.sampled_from([*ids, None]))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case, existing) -> None:
        positive = case.data_generation_method and case.data_generation_method.is_positive
        if existing is not None and positive and case.path_parameters:
            case.path_parameters["id"] = existing
        # schemathesis 3.39's ignored_auth check writes into these and crashes on None.
        case.cookies = case.cookies or {}
        case.headers = case.headers or {}
        response = case.call_wsgi(headers=headers)
        statuses.append(response.status_code)
        case.validate_response(
            response, checks=ALL_CHECKS, headers=headers, transport_kwargs={"headers": headers}
        )

    with override_settings(RATELIMIT_ENABLE=False):
        run()
    print(operation.verbose_name, len(statuses), sorted(set(statuses)))
    assert len(statuses) >= EXAMPLES_PER_OPERATION


def test_request_bodies_are_documented_as_refusing_unknown_keys(client) -> None:
    schemas = client.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]
    requests = {name: schema for name, schema in schemas.items() if name.endswith("Request")}
    assert sorted(requests) == [
        "PatchedProductUpdateRequest",
        "ProductCreateRequest",
        "ProductUpdateRequest",
    ]
    assert all(schema["additionalProperties"] is False for schema in requests.values())


def test_reads_document_304_and_every_operation_401_406_413_415_and_503(client) -> None:
    paths = client.get("/api/schema/", {"format": "json"}).json()["paths"]
    operations = [
        (method.upper(), operation)
        for item in paths.values()
        for method, operation in item.items()
        if method in {"get", "put", "patch", "post", "delete"}
    ]
    assert len(operations) == 7
    for method, operation in operations:
        every = {"401", "406", "413", "415", "503"}
        assert every <= operation["responses"].keys(), operation["operationId"]
        has_304 = "304" in operation["responses"]
        names = {parameter["name"] for parameter in operation.get("parameters", [])}
        assert has_304 == (method == "GET"), operation["operationId"]
        # Reads revalidate with it, writes refuse to overwrite the ETags it names.
        assert ("If-None-Match" in names) == (method != "POST"), operation["operationId"]
        assert ("If-Match" in names) == (method != "POST"), operation["operationId"]


@pytest.mark.parametrize("path", ["/api/schema", "/api/schema/", "/api/docs", "/api/docs/"])
def test_the_schema_and_its_docs_answer_with_and_without_the_slash(client, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/api/docs", "/api/docs/"])
def test_the_docs_page_answers_get_and_head_and_refuses_the_rest(client, path: str) -> None:
    """OPTIONS was a 500: DRF rendered its metadata through the page's template renderer."""
    client.raise_request_exception = False
    assert client.head(path).status_code == 200
    for method in ("options", "post", "delete"):
        response = getattr(client, method)(path)
        assert (response.status_code, response["Allow"]) == (405, "GET, HEAD"), method
        # It was plain text labelled text/html: every /api/ error is the API's JSON.
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("method", "query", "accept", "code"),
    [
        ("put", "", "*/*", 405),
        ("get", "?format=xml", "application/json", 404),
        ("get", "", "application/xml", 406),
    ],
)
def test_the_schemas_errors_are_the_apis_json(client, method, query, accept, code) -> None:
    """They were YAML (the schema's own renderer), whatever the client accepted."""
    response = getattr(client, method)(f"/api/schema/{query}", HTTP_ACCEPT=accept)
    assert response.status_code == code
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"error"}


def test_a_reads_412_is_described_by_if_match_alone(client) -> None:
    """If-None-Match on a read gives a 304, never a 412."""
    paths = client.get("/api/schema/", {"format": "json"}).json()["paths"]
    for path in ("/api/products", "/api/products/{id}", "/api/products/search"):
        description = paths[path]["get"]["responses"]["412"]["description"]
        assert "If-Match" in description, path
        assert "If-None-Match" not in description, path


def test_the_schema_lists_only_the_products_operations(client) -> None:
    paths = client.get("/api/schema", {"format": "json"}).json()["paths"]
    assert sorted(paths) == ["/api/products", "/api/products/search", "/api/products/{id}"]


def test_the_documented_request_examples_are_accepted(client, clerk) -> None:
    paths = client.get("/api/schema", {"format": "json"}).json()["paths"]

    def example(path: str, method: str) -> dict:
        content = paths[path][method]["requestBody"]["content"]["application/json"]
        (named,) = content["examples"].values()
        return named["value"]

    created = clerk.post("/api/products", example("/api/products", "post"), format="json")
    assert created.status_code == 201
    url = f"/api/products/{created.json()['id']}"
    for method in ("put", "patch"):
        body = example("/api/products/{id}", method)
        assert getattr(clerk, method)(url, body, format="json").status_code == 200


def test_the_price_bounds_of_a_search_have_no_example(client) -> None:
    # Swagger UI fills a parameter with its example: one shared example made min = max.
    search = client.get("/api/schema", {"format": "json"}).json()["paths"]["/api/products/search"]
    bounds = [p for p in search["get"]["parameters"] if p["name"] in {"min_price", "max_price"}]
    assert len(bounds) == 2
    assert not any("example" in bound["schema"] or "example" in bound for bound in bounds)


def test_only_a_routes_own_slash_twin_is_left_out_of_the_schema() -> None:
    def view() -> None: ...

    def other() -> None: ...

    endpoints = [
        ("/api/a", "", "GET", view),
        ("/api/a/", "", "GET", view),
        ("/api/b", "", "GET", view),
        ("/api/b/", "", "GET", other),
    ]
    assert [e[0] for e in without_slash_twins(endpoints)] == ["/api/a", "/api/b", "/api/b/"]


def test_the_schema_states_the_name_check_as_what_it_refuses(client) -> None:
    """Listed as a validator, the check's regex (the characters refused) became the pattern a
    name must match; unstated, a client could not know a tab is refused."""
    schemas = client.get("/api/schema", {"format": "json"}).json()["components"]["schemas"]
    name = schemas["ProductCreateRequest"]["properties"]["name"]
    assert "pattern" not in name
    refused = re.compile(name["not"]["pattern"])
    assert refused.search("a\tb")
    assert refused.search("a\u2028b")
    assert not refused.search("Steel Hammer ß")


def test_the_schema_holds_an_answers_price_to_the_digits_a_price_may_have(client) -> None:
    """At most 10 integer digits and 2 decimal places, as a price is accepted."""
    schemas = client.get("/api/schema", {"format": "json"}).json()["components"]["schemas"]
    price = re.compile(schemas["ProductOutput"]["properties"]["price"]["pattern"])
    assert price.search("9999999999.99")
    assert not price.search("99999999999.99")
    assert not price.search("1.999")


def test_the_schema_says_a_patch_must_set_something(client) -> None:
    schemas = client.get("/api/schema", {"format": "json"}).json()["components"]["schemas"]
    assert schemas["PatchedProductUpdateRequest"]["minProperties"] == 1


# The response headers the API sends that a client acts on.
ACTED_ON = ("ETag", "Location", "Retry-After")


@override_settings(PRODUCT_CACHE_ENABLED=False)
def test_what_the_server_answers_is_documented_with_its_headers(monkeypatch) -> None:
    """Each answer's status is listed for its operation, its ETag, Location and Retry-After are
    the headers listed for that status, and every header listed as required is sent.

    Schemathesis sends valid credentials only and meets no rate limit or outage: a read with a
    bad token (a 401 the schema did not list), a 429 and a 503 are made here. Through the whole
    WSGI stack, fast paths included."""
    # Not through Django's test client: it puts back the connection closing this module's
    # fixture takes away.
    schema = send(application, "GET", "/api/schema/", QUERY_STRING="format=json")[2]
    paths = json.loads(schema)["paths"]
    product = ProductFactory(name="Steel Hammer")
    user = make_user("documented", "add_product", "change_product", "delete_product")
    good = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=user).key}"}
    bad = {"HTTP_AUTHORIZATION": "Token not-a-token"}
    detail, one = f"/api/products/{product.id}", "/api/products/{id}"
    etag = send(application, "GET", detail)[1]["ETag"]
    body = {"price": "5.00", "stock_level": 3}
    new = {"name": "Anvil", **body}
    answers = [
        ("get", one, send(application, "GET", detail)),
        ("get", one, send(application, "GET", detail, HTTP_IF_NONE_MATCH=etag)),
        ("get", "/api/products", send(application, "GET", "/api/products")),
        (
            "get",
            "/api/products/search",
            send(application, "GET", "/api/products/search", QUERY_STRING="name=steel"),
        ),
        ("get", one, send(application, "GET", detail, **bad)),
        ("get", "/api/products", send(application, "GET", "/api/products", **bad)),
        (
            "get",
            "/api/products/search",
            send(application, "GET", "/api/products/search", QUERY_STRING="name=steel", **bad),
        ),
        ("post", "/api/products", send(application, "POST", "/api/products", new, **good)),
        ("post", "/api/products", send(application, "POST", "/api/products", new)),
        ("put", one, send(application, "PUT", detail, body, **good)),
        ("patch", one, send(application, "PATCH", detail, {"stock_level": 2}, **good)),
    ]
    too_large = b"{" + b" " * django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b"}"
    answers += [
        (method.lower(), path, send(application, method, url, too_large, **good))
        for method, url, path in [
            ("POST", "/api/products", "/api/products"),
            ("PUT", detail, one),
            ("PATCH", detail, one),
            ("GET", "/api/products", "/api/products"),
            ("DELETE", detail, one),
        ]
    ]
    gzipped = {"HTTP_CONTENT_ENCODING": "gzip", **good}
    answers += [
        ("get", one, send(application, "GET", detail, b"\x1f\x8b", **gzipped)),
        (
            "post",
            "/api/products",
            send(application, "POST", "/api/products", b"\x1f\x8b", **gzipped),
        ),
    ]
    with override_settings(RATELIMIT_ENABLE=True, RATELIMIT_READS="1/m", RATELIMIT_WRITES="1/m"):
        reads = {"REMOTE_ADDR": "10.77.0.1"}
        answers += [("get", one, send(application, "GET", detail, **reads)) for _ in range(2)]
        writer = make_user("limited", "change_product")
        limited = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=writer).key}"}
        answers += [
            ("patch", one, send(application, "PATCH", detail, {"stock_level": 1}, **limited))
            for _ in range(2)
        ]

    def unavailable(**kwargs: object) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "product_list", unavailable)
    answers.append(("get", "/api/products", send(application, "GET", "/api/products")))
    answers.append(("delete", one, send(application, "DELETE", detail, **good)))

    seen = set()
    for method, path, (status, headers, _) in answers:
        seen.add(status)
        responses = paths[path][method]["responses"]
        where = f"{method.upper()} {path} {status}"
        assert str(status) in responses, where
        documented = responses[str(status)].get("headers", {})
        sent = {name for name in ACTED_ON if name in headers}
        assert sent == sent & documented.keys(), where
        required = {name for name, header in documented.items() if header.get("required")}
        assert required <= sent, where
        if "Retry-After" in headers:
            assert int(headers["Retry-After"]) > 0, where
    assert seen == {200, 201, 204, 304, 401, 413, 415, 429, 503}
