"""gunicorn's gthread worker, with a time limit on each read of a request.

gthread (27) hands a new connection to a thread, which waits up to 5 s for its first byte (then
leaves it to the poller until one comes, for the keep-alive time at most), and then reads the
request with a blocking socket and no timeout. A client that sends a request line and stops, or
headers and part of a body, holds that thread for as long as it keeps the connection open: 16
such connections held all eight threads of two workers, and /healthz waited with them.

Here a thread that reads a request waits at most `read_timeout` seconds (GUNICORN_READ_TIMEOUT_S,
handed over by gunicorn.conf.py) for each piece of it, the head or the body, whoever reads it
(gunicorn's parser, a WSGI layer, Django). A client silent that long is dropped: one line in the
log, no answer, no traceback. The limit is the kernel's (SO_RCVTIMEO, set once per connection),
not Python's socket timeout: set around each read, that one added two switches of the socket's
mode and a poll to every read, each a system call that lets go of the GIL, which another thread
of a busy worker may then hold for up to sys.getswitchinterval().

A connection kept alive between requests waits in the poller as before, for the keep-alive
time; a slow upload that keeps sending is not cut short. A client that sends a byte now and
then is not stopped by any per-read timeout: that is the buffering proxy's job (README,
"Deploying").

A connection that is not kept alive is closed as gthread closes it (RFC 9112, 9.6: the write
side first, then what the client still sends read and dropped until it closes, for 2 s at
most), but without waiting in the worker's main loop: gthread waited there for each such
client, so clients that read their `Connection: close` answer and kept the socket open held up
every other connection, accepting included (20 of them: /healthz waited 40 s). Here the
socket waits in the poller with the kept-alive ones.

Only plain HTTP/1.x connections are bounded, which is what gunicorn serves here (TLS ends at the
proxy in front): with TLS or HTTP/2 configured, gunicorn builds those connections itself.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import time
from functools import partial
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
    """What a connection's parser reads from: its socket, whose reads the kernel bounds."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, size: int) -> bytes:
        try:
            return self.sock.recv(size)
        except BlockingIOError:
            # A blocking socket's recv ends this way only when SO_RCVTIMEO's time has passed
            # (gunicorn's own bounded reads, draining an unread body, set a Python timeout:
            # theirs is a TimeoutError, and theirs to handle).
            if self.sock.gettimeout() is None:
                raise ClientIdle from None
            raise

    # gunicorn's parser sets and restores a timeout around such a drain.
    def gettimeout(self) -> float | None:
        return self.sock.gettimeout()

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)


class ThreadWorker(gthread.ThreadWorker):
    """gthread, dropping a client that goes quiet in the middle of a request, and closing
    connections without waiting for their clients in its main loop."""

    # Seconds; gunicorn.conf.py sets it from GUNICORN_READ_TIMEOUT_S (post_worker_init).
    # 0: no limit, as gthread.
    read_timeout: float = 0
    # How long a closing connection waits for its client to close, as gthread's close_graceful.
    LINGER_S = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Closing sockets (write side shut), and when each is closed at the latest.
        self._lingering: dict[socket.socket, float] = {}

    def enqueue_req(self, conn: Any) -> None:
        # gthread's finish_request (its main loop) closes a connection that is not kept alive
        # with conn.close(graceful=True): this connection's close lingers in the poller instead.
        if "close" not in vars(conn):
            conn.close = partial(self._close, conn)
        super().enqueue_req(conn)

    def _close(self, conn: Any, graceful: bool = False) -> None:
        if not graceful:
            gthread.TConn.close(conn)
            return
        sock = conn.sock
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
            self.poller.register(sock, selectors.EVENT_READ, self._lingering_readable)
        except (OSError, ValueError, KeyError):
            gthread.TConn.close(conn)  # already shut (a dropped client) or gone
            return
        self._lingering[sock] = time.monotonic() + self.LINGER_S
        # Still open: counted against worker_connections, and waited for as the worker stops.
        self.nr_conns += 1

    def _lingering_readable(self, sock: socket.socket) -> None:
        try:
            if sock.recv(65536):
                return  # dropped; the client may send more, until its time is up
        except BlockingIOError:
            return
        except OSError:
            pass
        self._closed(sock)  # the client closed (or the connection broke)

    def _closed(self, sock: socket.socket) -> None:
        del self._lingering[sock]
        self.nr_conns -= 1
        with contextlib.suppress(OSError, ValueError, KeyError):
            self.poller.unregister(sock)
        # What arrived since the last read is read too: unread bytes make close() a reset,
        # which drops the answer still queued for the client.
        with contextlib.suppress(OSError):
            for _ in range(16):
                if not sock.recv(65536):
                    break
        with contextlib.suppress(OSError):
            sock.close()

    def murder_keepalived(self, force: bool = False) -> None:
        # Called by the main loop at least once a second, and with force=True as it ends.
        super().murder_keepalived(force)
        now = time.monotonic()
        for sock, deadline in list(self._lingering.items()):
            if force or deadline <= now:
                self._closed(sock)

    def handle(self, conn: Any) -> Any:
        if conn.parser is None and self.read_timeout > 0 and self._plain_http(conn):
            # What TConn.init() makes for such a connection, reading through _Reads; the
            # socket's blocking reads end after read_timeout (setblocking leaves this alone).
            seconds, fraction = divmod(self.read_timeout, 1)
            conn.sock.setsockopt(
                socket.SOL_SOCKET,
                socket.SO_RCVTIMEO,
                struct.pack("ll", int(seconds), int(fraction * 1_000_000)),
            )
            conn.parser = http.get_parser(self.cfg, _Reads(conn.sock), conn.client)
        try:
            return super().handle(conn)
        except ClientIdle:
            self.log.info(
                "Closed the connection of %s: nothing received for %s s in the middle of a request",
                _address(conn.client),
                self.read_timeout,
            )
            # No lingering close for a client that sends nothing: shut both ways now.
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
