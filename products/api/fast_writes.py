"""Answer the common product update ahead of the framework.

`ProductUpdateApp` wraps the WSGI application (inventory_project/wsgi.py), like
`fast_path.CachedReadsApp` does for cache hits. It answers one shape of request: a PUT or
PATCH of `/api/products/<id>` with a token, a JSON body and nothing unusual (no query string,
preconditions, Origin or content negotiation; cookies only when there is neither a session
cookie nor a CSRF cookie Django would replace). For those it does what `ProductDetailView` does,
with the same parts: the body decoded as the view's JSON parser decodes it, the view's
authenticators and permission classes, the same input serializer, then the view's throttle,
`services.product_update`, the same output serializer and renderer, and the headers the view
and Django's middleware would send. The throttle comes after the serializer, not before it as in
the view: a request this path hands on is counted by the view, once.

What it leaves out is the generic machinery around those parts (building Django's and DRF's
request objects, the middleware stack, URL resolution, content negotiation, parser selection,
exception handling): a fifth to a quarter of a write's CPU (docs/benchmarks.md, "What was cut").

Everything else falls through to Django untouched, and so does every request that would not
get a 200: a bad token, a missing permission, invalid input, an unknown product, a client over
its rate limit, an error before the write. The normal view then answers it with the usual
error, so error responses have one implementation. Nothing is written before the last of those
checks, except the rate-limit counter (see `fast_path.over_view_limit`). Two errors are answered
here, in the view's shape. The database unavailable, or past a limit: a 503. During the UPDATE,
which may have committed, sending the request on would write it twice; before it (the token
query), the view would wait for the connection pool again. And an answer to a committed update
that cannot be rendered: a 500, for the same reason. `PRODUCT_FAST_WRITES=false` switches the
path off.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest
from django.http.request import HttpHeaders
from django.utils.functional import cached_property
from rest_framework.renderers import JSONRenderer

from inventory_project import parsers
from products import cache, services
from products.api import fast_path
from products.api.errors import SERVER_ERROR_DETAIL, error_body, log_database_unavailable
from products.api.serializers import ProductOutputSerializer, ProductUpdateSerializer
from products.api.views import ProductDetailView
from products.models import Product

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"^Token ([^\s]+)$")
_JSON = {"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"}
_ACCEPT = {"*/*", "application/json"}  # absent counts as */*
# Headers that ask for what this path does not do: preconditions (the view turns If-Match into
# a compare-and-set), and Origin, which a CORS middleware, once there is one, would answer.
_DECLINED = ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_ORIGIN")
_MAX_BODY = 4096


class _Request:
    """What DRF's authenticators, permissions and our throttle read of a request."""

    def __init__(self, environ: dict[str, Any], method: str) -> None:
        self.META = environ
        self.method = method
        self.user: Any = None
        self.auth: Any = None
        self._request = self  # DRF's authenticators look through `_request`

    @cached_property
    def headers(self) -> HttpHeaders:
        return HttpHeaders(self.META)


class ProductUpdateApp:
    """WSGI wrapper: PUT/PATCH of one product by token, answered without Django's request cycle."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        # Read only, shared by every request: its authenticators, permissions, throttles and
        # allowed methods (set up as Django sets up a view, which adds HEAD to them).
        self.view = ProductDetailView()
        self.view.setup(HttpRequest())
        self.renderer = JSONRenderer()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        product_id = _eligible(environ)
        if product_id is None:
            return self.app(environ, start_response)
        body = _read_body(environ)
        # Whatever happens next, the view may need to read the body again.
        environ["wsgi.input"] = io.BytesIO(body)
        answer = fast_path.in_request_cycle(
            self.__class__, environ, lambda: self._update(environ, product_id, body)
        )
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        status, headers, content = answer
        headers.append(("Content-Length", str(len(content))))
        headers.extend(fast_path.security_headers(fast_path.is_secure(environ)))
        start_response(status, headers)
        return [content]

    def _update(
        self, environ: dict[str, Any], product_id: int, body: bytes
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        method = environ["REQUEST_METHOD"]
        request = _Request(environ, method)
        try:
            # Strict UTF-8, as the parser reads it (json.loads of bytes would also take UTF-16
            # and a byte order mark), then read as the parser reads it.
            data = parsers.load_json(body.decode("utf-8"))
            if not isinstance(data, dict) or not self._authorized(request):
                return None
            serializer = ProductUpdateSerializer(data=data, partial=method == "PATCH")
            if not serializer.is_valid() or fast_path.over_view_limit(request, self.view):
                return None
        except (OperationalError, InterfaceError) as exc:
            # The token query found no database: the view would wait for the pool again.
            log_database_unavailable(logger, exc)
            return self._unavailable(exc)
        except Exception:
            # Nothing is written yet: the view answers (400, 401, 403, its JSON 500) and logs
            # what it has to.
            return None
        try:
            product = services.product_update(product_id=product_id, **serializer.validated_data)
        except (OperationalError, InterfaceError) as exc:
            # The UPDATE may have committed before the connection failed: running it again
            # through the view would write twice. Answer as the view would answer this error.
            log_database_unavailable(logger, exc)
            return self._unavailable(exc)
        except (Product.DoesNotExist, ValidationError, DatabaseError):
            # Refused, nothing committed (PostgreSQL answered the one statement with an error):
            # the view answers, 404 or 400, or its JSON 500 for the rest (a ProgrammingError
            # from a trigger's stale plan after a migration, say), which escaped every layer
            # and got gunicorn's bare 500.
            return None
        # Committed. What follows renders the answer; the write-through never raises.
        try:
            content = self.renderer.render(ProductOutputSerializer(product).data)
        except Exception:
            # Too late to fall through (the view would write again): answer as Django's
            # handler500 answers an API request, not with the server's bare 500.
            logger.exception("rendering the answer to a committed update of product %s", product_id)
            return self._error("500 Internal Server Error", "server_error", SERVER_ERROR_DETAIL)
        entry = cache.Entry(
            headers={"ETag": product.etag, **fast_path.view_json_headers(self.view)},
            body=content,
        )
        fast_path.keep_as_detail(product_id, entry)
        return "200 OK", list(entry.headers.items()), content

    def _unavailable(self, exc: Exception) -> tuple[str, list[tuple[str, str]], bytes]:
        return fast_path.unavailable(fast_path.view_json_headers(self.view), exc)

    def _error(
        self, status: str, code: str, detail: str
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        """An error in the shape the view's exception handler answers it."""
        body = self.renderer.render(error_body(code, detail))
        headers = fast_path.view_json_headers(self.view)
        return status, list(headers.items()), body

    def _authorized(self, request: _Request) -> bool:
        """The view's authenticators, then its permission classes, as DRF runs them."""
        for authenticator in self.view.get_authenticators():
            found = authenticator.authenticate(request)  # type: ignore[arg-type]
            if found is not None:
                request.user, request.auth = found
                break
        else:
            return False
        return all(
            permission.has_permission(request, self.view)  # type: ignore[arg-type]
            for permission in self.view.get_permissions()
        )


def _eligible(environ: dict[str, Any]) -> int | None:
    """The product id, if this is the one request shape this path answers."""
    if environ["REQUEST_METHOD"] not in ("PUT", "PATCH") or not settings.PRODUCT_FAST_WRITES:
        return None
    match = fast_path.DETAIL.match(environ.get("PATH_INFO", ""))
    if match is None or environ.get("QUERY_STRING"):
        return None
    if not _TOKEN.match(environ.get("HTTP_AUTHORIZATION", "")):
        return None
    if environ.get("CONTENT_TYPE", "").lower() not in _JSON:
        return None
    if environ.get("HTTP_ACCEPT", "*/*").strip() not in _ACCEPT:
        return None
    if any(name in environ for name in _DECLINED):
        return None
    # A session cookie brings SessionAuthentication and its CSRF check into play; Django
    # replaces a malformed CSRF cookie in its answer.
    cookies = environ.get("HTTP_COOKIE")
    if cookies and not fast_path.cookies_left_alone(cookies):
        return None
    if fast_path.common_middleware_acts():
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if not 0 < length <= _MAX_BODY:
        return None
    secure = fast_path.is_secure(environ)
    if settings.SECURE_SSL_REDIRECT and not secure:
        return None  # Django redirects it
    if fast_path.allowed_host(environ) is None:
        return None  # Django answers 400
    return int(match[1])


def _read_body(environ: dict[str, Any]) -> bytes:
    return bytes(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
