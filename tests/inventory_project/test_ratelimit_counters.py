"""django-ratelimit's counters, counted in one round trip (inventory_project/ratelimit_counters.py),
against the real Redis: the same counts as django-redis's own client gives, at half the trips."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.test import RequestFactory, override_settings
from django_ratelimit.core import get_usage
from django_redis import get_redis_connection
from django_redis.client import DefaultClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from inventory_project.ratelimit_counters import CountingClient
from inventory_project.wsgi import application
from tests.processes import closed_port
from tests.products.api.wsgi_client import send
from tests.products.conftest import (
    ProductFactory,
    caches_on,
    own_unix_redis,
    redis_round_trips,
)

pytestmark = pytest.mark.django_db

# The same Redis and prefix: "library" is the default cache with django-redis's own client.
_LIBRARY = {
    **settings.CACHES["default"],
    "OPTIONS": {
        **settings.CACHES["default"]["OPTIONS"],
        "CLIENT_CLASS": "django_redis.client.DefaultClient",
    },
}
_BOTH = {"default": settings.CACHES["default"], "library": _LIBRARY}


def _usage(alias: str, client: str, *, increment: bool, rate: str = "3/h") -> Any:
    """django-ratelimit's usage of `client` through the cache `alias`. (An hour's window: a
    window ending within a test would restart its counts.)"""
    request = RequestFactory().get("/", REMOTE_ADDR=client)
    with override_settings(RATELIMIT_USE_CACHE=alias):
        return get_usage(request, group="counters", key="ip", rate=rate, increment=increment)


@override_settings(CACHES=_BOTH)
def test_the_counts_are_those_of_django_redis_own_client() -> None:
    """Each client counted, read, and over its limit, through either cache: the same answers."""
    assert isinstance(caches["default"].client, CountingClient)
    steps = [False, True, True, False, True, True, False]
    answers = {}
    for alias, client in (("default", "10.7.0.1"), ("library", "10.7.0.2")):
        answers[alias] = [
            {k: v for k, v in _usage(alias, client, increment=step).items() if k != "time_left"}
            for step in steps
        ]
    assert answers["default"] == answers["library"]
    assert [answer["count"] for answer in answers["default"]] == [0, 1, 2, 2, 3, 4, 4]
    assert [answer["should_limit"] for answer in answers["default"]][-2:] == [True, True]


def test_a_new_counter_expires_after_its_period_and_a_counter_without_a_ttl_gets_one() -> None:
    server = get_redis_connection("default")
    assert _usage("default", "10.7.0.3", increment=True)["count"] == 1
    (key,) = server.keys(caches["default"].make_key("rl:*"))
    assert 3600 <= server.ttl(key) <= 3605  # the period and django-ratelimit's 5 s of fudge
    server.persist(key)
    assert _usage("default", "10.7.0.3", increment=True)["count"] == 2
    assert 3600 <= server.ttl(key) <= 3605


def test_a_read_of_a_count_writes_nothing() -> None:
    """As django-redis's add then get: on a Redis that refuses writes (noeviction at maxmemory,
    a read-only replica), a read of an existing counter still answers its count. (A Redis of
    this test's own, which it makes refuse writes.)"""
    with (
        own_unix_redis() as (path, _),
        override_settings(
            CACHES={
                **caches_on(f"unix://{path}?db=0"),
                "library": {**_LIBRARY, "LOCATION": f"unix://{path}?db=0"},
            }
        ),
    ):
        both = (("default", "10.7.0.6"), ("library", "10.7.0.7"))
        assert [_usage(alias, client, increment=True)["count"] for alias, client in both] == [1, 1]
        full = redis.Redis(unix_socket_path=path)
        full.config_set("maxmemory-policy", "noeviction")
        full.config_set("maxmemory", 1)
        reads = [_usage(alias, client, increment=False)["count"] for alias, client in both]
        counts = [_usage(alias, client, increment=True) for alias, client in both]
    assert reads == [1, 1]
    assert counts == [None, None]  # a count refused: both fail open


@pytest.mark.django_db(transaction=True)  # the WSGI application's own connection
def test_a_request_counted_costs_the_counter_one_round_trip() -> None:
    """django-redis's client took two: the add, then the incr of a counter that existed."""
    path = f"/api/products/{ProductFactory().pk}"
    trips = []
    for _ in range(3):  # a new counter, then one that exists
        with redis_round_trips() as sent:
            assert send(application, "GET", path, REMOTE_ADDR="10.7.0.4")[0] == 200
        trips.append(len([command for command in sent if b":rl:" in bytes(command[0])]))
    assert trips == [1, 1, 1]


def test_with_redis_down_a_count_is_tried_once_and_the_limit_fails_open(monkeypatch) -> None:
    """The incr or get after a failed add fails at once: a black-holed Redis costs one socket
    timeout, not two. A count fails open (RATELIMIT_FAIL_OPEN: served, unthrottled); a read of
    one answers 0, as with django-redis's own client (its get's default)."""
    tried: list[str] = []
    for name in ("add", "incr", "get"):
        real = getattr(DefaultClient, name)
        monkeypatch.setattr(
            DefaultClient,
            name,
            lambda self, *args, _real=real, _name=name, **kwargs: (
                tried.append(_name) or _real(self, *args, **kwargs)
            ),
        )
    unreachable = redis.Redis(host="127.0.0.1", port=closed_port(), retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(CountingClient, "get_client", lambda self, *args, **kwargs: unreachable)
    assert _usage("default", "10.7.0.5", increment=True) is None
    assert _usage("default", "10.7.0.5", increment=False)["count"] == 0
    assert tried == []  # neither django-redis's add nor the incr or get after it went to Redis


def test_other_keys_and_values_are_django_redis_own() -> None:
    cache = caches["default"]
    assert cache.add("counters-test", 1, 60)
    assert not cache.add("counters-test", 1, 60)  # added once, never counted
    assert cache.get("counters-test") == 1
    assert cache.add("rl:counters-test", "text", 60)
    assert not cache.add("rl:counters-test", "text", 60)
    assert cache.get("rl:counters-test") == "text"


@pytest.mark.parametrize("value", [0, 1])
def test_a_counter_holding_something_else_is_an_error_not_a_crash(value: int) -> None:
    """Redis refuses to count it (not an integer): a failed count, as when Redis is down (the
    limit fails open). With django-redis's own client, get_usage raised (a 500)."""
    cache = caches["default"]
    cache.set("rl:counters-text", "text", 60)
    assert cache.add("rl:counters-text", value, 60) is None  # the error, ignored
    assert cache.get("rl:counters-text", "default") == "default"
    assert cache.get("rl:counters-text") == "text"  # nothing kept now: django-redis's get


def test_a_count_is_answered_only_for_its_own_key() -> None:
    """The count an add kept is for the incr or get of that key that follows it, once."""
    cache = caches["default"]
    assert cache.add("rl:counters-a", 1, 60)
    assert not cache.add("rl:counters-a", 1, 60)  # counted: 2, kept for the next call
    assert cache.get("rl:counters-b", "none") == "none"  # another key: Redis answers
    assert not cache.add("rl:counters-a", 1, 60)  # 3
    assert cache.incr("rl:counters-a") == 3  # the kept count, not a fourth
    assert cache.incr("rl:counters-a") == 4  # nothing kept: django-redis's incr
    assert not cache.add("rl:counters-a", 1, 60)  # 5
    assert cache.add("rl:counters-c", 1, 60)  # a new counter: its count is 1, nothing kept
    assert cache.incr("rl:counters-a") == 6
