"""Thin views: validate input, call one selector or service, serialize the result."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any, TypedDict

from django.http import HttpRequest, HttpResponseBase, HttpResponseNotModified, QueryDict
from django.urls import reverse
from django.utils.cache import patch_cache_control, set_response_etag
from django.utils.http import parse_etags
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from products import selectors, services
from products.api.errors import IF_MATCH_READ_FAILED, IF_NONE_MATCH_FAILED, PreconditionFailed
from products.api.pagination import keyset_page_data, offset_page_data, page_url
from products.api.schema import ProductAutoSchema
from products.api.serializers import (
    BIGINT_MAX,
    ErrorSerializer,
    ListQuerySerializer,
    ProductCreateSerializer,
    ProductOutputSerializer,
    ProductPageSerializer,
    ProductUpdateSerializer,
    SearchQuerySerializer,
    ensure_utf8,
)
from products.api.throttling import CountsRefusals, ProductRateThrottle
from products.models import Product

# Ids and versions are bigints: a longer number names no product (and int() of thousands of
# digits raises). Written as the ETags are, without leading zeros: `"070-2-1"` is not `"70-2-1"`.
# An ETag is `"<id>-<version>-<representation>"`; If-Match compares the version alone, so an
# ETag from before a change of the JSON's shape (or from before the shape was in it:
# `"<id>-<version>"`) still allows a write that nothing else has overtaken.
_NUMBER = "(0|[1-9][0-9]{0,18})"
_ETAG = re.compile(rf'^"{_NUMBER}-{_NUMBER}(?:-{_NUMBER})?"$')

ERROR_DESCRIPTIONS = {
    400: "Invalid input; `fields` names each bad field, parameter or header (any request: a "
    "query string of more than DATA_UPLOAD_MAX_NUMBER_FIELDS fields).",
    401: "Credentials missing on a write, or invalid on any request (an unknown or malformed "
    "token).",
    403: "Authenticated but lacking the model permission.",
    404: "No such product, or a page past the end.",
    412: "If-Match does not name the product's current ETag, or If-None-Match does (or is `*`).",
    406: "The Accept header names no type this API answers in (JSON, or HTML for the "
    "browsable API).",
    413: "The request body is larger than the server takes (DATA_UPLOAD_MAX_MEMORY_SIZE).",
    415: "Unsupported Content-Type, or a Content-Encoding: send the body uncompressed.",
    429: "Rate limit exceeded; see Retry-After.",
    503: "The database is unavailable, or the request waited past one of its limits for it (a "
    "lock another transaction holds, a query's time); see Retry-After.",
}
# What any operation may answer, whatever it is asked: a read is public, but a bad token sent
# with one is refused all the same (DRF authenticates before it looks at permissions); and a
# request body too large or content-coded is refused before the method is looked at
# (inventory_project/request_body.py), a GET's or a DELETE's too. ProductAutoSchema declares
# the Retry-After of the 429 and the 503.
EVERY_OPERATION = (400, 401, 406, 413, 415, 429, 503)
READ_DESCRIPTIONS = {412: "If-Match names neither the answer's current ETag nor `*`."}


def errors(*codes: int, descriptions: dict[int, str] | None = None) -> dict[int, OpenApiResponse]:
    described = {**ERROR_DESCRIPTIONS, **(descriptions or {})}
    return {
        code: OpenApiResponse(ErrorSerializer, description=described[code])
        for code in sorted({*codes, *EVERY_OPERATION})
    }


READ_ERRORS = errors(404, 412, descriptions=READ_DESCRIPTIONS)


# Reads answer 304, with no body, when If-None-Match names the current ETag.
# The headers of a 200 that its 304 sends too (RFC 9110, 15.4.5), of those our answers have.
NOT_MODIFIED_KEEPS = ("ETag", "Vary", "Cache-Control")
NOT_MODIFIED = {304: OpenApiResponse(description="If-None-Match names the current ETag.")}


IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="The product's ETag; the write is refused with 412 if the product has changed.",
)
IF_NONE_MATCH_WRITE = OpenApiParameter(
    "If-None-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "ETags the write must not overwrite, or `*`; refused with 412 if one is the product's "
        "current ETag (compared weakly), or for `*`, since the product exists."
    ),
)
IF_MATCH_READ = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="ETags the answer must have, or `*`; 412 if the current one is not among them.",
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="An ETag of an earlier answer; 304 with no body if it is still current.",
)


# Response headers. The ETag is on every JSON answer of these codes (the browsable API's HTML
# page has none: see finalize_response).
def _etag(*codes: int) -> OpenApiParameter:
    return OpenApiParameter(
        "ETag",
        str,
        OpenApiParameter.HEADER,
        required=False,
        response=list(codes),
        description=(
            "The answer's entity tag, for If-None-Match (reads) and If-Match (writes); a "
            'product\'s is `"<id>-<version>-<representation>"`.'
        ),
    )


READ_ETAG = _etag(200, 304)
WRITE_ETAG = _etag(200)
LOCATION = OpenApiParameter(
    "Location",
    str,
    OpenApiParameter.HEADER,
    required=True,
    response=[201],
    description="The new product's URL.",
)


class ProductAPIView(CountsRefusals, GenericAPIView):
    # DjangoModelPermissionsOrAnonReadOnly (settings) reads the model from here; rows are
    # always fetched through the selectors.
    queryset = Product.objects.all()
    throttle_classes = [ProductRateThrottle]
    schema = ProductAutoSchema()

    def finalize_response(  # type: ignore[override]
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        response = super().finalize_response(request, response, *args, **kwargs)
        if not _is_json(request):
            # The browsable API's page depends on who is logged in and carries a CSRF token,
            # yet a product's ETag names only its version: a browser revalidating the page
            # after a login or logout, or after fetching the JSON, was answered 304 and kept
            # the page it had. The page has no validator and is not stored either, so that
            # going back does not show a page of another session.
            if response.has_header("ETag"):
                del response["ETag"]
            patch_cache_control(response, private=True, no_store=True)
            return response
        if request.method in ("GET", "HEAD") and response.status_code == status.HTTP_200_OK:
            if not response.has_header("ETag"):
                response.render()
                set_response_etag(response)
            if if_match_fails(request, response["ETag"]):
                # RFC 9110, 13.1.1: a read too, which fast_path leaves to this view.
                failed = self.handle_exception(PreconditionFailed(IF_MATCH_READ_FAILED))
                answer = self.finalize_response(request, failed, *args, **kwargs)
                # DRF adds the view's Vary once, to the first response it finalizes.
                if response.has_header("Vary"):
                    answer["Vary"] = response["Vary"]
                return answer
            if if_none_match_fails(request, response["ETag"]):
                not_modified = HttpResponseNotModified()
                # What the 200 would send of these (RFC 9110, 15.4.5): a cache that refreshes
                # its stored headers from a 304 must not lose Vary's Accept.
                for header in NOT_MODIFIED_KEEPS:
                    if response.has_header(header):
                        not_modified[header] = response[header]
                return not_modified
        return response


class ProductListView(ProductAPIView):
    def get_serializer_class(self) -> type[BaseSerializer]:
        return ProductCreateSerializer

    @extend_schema(
        operation_id="products_list",
        summary="List products",
        description="Page by `page` (with a count) or by `after_id` (keyset), not both.",
        parameters=[ListQuerySerializer, IF_NONE_MATCH, IF_MATCH_READ, READ_ETAG],
        responses={200: ProductPageSerializer, **NOT_MODIFIED, **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = _validated_query(ListQuerySerializer, request)
        return Response(_found(list_page, query, request))

    @extend_schema(
        operation_id="products_create",
        summary="Create a product",
        parameters=[_etag(201), LOCATION],
        request=ProductCreateSerializer,
        responses={201: ProductOutputSerializer, **errors(400, 403)},
    )
    def post(self, request: Request) -> Response:
        data = _validated(ProductCreateSerializer, request.data)
        product = services.product_create(**data)
        return _product_response(product, status.HTTP_201_CREATED, location=True)


class ProductDetailView(ProductAPIView):
    def get_serializer_class(self) -> type[BaseSerializer]:
        return ProductUpdateSerializer

    def get_object(self) -> Product:
        return _get_product(self.kwargs["pk"])

    @extend_schema(
        operation_id="products_retrieve",
        summary="One product",
        parameters=[IF_NONE_MATCH, IF_MATCH_READ, READ_ETAG],
        responses={200: ProductOutputSerializer, **NOT_MODIFIED, **READ_ERRORS},
    )
    def get(self, request: Request, pk: int) -> Response:
        return _product_response(_get_product(pk), status.HTTP_200_OK)

    @extend_schema(
        operation_id="products_update",
        summary="Set price and stock level",
        parameters=[IF_MATCH, IF_NONE_MATCH_WRITE, WRITE_ETAG],
        request=ProductUpdateSerializer,
        responses={200: ProductOutputSerializer, **errors(400, 403, 404, 412)},
    )
    def put(self, request: Request, pk: int) -> Response:
        return self._update(request, pk, partial=False)

    @extend_schema(
        operation_id="products_partial_update",
        summary="Set price and/or stock level",
        parameters=[IF_MATCH, IF_NONE_MATCH_WRITE, WRITE_ETAG],
        request=ProductUpdateSerializer,
        responses={200: ProductOutputSerializer, **errors(400, 403, 404, 412)},
    )
    def patch(self, request: Request, pk: int) -> Response:
        return self._update(request, pk, partial=True)

    @extend_schema(
        operation_id="products_destroy",
        summary="Delete a product",
        parameters=[IF_MATCH, IF_NONE_MATCH_WRITE],
        responses={204: None, **errors(403, 404, 412)},
    )
    def delete(self, request: Request, pk: int) -> Response:
        _check_id(pk)
        preconditions = _preconditions(request, pk)
        try:
            services.product_delete(product_id=pk, **preconditions)
        except Product.DoesNotExist as exc:
            raise NotFound(f"No product with id {pk}.") from exc
        except services.VersionMismatch as exc:
            raise _mismatch(preconditions, exc) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _update(self, request: Request, pk: int, *, partial: bool) -> Response:
        _check_id(pk)
        preconditions = _preconditions(request, pk)
        if preconditions != NO_PRECONDITIONS:
            # Answered before the body is read (RFC 9110, 13.2.1); the UPDATE checks them
            # again, as its compare-and-set.
            version = selectors.product_version(product_id=pk)
            if version is None:
                raise NotFound(f"No product with id {pk}.")
            if (failed := _precondition_failed(preconditions, version)) is not None:
                raise failed
        data = _validated(ProductUpdateSerializer, request.data, partial=partial)
        try:
            product = services.product_update(product_id=pk, **preconditions, **data)
        except Product.DoesNotExist as exc:
            raise NotFound(f"No product with id {pk}.") from exc
        except services.VersionMismatch as exc:
            raise _mismatch(preconditions, exc) from exc
        return _product_response(product, status.HTTP_200_OK)


class ProductSearchView(ProductAPIView):
    @extend_schema(
        operation_id="products_search",
        summary="Search products by name substring and price range",
        description=(
            "Give at least one of `name`, `min_price` and `max_price`; `min_price` not above "
            "`max_price`. Page by `page` or by `after_id`, not both."
        ),
        parameters=[SearchQuerySerializer, IF_NONE_MATCH, IF_MATCH_READ, READ_ETAG],
        responses={200: ProductPageSerializer, **NOT_MODIFIED, **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = _validated_query(SearchQuerySerializer, request)
        return Response(_found(search_page, query, request))


def list_page(query: dict[str, Any], url: str) -> dict[str, Any]:
    """The list page a validated ListQuerySerializer asks for, answered at `url`."""
    if "after_id" in query:
        keyset = selectors.product_list_after(after_id=query["after_id"], limit=query["limit"])
        return keyset_page_data(url, keyset)
    page = selectors.product_list(page=query.get("page", 1), limit=query["limit"])
    return offset_page_data(url, page)


def search_page(query: dict[str, Any], url: str) -> dict[str, Any]:
    """The search page a validated SearchQuerySerializer asks for, answered at `url`."""
    filters = selectors.ProductFilters(
        name=query.get("name"), min_price=query.get("min_price"), max_price=query.get("max_price")
    )
    if "after_id" in query:
        keyset = selectors.product_search_after(
            filters=filters, after_id=query["after_id"], limit=query["limit"]
        )
        return keyset_page_data(url, keyset)
    page = selectors.product_search(
        filters=filters, page=query.get("page", 1), limit=query["limit"]
    )
    return offset_page_data(url, page)


# The page functions, by the view they answer for (products/api/fast_reads.py calls them too).
PageFunction = Callable[[dict[str, Any], str], dict[str, Any]]


def _found(page_function: PageFunction, query: dict[str, Any], request: Request) -> dict[str, Any]:
    try:
        url = page_url(
            scheme="https" if request.is_secure() else "http",
            host=request.get_host(),
            path=request.path,
            query_string=request.META.get("QUERY_STRING", ""),
        )
        return page_function(query, url)
    except selectors.PageOutOfRange as exc:
        raise NotFound(str(exc)) from exc


def _validated_query(serializer_class: type[ListQuerySerializer], request: Request) -> Any:
    serializer = query_serializer(
        serializer_class, request.query_params, request.META.get("QUERY_STRING", "")
    )
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def query_serializer(
    serializer_class: type[ListQuerySerializer], params: QueryDict, query_string: str
) -> ListQuerySerializer:
    """The serializer of these query parameters, once their bytes are known to be UTF-8: a
    ValidationError names those of ours that are not (Django decodes them with
    errors="replace": a search for `%FF` would search for U+FFFD)."""
    serializer = serializer_class(data=params)
    # WSGI hands the query string over as Latin-1: this gives back its bytes.
    raw = query_string.encode("latin-1", errors="replace")
    ensure_utf8(raw, names=serializer.fields.keys())
    return serializer


def _validated(serializer_class: type[BaseSerializer], data: Any, **kwargs: Any) -> Any:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _check_id(pk: int) -> None:
    if pk > BIGINT_MAX:
        raise NotFound(f"No product with id {pk}.")


def _get_product(pk: int) -> Product:
    _check_id(pk)
    try:
        return selectors.product_get(product_id=pk)
    except Product.DoesNotExist as exc:
        raise NotFound(f"No product with id {pk}.") from exc


def _product_response(product: Product, code: int, *, location: bool = False) -> Response:
    headers = {"ETag": product.etag}
    if location:
        headers["Location"] = reverse("products:detail", kwargs={"pk": product.pk})
    return Response(ProductOutputSerializer(product).data, status=code, headers=headers)


def _is_json(request: Request) -> bool:
    renderer = getattr(request, "accepted_renderer", None)
    return renderer is None or renderer.format == "json"


def etag_version(etag: str, pk: int) -> int | None:
    """The version a product ETag names, if it is this product's strong ETag."""
    match = _ETAG.match(etag)
    return int(match[2]) if match and int(match[1]) == pk else None


class Preconditions(TypedDict):
    """A write's If-Match and If-None-Match, as services.product_update takes them."""

    expected_versions: Collection[int] | None
    refused_versions: Collection[int] | None
    refuse_existing: bool


NO_PRECONDITIONS: Preconditions = {
    "expected_versions": None,
    "refused_versions": None,
    "refuse_existing": False,
}
# What RFC 9110 allows in If-Match and If-None-Match: `*`, or a list of entity tags (empty
# elements allowed, 5.6.1). Django's parse_etags drops what does not parse.
_ENTITY_TAG = r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
_ENTITY_TAGS = re.compile(rf"^[ \t,]*{_ENTITY_TAG}(?:[ \t]*,[ \t,]*{_ENTITY_TAG})*[ \t,]*$")
NOT_ENTITY_TAGS = 'Not * or a list of entity tags ("...", W/"..."): not written.'


def _preconditions(request: Request, pk: int) -> Preconditions:
    """The versions If-Match allows (None when absent or `*`; empty, always 412, when it names
    only other products) and those If-None-Match refuses (`*`: any, as the product exists).
    If-None-Match compares weakly (RFC 9110, 13.1.2): `W/"<etag>"` refuses the version too.
    A malformed If-None-Match is a 400: ignored, the guard it was meant to be would let the
    write through (a malformed If-Match allows no version)."""
    expected: set[int] | None = None
    if_match = request.headers.get("If-Match")
    if if_match is not None and (etags := parse_etags(if_match)) != ["*"]:
        expected = {v for etag in etags if (v := etag_version(etag, pk)) is not None}
    refused: set[int] | None = None
    refuse_existing = False
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and if_none_match.strip(" \t,"):
        if if_none_match.strip() != "*" and not _ENTITY_TAGS.match(if_none_match):
            raise ValidationError({"If-None-Match": [NOT_ENTITY_TAGS]})
        etags = parse_etags(if_none_match)
        refuse_existing = etags == ["*"]
        refused = {
            v for etag in etags if (v := etag_version(etag.removeprefix("W/"), pk)) is not None
        }
    return {
        "expected_versions": expected,
        "refused_versions": refused,
        "refuse_existing": refuse_existing,
    }


def _precondition_failed(preconditions: Preconditions, version: int) -> PreconditionFailed | None:
    """The 412 for a product at `version`, naming the header that refuses it, or None."""
    refused_by = services.precondition_refusing(version, **preconditions)
    if refused_by == "If-Match":
        return PreconditionFailed()
    if refused_by == "If-None-Match":
        return PreconditionFailed(IF_NONE_MATCH_FAILED)
    return None


def _mismatch(preconditions: Preconditions, exc: services.VersionMismatch) -> PreconditionFailed:
    """The 412 for a write whose compare-and-set failed."""
    return _precondition_failed(preconditions, exc.current.version) or PreconditionFailed()


def if_match_fails(request: HttpRequest, etag: str) -> bool:
    """True when an If-Match of a read names neither `etag` nor `*` (strong comparison)."""
    header = request.headers.get("If-Match")
    if header is None:
        return False
    etags = parse_etags(header)
    return etags != ["*"] and etag not in etags


def if_none_match_fails(request: HttpRequest, etag: str) -> bool:
    """True when If-None-Match names `etag` (weak comparison) or is `*`: answer 304."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    etags = parse_etags(header)
    if etags == ["*"]:
        return True
    bare = etag.removeprefix("W/")
    return any(candidate.removeprefix("W/") == bare for candidate in etags)
