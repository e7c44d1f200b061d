"""Request bodies sent without a Content-Length (`Transfer-Encoding: chunked`).

Django reads a request's body only up to CONTENT_LENGTH, and a chunked request has none: Django
reads its body as empty. A chunked PATCH was answered 200 having changed nothing, and a chunked
PUT or POST got a 400 calling every field required.

`ChunkedBodyApp`, a WSGI layer ahead of the others but three (inventory_project/wsgi.py), reads
such a body itself when the server has decoded the chunks and ends the stream where the body ends
(`wsgi.input_terminated`, which gunicorn sets), and passes it on with its length, so every layer
below sees an ordinary request. A body larger than DATA_UPLOAD_MAX_MEMORY_SIZE is refused with 413;
under a server that does not end the stream (the development server), with 411 Length Required.
Other transfer codings (gzip) are refused with 501, as HTTP asks of a server that does not know
them.

A request whose Content-Length is over that limit is refused with the same 413 before its body
is read, whatever its path (see `_declared_too_large`).

A body with a content coding (`Content-Encoding: gzip`) is refused here too, with 415 and
`Accept-Encoding: identity` (RFC 9110, 15.5.16; RFC 7694): nothing below decodes it, so gzip
reached the parser as bytes ("JSON parse error ... byte 0x8b"), and a plain body labelled gzip
was taken as it was.

So is a Content-Type whose charset is a codec Python knows but no text encoding (`rot13`, `hex`,
`bz2_codec`), with the API parsers' 400 naming it: Django takes it as the request's encoding and
decodes the query string and a multipart form with it, a LookupError, a 500 (a GET's raised
while Django builds the request, where no handler runs). A charset Python does not know is left
to Django, which reads UTF-8 instead.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.utils.http import parse_header_parameters

from inventory_project.parsers import charset_refusal
from products.api.errors import API_PREFIX, body_too_large, error_body

StartResponse = Callable[..., Any]


class ChunkedBodyApp:
    """WSGI wrapper: a chunked request body, read and passed on with its Content-Length."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        encoding = environ.get("HTTP_TRANSFER_ENCODING")
        content_coding = environ.get("HTTP_CONTENT_ENCODING", "")
        if content_coding.strip().lower() not in ("", "identity") and _has_body(environ):
            return _refuse(
                environ,
                start_response,
                "415 Unsupported Media Type",
                "unsupported_media_type",
                f"Content-Encoding {content_coding!r} is not supported: send the body "
                "uncompressed.",
                [("Accept-Encoding", "identity")],
            )
        bad_charset = _no_text_charset(environ)
        if bad_charset is not None:
            return _refuse(environ, start_response, "400 Bad Request", "parse_error", bad_charset)
        if encoding is None:
            if _declared_too_large(environ):
                return _refuse(
                    environ, start_response, "413 Content Too Large", "too_large", body_too_large()
                )
            return self.app(environ, start_response)
        if [coding.strip() for coding in encoding.lower().split(",")] != ["chunked"]:
            # gunicorn undoes only the chunking: a gzip coding would reach the parser as bytes
            # and be reported as bad JSON.
            return _refuse(
                environ,
                start_response,
                "501 Not Implemented",
                "not_implemented",
                f"Transfer-Encoding {encoding!r} is not supported: send the body as is, with a "
                "Content-Length or chunked.",
            )
        if not environ.get("wsgi.input_terminated"):
            return _refuse(
                environ,
                start_response,
                "411 Length Required",
                "length_required",
                "Send the request body with a Content-Length header.",
            )
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        stream = environ["wsgi.input"]
        body = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(body) > limit:
            return _refuse(
                environ, start_response, "413 Content Too Large", "too_large", body_too_large()
            )
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        del environ["HTTP_TRANSFER_ENCODING"]
        return self.app(environ, start_response)


def _declared_too_large(environ: dict[str, Any]) -> bool:
    """A request whose Content-Length is over DATA_UPLOAD_MAX_MEMORY_SIZE, on any path.

    Django refuses an API one too, once the body is read, as the API's JSON 413
    (errors.handler400); but with DEBUG on, Django answers the error with its HTML debug page
    and a 400 instead of the handler. Refused here, it is the same 413 in every setting, and the
    body is never read. Elsewhere Django counts only a form's fields against the limit, not a
    multipart body's files: an anonymous 30-50 MB upload to /admin/login/ was read to its end
    and spooled to a temporary file before its 403. Nothing here takes files, and no form comes
    near the limit (Django refuses fields past it anyway).
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:
        return False
    try:
        return int(environ.get("CONTENT_LENGTH") or 0) > limit
    except ValueError:  # gunicorn refuses such a header before the app; Django reads it as 0
        return False


def _no_text_charset(environ: dict[str, Any]) -> str | None:
    """The refusal of the Content-Type's charset, if Django would take it as the request's
    encoding (as HttpRequest._set_content_type_params does) and it is no text encoding."""
    content_type = environ.get("CONTENT_TYPE", "")
    if "charset" not in content_type.lower():
        return None
    charset = parse_header_parameters(content_type)[1].get("charset")
    if charset is None:
        return None
    try:
        codecs.lookup(charset)
    except LookupError:
        return None
    return charset_refusal(charset)


def _has_body(environ: dict[str, Any]) -> bool:
    return "HTTP_TRANSFER_ENCODING" in environ or environ.get("CONTENT_LENGTH", "") not in ("", "0")


def _refuse(
    environ: dict[str, Any],
    start_response: StartResponse,
    status: str,
    code: str,
    message: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    if environ.get("PATH_INFO", "").startswith(API_PREFIX):
        content_type, content = "application/json", json.dumps(error_body(code, message)).encode()
    else:
        content_type, content = "text/plain; charset=utf-8", message.encode()
    # What is left of the body is the server's to discard (gunicorn reads past it).
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(content))),
            *(headers or []),
        ],
    )
    return [content]
