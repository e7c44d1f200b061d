"""Products test helpers: users with and without model permissions, tokens, a product factory."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import factory
import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from products import cache
from products.models import Product


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Widget {n:05d}")
    price = Decimal("9.99")
    stock_level = 10


def make_user(username: str, *perms: str) -> object:
    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    if perms:
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="products", codename__in=perms)
        )
    return user


def token_client(user: object) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def clerk(db) -> APIClient:
    """Token auth, every product permission."""
    return token_client(make_user("clerk", "add_product", "change_product", "delete_product"))


@pytest.fixture
def reader(db) -> APIClient:
    """Token auth, no permission at all."""
    return token_client(make_user("reader"))


@pytest.fixture
def product(db) -> Product:
    return ProductFactory(name="Steel Hammer", price=Decimal("12.50"), stock_level=7)


@pytest.fixture
def fresh_cache_state(monkeypatch) -> Iterator[None]:
    """Outage state of the test's own, and no wait after a failure.

    The cache client and near cache are the test's own already: the autouse `_clean_cache`
    (tests/conftest.py) resets them around every test.
    """
    monkeypatch.setattr(cache, "RETRY_AFTER_FAILURE_S", 0.0)
    cache._state.suspect = False
    yield
    cache._state.suspect = False


@contextmanager
def redis_round_trips() -> Iterator[list[Any]]:
    """What this thread sends to Redis, one item per round trip (a pipeline or a script is one)."""
    sent: list[Any] = []
    thread = threading.get_ident()
    real = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        if threading.get_ident() == thread:
            sent.append(command)
        real(self, command, check_health)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
        yield sent


# --- Redis servers of a test's own ------------------------------------------------------------


def redis_binary_and_port() -> tuple[str, int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return binary, probe.getsockname()[1]


def start_redis(
    binary: str, workdir: str, *, port: int = 0, unix_socket: str | None = None
) -> subprocess.Popen[bytes]:
    """A Redis server on `port`, or on `unix_socket` alone (port 0), keeping its snapshots
    (only those asked for) in `workdir`.

    The port was free when `redis_binary_and_port` looked, and is bound only now: the server
    that answers must be this one (its process id), not another test's that took the port
    meanwhile, which the test would then stop or break."""
    args = [binary, "--port", str(port), "--save", "", "--dir", workdir, "--appendonly", "no"]
    if unix_socket is None:
        args += ["--bind", "127.0.0.1"]
        client = redis.Redis(port=port)
    else:
        args += ["--unixsocket", unix_socket]
        client = redis.Redis(unix_socket_path=unix_socket)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            answering = client.info("server")["process_id"]
        except redis.ConnectionError:
            if proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            proc.kill()
            raise
        if answering != proc.pid:
            proc.kill()
            raise RuntimeError(f"port {port}: another Redis (pid {answering}) answers on it")
        return proc


def caches_on(location: str) -> dict[str, Any]:
    """CACHES with the cache on the Redis at `location` (a test's own)."""
    return {"default": {**settings.CACHES["default"], "LOCATION": location}}


@pytest.fixture
def unix_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own reached by a unix socket only (no TCP port), which the
    test may stop: its socket's path and its process."""
    with own_unix_redis() as server:
        yield server


@contextmanager
def own_unix_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`unix_redis`, for a test outside tests/products (or for part of one)."""
    binary, _ = redis_binary_and_port()
    workdir = tempfile.mkdtemp(prefix="unix-redis-")
    path = f"{workdir}/redis.sock"
    proc = start_redis(binary, workdir, unix_socket=path)
    try:
        yield path, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Parametrized indirectly: "tcp" is the tests' Redis as configured; "unix" is the cache
    on a Redis of the test's own, through REDIS_URL=unix://<path> (a configuration the rest of
    the tests never run)."""
    if request.param == "tcp":
        yield request.param
        return
    path, _ = request.getfixturevalue("unix_redis")
    with override_settings(CACHES=caches_on(f"unix://{path}?db=0")):
        yield request.param
    assert redis.Redis(unix_socket_path=path).dbsize() > 0, (
        "nothing reached the unix socket's Redis"
    )


over_tcp_and_unix = pytest.mark.parametrize("transport", ["tcp", "unix"], indirect=True)
