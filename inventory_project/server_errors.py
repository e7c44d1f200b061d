"""The errors gunicorn answers itself, in the API's JSON error shape.

A request that gunicorn cannot parse never reaches Django: a request line longer than
`limit_request_line` (414), too many or too long header fields (431), a malformed request
line, header or chunk (400), an unknown transfer coding (501). gunicorn answers those with an
HTML page of its own. `install` replaces the function that writes that page
(`gunicorn.util.write_error`, which every worker class calls from `Worker.handle_error`), so
the answer is JSON as every other error here is: same status, same `Connection: close`.

gunicorn.conf.py installs it in each worker once the application is loaded (`post_worker_init`).
The request line may not have been read, so there is no path to tell an /api/ request from
another: every such answer is JSON.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from gunicorn import util

from products.api.errors import CODES_BY_STATUS, error_body

# The statuses gunicorn answers for requests it cannot parse (Worker.handle_error); a 400 here
# is a malformed request, not a field the API found invalid.
CODES = {
    **CODES_BY_STATUS,
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "header_fields_too_large",
}


def install(cfg: Any) -> None:
    """Make gunicorn's own error answers JSON; `cfg` is the worker's gunicorn config."""
    # gunicorn's own words for the two header limits name neither the limit nor its size.
    clearer = {
        "Error parsing headers: 'limit request headers fields'": (
            f"The request has more than {cfg.limit_request_fields} header fields."
        ),
        "Error parsing headers: 'limit request headers fields size'": (
            f"A header field is longer than {cfg.limit_request_field_size} bytes."
        ),
    }

    def write_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
        message = clearer.get(mesg) or mesg or f"{reason}."
        body = json.dumps(error_body(CODES.get(status_int, "error"), message)).encode()
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        util.write_nonblock(sock, head.encode("latin-1") + body)

    util.write_error = write_error
