"""gunicorn's gthread worker, with a time limit on each read of a request.

gthread (27) hands a new connection to a thread, which waits up to 5 s for its first byte (then
leaves it to the poller until one comes, for the keep-alive time at most), and then reads the
request with a blocking socket and no timeout. A client that sends a request line and stops, or
headers and part of a body, holds that thread for as long as it keeps the connection open: 16
such connections held all eight threads of two workers, and /healthz waited with them.

Here a thread that reads a request waits at most `read_timeout` seconds (GUNICORN_READ_TIMEOUT_S,
handed over by gunicorn.conf.py) for each piece of it, the head or the body, whoever reads it
(gunicorn's parser, a WSGI layer, Django). A client silent that long is dropped: one line in the
log, no answer, no traceback. A connection kept alive between requests waits in the poller as
before, for the keep-alive time; a slow upload that keeps sending is not cut short. A client that
sends a byte now and then is not stopped by any per-read timeout: that is the buffering proxy's
job (README, "Deploying").

Only plain HTTP/1.x connections are bounded, which is what gunicorn serves here (TLS ends at the
proxy in front): with TLS or HTTP/2 configured, gunicorn builds those connections itself.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from gunicorn import http
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread


class ClientIdle(BaseException):
    """A client sent nothing for `read_timeout` seconds in the middle of its request.

    A BaseException, like the SystemExit gunicorn aborts a request with: Django turns any
    Exception raised while it reads a body into a 500 (logged with its traceback), and
    nothing is to be answered to a client that stopped sending. The worker's `handle` catches
    it. Django's request_finished is not sent for such a request: a database connection it
    took goes back to the pool when the thread's next request starts (request_started).
    """


class _Reads:
    """What a connection's parser reads from: its socket, each wait for data bounded."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout

    def recv(self, size: int) -> bytes:
        sock = self.sock
        if sock.gettimeout() is not None:
            # gunicorn's own bounded read (draining an unread body with its deadline): its
            # timeout, and its handling of it.
            return sock.recv(size)
        sock.settimeout(self.timeout)
        try:
            return sock.recv(size)
        except TimeoutError:
            raise ClientIdle from None
        finally:
            sock.settimeout(None)  # blocking again, as gthread left it: its writes are its own

    # gunicorn's parser sets and restores a timeout around such a drain.
    def gettimeout(self) -> float | None:
        return self.sock.gettimeout()

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)


class ThreadWorker(gthread.ThreadWorker):
    """gthread, dropping a client that goes quiet in the middle of a request."""

    # Seconds; gunicorn.conf.py sets it from GUNICORN_READ_TIMEOUT_S (post_worker_init).
    # 0: no limit, as gthread.
    read_timeout: float = 0

    def handle(self, conn: Any) -> Any:
        if conn.parser is None and self.read_timeout > 0 and self._plain_http(conn):
            # What TConn.init() makes for such a connection, reading through _Reads.
            conn.parser = http.get_parser(
                self.cfg, _Reads(conn.sock, self.read_timeout), conn.client
            )
        try:
            return super().handle(conn)
        except ClientIdle:
            self.log.info(
                "Closed the connection of %s: nothing received for %s s in the middle of a request",
                _address(conn.client),
                self.read_timeout,
            )
            # gthread closes it gracefully, waiting up to 2 s (in its main loop) for the client
            # to close first; a client that sends nothing would make it wait them out.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            return False

    def _plain_http(self, conn: Any) -> bool:
        """Whether TConn.init() would read the connection as plain HTTP/1.x through the socket."""
        return not self.cfg.is_ssl and not negotiation.prior_knowledge_allowed(
            self.cfg, conn.client
        )


def _address(client: Any) -> str:
    if isinstance(client, tuple) and client:
        return f"ip={client[0]}"
    return "a unix socket client"
