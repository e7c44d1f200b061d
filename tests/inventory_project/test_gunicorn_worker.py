"""The web's gunicorn worker (inventory_project/gunicorn_worker.py): a client that goes quiet in
the middle of a request no longer holds a thread."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from products.models import Product
from tests.inventory_project.conftest import serving
from tests.processes import open_files
from tests.products.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)

# Two threads, and a second's wait for each piece of a request.
SMALL = {"GUNICORN_THREADS": "2", "GUNICORN_READ_TIMEOUT_S": "1"}
HEAD_STARTED = b"GET /api/products/1 HTTP/1.1\r\nHost: localhost\r\n"
BODY_STARTED = (
    b"POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\n"
    b"Cookie: csrftoken=abcdefghijklmnopqrstuvwxyzABCDEF\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 100000\r\n\r\nusername=a&pass"
)


def _connect(port: int, sent: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(sent)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _status(sock: socket.socket, request: bytes) -> int:
    """Send a whole request and read its answer's status line."""
    sock.sendall(request)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    return int(head.split()[1])


def _healthz(keep_alive: bool = False) -> bytes:
    connection = b"" if keep_alive else b"Connection: close\r\n"
    return b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + connection + b"\r\n"


def test_clients_quiet_in_the_middle_of_a_request_are_dropped_and_the_rest_answered(
    tmp_path: Path,
) -> None:
    """Six connections that stopped in a request's head or body, three times the threads:
    without the limit they held both threads for as long as they stayed open."""
    log = tmp_path / "error.log"
    env = {**SMALL, "GUNICORN_CMD_ARGS": f"--error-logfile {log}"}
    with serving(**env) as port:
        quiet = [_connect(port, HEAD_STARTED) for _ in range(3)]
        quiet += [_connect(port, BODY_STARTED) for _ in range(3)]
        try:
            time.sleep(0.5)  # each taken by a thread, or waiting for one
            with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
                assert _status(probe, _healthz()) == 200
            answers = [_answer(sock) for sock in quiet]
        finally:
            for sock in quiet:
                sock.close()
    assert answers == [b""] * 6  # closed, with nothing to answer (no 500)
    lines = log.read_text().splitlines()
    dropped = [line for line in lines if "nothing received for 1 s" in line]
    assert len(dropped) == 6, lines
    assert all("ip=127.0.0.1" in line for line in dropped)
    assert not [line for line in lines if "Traceback" in line or "Error handling" in line]
    assert not [line for line in lines if "Booting worker" in line][1:]  # never restarted


def test_a_kept_alive_connection_still_waits_its_keep_alive_time() -> None:
    """Between requests a connection waits in gthread's poller, not under the read limit."""
    with serving(**SMALL) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        first = _status(sock, _healthz(keep_alive=True))
        time.sleep(2.5)  # past the read limit, within the keep-alive time (5 s)
        sock.recv(65536)  # the rest of the first answer
        second = _status(sock, _healthz())
    assert (first, second) == (200, 200)


def test_an_upload_of_the_largest_body_sent_slowly_is_read_whole() -> None:
    """Each pause below the limit, the whole upload well past it."""
    token = Token.objects.create(user=make_user("clerk", "add_product")).key
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    start = b'{"name": "Slow upload", "price": "1.00", "stock_level": 1'
    body = start + b" " * (limit - len(start) - 1) + b"}"
    head = (
        "POST /api/products HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Authorization: Token {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with serving(**SMALL) as port, _connect(port, head) as sock:
        pieces = 5
        size = -(-len(body) // pieces)
        for start_at in range(0, len(body), size):
            time.sleep(0.6)
            sock.sendall(body[start_at : start_at + size])
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:300]
    created = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert Product.objects.get(pk=created["id"]).name == "Slow upload"


def test_clients_that_keep_a_closed_connection_open_hold_up_no_other_client() -> None:
    """gthread closed a connection that was not kept alive in its main loop, waiting up to 2 s
    for the client to close too: twelve clients that read their `Connection: close` answer and
    kept the socket open held up accepting for about 24 s. The probe's 10 s wait would fail."""
    with serving(**SMALL) as port:
        held = [_connect(port, _healthz()) for _ in range(12)]
        try:
            answers = [_answer(sock) for sock in held]  # each answered, then its FIN
            with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
                assert _status(probe, _healthz()) == 200
        finally:
            for sock in held:
                sock.close()
    assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers)


def _client_sockets_of_the_worker_on(port: int) -> int:
    """How many sockets the one worker of the gunicorn serving `port` holds open, its listener
    among them.

    `serving` returns once the port takes connections, and the master listens before it forks
    its worker: the worker is looked for until it is there (it failed once, 1 of 1,755 tests).
    """
    ours = f"PORT={port}".encode()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in [name for name in os.listdir("/proc") if name.isdigit()]:
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
                parent_environ = Path(f"/proc/{parent}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if ours in environ and ours in parent_environ:  # the worker: its master has it too
                return sum(link.startswith("socket:") for link in open_files(pid))
        time.sleep(0.05)
    raise AssertionError(f"no worker of the gunicorn on port {port}")


def test_closing_connections_count_against_the_workers_connections() -> None:
    """Connections left to close in the poller were not counted: with a cap of three, forty
    clients that kept their closed connections open were forty sockets in the worker at once
    (past its file descriptor limit, accept() failed and the worker died)."""
    with serving(**SMALL, GUNICORN_WORKER_CONNECTIONS="3") as port:
        before = _client_sockets_of_the_worker_on(port)
        assert before >= 1  # its listener: the count sees the worker's sockets
        held = [_connect(port, _healthz()) for _ in range(3)]
        try:
            answers = [_answer(sock) for sock in held]
            held += [_connect(port, _healthz()) for _ in range(10)]
            time.sleep(0.5)  # for the worker to take whatever it would take
            during = _client_sockets_of_the_worker_on(port) - before
        finally:
            for sock in held:
                sock.close()
    assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers)
    assert during <= 3, during
