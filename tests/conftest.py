"""Shared fixtures. Every test talks to the real PostgreSQL, Redis and RabbitMQ."""

from __future__ import annotations

import io
import logging
import os
import signal
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django_ratelimit import core as ratelimit_core
from django_redis import get_redis_connection

from inventory_project import logs
from products import cache as product_cache
from tests.workers import running_worker

TEST_SETTINGS = "inventory_project.settings.test"


def pytest_configure(config: pytest.Config) -> None:
    # The fixtures below delete every key under the settings' cache prefix, before and after
    # each test. Under any other settings module that prefix is `make run`'s (`inv`, or .env's
    # CACHE_KEY_PREFIX), and a running server lost its cache, rate limits and locks at every
    # test. A DJANGO_SETTINGS_MODULE in the environment (a shell that exported .env) wins over
    # pyproject.toml's, so it is checked here. pytest-django has put the module it chose there.
    module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if module != TEST_SETTINGS:
        raise pytest.UsageError(
            f"the tests run only under DJANGO_SETTINGS_MODULE={TEST_SETTINGS}, not {module!r}: "
            "they delete every cache key under the settings' prefix, which in other settings "
            "is a running server's. Unset DJANGO_SETTINGS_MODULE (pyproject.toml then gives "
            f"the test settings) or set it to {TEST_SETTINGS}."
        )
    # A shell without job control starts a background job (`make test &`, `setsid make test
    # &`) with SIGINT ignored, and every process the job starts inherits that: the test that
    # stops a child with Ctrl-C waited 30 s for it and failed. A handler, unlike "ignored", is
    # reset to the default when a child starts.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    """Each test starts with an empty cache (only this project's test prefix is touched).

    The product near cache goes too. A test's writes are rolled back, never committed, so they
    bump no counter, and deleting a counter that was never set sends no invalidation: a page
    the test client cached from rows that were rolled back would outlive the test.
    """
    _delete_test_keys()
    logs.reset_all()  # an outage's once-a-minute lines, written by an earlier test
    _reset_product_cache()
    product_cache.forget_queued_invalidations()  # ids a rolled-back test never committed
    yield
    _delete_test_keys()
    _reset_product_cache()


def _reset_product_cache() -> None:
    """The client and near cache built anew, and no outage state left by a test that broke
    Redis: no rest, no failed sends counted."""
    product_cache.reset()
    product_cache._state.suspect = False
    product_cache._state.send_failures = 0
    product_cache._state.skip_sends_until = 0.0


@pytest.fixture(autouse=True)
def _one_rate_limit_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's requests count in one rate-limit window: django-ratelimit's clock stands
    still at the test's start.

    Its windows are fixed, and each client's ends at a second of every minute set by its key
    (zlib.crc32 of it: hh:mm:39 for `ip:10.9.0.1`). A test whose requests straddled that second
    counted the later ones in a new window, and the 429 it expected was a 200.
    """
    now = time.time()
    monkeypatch.setattr(ratelimit_core, "time", SimpleNamespace(time=lambda: now))


class _UnformattableLines(logging.Handler):
    """Log records whose message and arguments do not fit together."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The settings' handler may have seen the record first: its filter rewrites such a
        # line in place (inventory_project/logs.py).
        if str(record.msg).startswith(logs.UNFORMATTABLE):
            self.lines.append(str(record.msg))
            return
        try:
            record.getMessage()
        except Exception as exc:
            self.lines.append(f"{record.msg!r} % {record.args!r}: {exc}")


@pytest.fixture(autouse=True)
def _log_lines_format(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every line the code under test logs can be formatted with its arguments.

    The settings' filter writes such a line as "unformattable log line" rather than raise, so a
    message emptied or mangled by a change (a mutant) went unnoticed by a test that looks only
    for an argument's text in the output. A test that logs one on purpose is marked
    `unformattable_log_lines`. Lines logged by a worker's pool while Celery holds the root
    logger (tests/workers.py) are not seen.
    """
    watcher = _UnformattableLines()
    root = logging.getLogger()
    root.addHandler(watcher)
    try:
        yield
    finally:
        root.removeHandler(watcher)
    if watcher.lines and request.node.get_closest_marker("unformattable_log_lines") is None:
        pytest.fail(f"lines logged that cannot be formatted: {watcher.lines}")


def _delete_test_keys() -> None:
    try:
        redis = get_redis_connection("default")
        prefix = cache.make_key("")  # "<KEY_PREFIX>:<version>:"
        # The whole test prefix: includes keys written by django-ratelimit and locks. Not the
        # server's run_id: without it, the next new connection, in the middle of a test,
        # would bump the epoch (products.cache.redis_connected).
        pattern = prefix.split(":", 1)[0] + ":*"
        keep = product_cache.server_key().encode()
        for key in redis.scan_iter(match=pattern, count=1000):
            if key != keep:
                redis.delete(key)
    except Exception:
        pass


@pytest.fixture
def celery_worker() -> Iterator[object]:
    """A real Celery worker (threads in this process) consuming the test queue over RabbitMQ.

    Tests using it need `transaction=True` database access: the worker's threads use their own
    database connections and see only committed data.
    """
    with running_worker() as worker:
        yield worker


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """What the settings' stderr handler (LOGGING, its filters included) writes in the test."""
    (handler,) = [h for h in logging.getLogger().handlers if h.name == "stderr"]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    before = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(before)
