"""The product read cache, against the real Redis and PostgreSQL.

Writes are committed for real (`transaction=True`), since invalidation runs after commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import pytest
import redis
from django.conf import settings
from django.core.cache import cache as django_cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import OperationalError, ProgrammingError, connection, transaction
from django.test import RequestFactory, override_settings
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from inventory_project.wsgi import application
from products import cache, selectors, services
from products.api import fast_path
from products.api.fast_path import ProductCacheMiddleware
from products.api.views import ProductDetailView
from products.models import Product
from tests.inventory_project.conftest import json_request, serving
from tests.outage import Outage
from tests.processes import closed_port, listener, logged_line
from tests.products.api.wsgi_client import send
from tests.products.conftest import (
    ProductFactory,
    caches_on,
    make_user,
    over_tcp_and_unix,
    redis_round_trips,
    token_client,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_cache_state")]


def stock_of(client: APIClient, product_id: int) -> int:
    response = client.get(f"/api/products/{product_id}")
    assert response.status_code == 200, response.content
    return response.json()["stock_level"]


@over_tcp_and_unix
def test_a_repeated_detail_read_is_served_without_the_database(
    django_assert_num_queries, transport
) -> None:
    product = ProductFactory(stock_level=7)
    client = APIClient()
    first = client.get(f"/api/products/{product.pk}")
    with django_assert_num_queries(0):
        second = client.get(f"/api/products/{product.pk}")
    assert second.status_code == 200
    assert second.content == first.content
    assert second["ETag"] == first["ETag"] == f'"{product.pk}-1-1"'
    assert second["Content-Type"] == "application/json"


def test_a_leader_slower_than_its_lock_does_not_release_the_next_leaders_lock() -> None:
    product = ProductFactory()
    lookup = cache.detail_lookup(product.pk)
    redis = cache._redis()
    _, first = cache.claim(lookup)
    assert first is not None
    redis.delete(lookup.lock_key)  # the first leader's lock expired: it is still loading
    _, second = cache.claim(lookup)  # the next reader to miss leads now
    assert second is not None
    assert second != first
    cache.release(lookup, first)  # the first leader is done at last
    assert redis.get(lookup.lock_key) == second  # later readers still wait for the second
    cache.release(lookup, second)
    assert not redis.exists(lookup.lock_key)


def test_a_stampede_lock_expires_without_its_release() -> None:
    """A leader that dies before it releases (a killed worker) must not leave its key locked
    for good: every reader after it would wait FILL_WAIT_S and load, none would lead and store."""
    lookup = cache.detail_lookup(1)
    _, lease = cache.claim(lookup)
    assert lease is not None
    assert 0 < cache._redis().pttl(lookup.lock_key) <= cache.LOCK_TTL_MS


def test_a_reader_waiting_for_a_leader_that_stored_nothing_loads_at_once(monkeypatch) -> None:
    """The leader found nothing to cache (a 404, an error) and released its lock: the readers
    waiting for it load themselves instead of polling for an entry until FILL_WAIT_S."""
    product = ProductFactory()
    lookup = cache.detail_lookup(product.pk)
    _, lease = cache.claim(lookup)
    assert lease is not None
    waits: list[float] = []

    def leader_done_meanwhile(seconds: float) -> None:
        waits.append(seconds)
        cache.release(lookup, lease)

    monkeypatch.setattr(
        cache, "time", SimpleNamespace(monotonic=time.monotonic, sleep=leader_done_meanwhile)
    )
    assert cache.claim(lookup) == (None, None)
    assert len(waits) == 1


@pytest.mark.parametrize(
    ("error", "released"),
    [
        (redis.exceptions.ConnectionError("Connection reset by peer"), True),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), False),
    ],
)
def test_a_leader_whose_store_loses_its_connection_releases_its_lock_alone(
    monkeypatch, error: Exception, released: bool
) -> None:
    """The store's script may not have run: the release goes alone, on a new connection, as
    when the two were apart. Not after a timeout, which a second try would cost again: the
    lock expires (LOCK_TTL_MS)."""
    lookup = cache.detail_lookup(1)
    _, lease = cache.claim(lookup)
    assert lease is not None
    script = cache._script

    def lost(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(
        cache,
        "_script",
        lambda name, source: lost if name == "store_release" else script(name, source),
    )
    cache.store(lookup, cache.Entry(headers={}, body=b"{}"), lease)
    assert cache._state.suspect
    assert cache._redis().exists(lookup.lock_key) == (not released)


def _connection_reset(*args: object, **kwargs: object) -> None:
    raise redis.exceptions.ConnectionError("Connection reset by peer")


@pytest.mark.parametrize("step", ["waiting", "storing", "releasing"])
def test_redis_failing_after_a_miss_is_no_cache_not_an_error(monkeypatch, step: str) -> None:
    """Between a reader's lookup and its store, Redis may go: the reader loads from
    PostgreSQL as with no cache, and this process rests from Redis as after any failure."""
    product = ProductFactory()
    lookup = cache.detail_lookup(product.pk)
    _, lease = cache.claim(lookup)  # this reader leads
    assert lease is not None
    if step == "waiting":  # another reader, waiting for the leader's entry
        monkeypatch.setattr(cache._redis(), "pipeline", _connection_reset)
        assert cache.claim(lookup) == (None, None)
    elif step == "storing":
        monkeypatch.setattr(cache._redis(), "set", _connection_reset)
        cache.store(lookup, cache.Entry(headers={}, body=b"{}"))
    else:
        monkeypatch.setattr(cache, "_script", lambda name, source: _connection_reset)
        cache.release(lookup, lease)
    assert cache._state.suspect


def _save_in_one_transaction(products: list[Product], *, stock_level: int) -> None:
    with transaction.atomic():
        for product in products:
            product.stock_level = stock_level
            product.save()


def test_ids_an_interrupted_send_did_not_reach_go_with_the_next_commit(monkeypatch) -> None:
    """A send interrupted between batches (Ctrl-C, a worker stopping) leaves the rest of its ids
    queued: the next commit on the connection sends them, rather than their cached reads
    staying stale until the listener or the TTL."""
    monkeypatch.setattr(cache, "INVALIDATE_BATCH", 2)
    products = ProductFactory.create_batch(5, stock_level=5)
    anon = APIClient()
    assert [stock_of(anon, p.pk) for p in products] == [5] * 5
    calls: list[list[int]] = []
    invalidate = cache.invalidate

    def interrupted_at_the_second_batch(product_ids) -> None:
        calls.append(list(product_ids))
        if len(calls) == 2:
            raise KeyboardInterrupt
        invalidate(product_ids)

    monkeypatch.setattr(cache, "invalidate", interrupted_at_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        _save_in_one_transaction(products, stock_level=1)
    assert len(calls) == 2
    assert [stock_of(anon, p.pk) for p in products] == [1, 1, 5, 5, 5]

    ProductFactory()  # the connection's next commit
    assert [stock_of(anon, p.pk) for p in products] == [1] * 5


def test_a_reader_waiting_for_a_leader_polls_redis_a_few_times_not_in_a_busy_loop(
    monkeypatch,
) -> None:
    """Waiters back off (2 ms doubling to 50 ms): a hundred of them spinning on a slow
    leader's key would load Redis with thousands of round trips each."""
    monkeypatch.setattr(cache, "FILL_WAIT_S", 0.3)
    lookup = cache.detail_lookup(1)
    _, lease = cache.claim(lookup)  # the leader, which has stored nothing yet
    assert lease is not None
    redis, polls = cache._redis(), []
    pipeline = redis.pipeline
    monkeypatch.setattr(redis, "pipeline", lambda *a, **k: polls.append(1) or pipeline(*a, **k))
    assert cache.claim(lookup) == (None, None)  # waited for it in vain: loads itself
    assert 0 < len(polls) <= 12
    cache.release(lookup, lease)


def test_a_reader_that_claims_after_a_leader_stored_serves_its_entry() -> None:
    """A leader stored and released between this reader's lookup and its claim: the reader
    answers the stored entry, and leaves no lock behind for the next readers to wait on."""
    missed = cache.detail_lookup(1)
    leader = cache.detail_lookup(1)
    _, lease = cache.claim(leader)
    assert lease is not None
    stored = cache.Entry(headers={"ETag": '"x"'}, body=b"{}")
    cache.store(leader, stored)
    cache.release(leader, lease)
    assert cache.claim(missed) == (stored, None)
    assert not cache._redis().exists(missed.lock_key)


def _miss_and_fill(product_id: int, entry: cache.Entry) -> cache.Lookup:
    lookup = cache.detail_lookup(product_id)
    assert lookup.entry is None
    claimed, lease = cache.claim(lookup)
    assert claimed is None
    assert lease is not None
    cache.store(lookup, entry, lease)
    return lookup


def test_a_miss_costs_three_round_trips_and_the_leaders_store_releases_its_lock() -> None:
    """The lookup, the claim (which looks again as it locks) and the store (which releases
    the lock): where these were five commands, a miss cost more than no cache at all."""
    entry = cache.Entry(headers={"ETag": '"x"'}, body=b"{}")
    _miss_and_fill(1, entry)  # the scripts are loaded: no NOSCRIPT round trip below
    with redis_round_trips() as sent:
        lookup = _miss_and_fill(2, entry)
    assert len(sent) == 3
    assert not cache._redis().exists(lookup.lock_key)
    assert cache.detail_lookup(2).entry == entry


def test_a_leader_storing_with_a_lease_no_longer_its_own_leaves_the_next_leaders_lock() -> None:
    lookup = cache.detail_lookup(1)
    _, first = cache.claim(lookup)
    assert first is not None
    redis_ = cache._redis()
    redis_.delete(lookup.lock_key)  # the first leader's lock expired: it is still loading
    _, second = cache.claim(lookup)
    assert second is not None
    entry = cache.Entry(headers={}, body=b"{}")
    cache.store(lookup, entry, first)  # the first leader is done at last
    assert redis_.get(lookup.lock_key) == second
    assert cache.detail_lookup(1).entry == entry


@pytest.mark.parametrize(
    ("path", "query", "fast_reads"),
    [
        ("detail", "", True),
        ("/api/products/search", "name=steel", True),  # the pages path (fast_reads.py)
        ("/api/products/search", "name=steel", False),  # the middleware
    ],
)
def test_a_miss_through_the_stack_costs_the_cache_three_round_trips(
    path: str, query: str, fast_reads: bool
) -> None:
    """Whichever layer loads the miss hands its lease to the store."""
    product = ProductFactory(name="Steel pot")
    path = f"/api/products/{product.pk}" if path == "detail" else path
    with override_settings(PRODUCT_FAST_READS=fast_reads):
        send(application, "GET", f"/api/products/{ProductFactory().pk}")  # scripts loaded
        with redis_round_trips() as sent:
            status, _, body = send(application, "GET", path, QUERY_STRING=query)
    assert status == 200
    assert b"Steel pot" in body
    assert len([command for command in sent if b":products:" in bytes(command[0])]) == 3
    assert cache._redis().keys(cache._key("lock:*")) == []  # the lock went with the store


@override_settings(PRODUCT_CACHE_TTL_S=0)  # Redis refuses the SET: "invalid expire time"
def test_a_leader_whose_store_fails_still_releases_its_lock() -> None:
    """Its waiters load themselves at once rather than at the lock's expiry, and the error is
    handled as any other (this process rests from Redis)."""
    lookup = cache.detail_lookup(1)
    _, lease = cache.claim(lookup)
    assert lease is not None
    cache.store(lookup, cache.Entry(headers={}, body=b"{}"), lease)
    assert cache._state.suspect
    assert not cache._redis().exists(lookup.lock_key)
    assert lookup.slot is not None
    assert not cache._redis().exists(lookup.slot.key)


def test_if_none_match_is_answered_304_from_the_cache(django_assert_num_queries) -> None:
    product = ProductFactory()
    client = APIClient()
    etag = client.get(f"/api/products/{product.pk}")["ETag"]
    with django_assert_num_queries(0):
        response = client.get(f"/api/products/{product.pk}", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304
    assert response["ETag"] == etag


@over_tcp_and_unix
def test_a_repeated_list_page_is_served_without_the_database(
    django_assert_num_queries, transport
) -> None:
    ProductFactory.create_batch(3)
    client = APIClient()
    first = client.get("/api/products?page=1&limit=2")
    with django_assert_num_queries(0):
        second = client.get("/api/products?limit=2&page=1")
    assert second.content == first.content


def test_a_new_shape_of_the_json_is_not_served_from_old_entries_nor_old_etags(
    django_assert_num_queries, monkeypatch
) -> None:
    product = ProductFactory()
    client = APIClient()
    old = client.get(f"/api/products/{product.pk}")
    client.get("/api/products?limit=2")
    monkeypatch.setattr(cache, "REPRESENTATION", 2)  # a deploy that changed the JSON

    with django_assert_num_queries(1):
        detail = client.get(f"/api/products/{product.pk}", HTTP_IF_NONE_MATCH=old["ETag"])
    with django_assert_num_queries(2):  # the count and the page's rows
        client.get("/api/products?limit=2")
    with django_assert_num_queries(0):
        again = client.get(f"/api/products/{product.pk}", HTTP_IF_NONE_MATCH=detail["ETag"])

    assert old["ETag"] == f'"{product.pk}-1-1"'
    assert detail.status_code == 200
    assert detail["ETag"] == f'"{product.pk}-1-2"'
    assert again.status_code == 304


# The JSON's shape under each REPRESENTATION: a product's keys and value types, and a page's
# keys. Changing the JSON fails this test until REPRESENTATION is bumped and its shape recorded
# here: cached bodies and ETags of the old shape must not outlive the deploy.
SHAPES = {
    1: {
        "product": {
            "id": "int",
            "name": "str",
            "price": "str",
            "stock_level": "int",
            "version": "int",
            "created_at": "str",
            "updated_at": "str",
        },
        "page": [
            "after_id",
            "count",
            "limit",
            "next",
            "page",
            "previous",
            "results",
            "total_pages",
        ],
    },
}


def test_the_json_has_the_shape_its_representation_number_names() -> None:
    product = ProductFactory()
    client = APIClient()
    detail = client.get(f"/api/products/{product.pk}").json()
    page = client.get("/api/products?limit=1").json()
    keyset = client.get("/api/products?after_id=0&limit=1").json()

    shape = {
        "product": {key: type(value).__name__ for key, value in detail.items()},
        "page": sorted(page),
    }
    assert sorted(keyset) == shape["page"]
    assert page["results"] == keyset["results"] == [detail]
    assert shape == SHAPES.get(cache.REPRESENTATION), (
        "The JSON changed: bump products.cache.REPRESENTATION and record its shape in SHAPES."
    )


def test_switched_off_every_read_goes_to_the_database(django_assert_num_queries) -> None:
    product = ProductFactory()
    client = APIClient()
    with override_settings(PRODUCT_CACHE_ENABLED=False):
        client.get(f"/api/products/{product.pk}")
        with django_assert_num_queries(1):
            client.get(f"/api/products/{product.pk}")


@over_tcp_and_unix
def test_an_api_write_is_visible_to_the_next_read(transport) -> None:
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    clerk = token_client(make_user("clerk", "change_product"))
    assert stock_of(anon, product.pk) == 5
    response = clerk.put(
        f"/api/products/{product.pk}", {"price": "1.00", "stock_level": 4}, format="json"
    )
    assert response.status_code == 200
    assert stock_of(anon, product.pk) == 4


@pytest.mark.parametrize("method", ["put", "patch"])
def test_an_api_update_leaves_what_the_next_read_answers_in_the_cache(
    method, django_assert_num_queries
) -> None:
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    clerk = token_client(make_user("clerk", "change_product"))
    write = getattr(clerk, method)
    response = write(
        f"/api/products/{product.pk}", {"price": "1.5", "stock_level": 4}, format="json"
    )
    assert response.status_code == 200

    with django_assert_num_queries(0):
        cached = anon.get(f"/api/products/{product.pk}")
    with override_settings(PRODUCT_CACHE_ENABLED=False):
        fresh = anon.get(f"/api/products/{product.pk}")
    assert cached.content == fresh.content
    assert {name: cached[name] for name in ("Content-Type", "ETag", "Vary", "Allow")} == {
        name: fresh[name] for name in ("Content-Type", "ETag", "Vary", "Allow")
    }


def test_a_session_update_leaves_the_headers_the_next_read_answers_in_the_cache() -> None:
    """A session's write is answered with `Vary: Accept, Cookie` already: kept as it is."""
    product = ProductFactory(stock_level=5)
    make_user("clerk", "change_product")
    clerk = APIClient()
    assert clerk.login(username="clerk", password="pw-clerk")
    response = clerk.patch(f"/api/products/{product.pk}", {"stock_level": 4}, format="json")
    assert (response.status_code, response["Vary"]) == (200, "Accept, Cookie")
    cached = APIClient().get(f"/api/products/{product.pk}")
    with override_settings(PRODUCT_CACHE_ENABLED=False):
        fresh = APIClient().get(f"/api/products/{product.pk}")
    assert cached.content == fresh.content
    assert cached["Vary"] == fresh["Vary"] == "Accept, Cookie"


@pytest.mark.parametrize(
    ("error", "traceback"),
    [
        (OperationalError("server closed the connection unexpectedly"), False),
        (ProgrammingError("permission denied for table products_product"), True),
    ],
    ids=["outage", "other"],
)
def test_an_update_is_answered_even_if_its_write_through_fails(
    monkeypatch, caplog, error: Exception, traceback: bool
) -> None:
    """An outage is logged as every request's failure in one says it, not with a traceback per
    PUT; any other failure (a permission taken away, say) is logged with what went wrong,
    since no outage line will say it."""
    product = ProductFactory(stock_level=5)
    clerk = token_client(make_user("clerk", "change_product"))

    def failing_version(**kwargs):
        raise error

    monkeypatch.setattr(selectors, "product_version", failing_version)
    response = clerk.put(
        f"/api/products/{product.pk}", {"price": "1", "stock_level": 4}, format="json"
    )
    assert response.status_code == 200
    assert stock_of(APIClient(), product.pk) == 4
    (record,) = [r for r in caplog.records if r.name == "products.api.fast_path"]
    if traceback:
        assert record.getMessage() == f"write-through of product {product.pk} skipped"
        assert record.exc_info is not None
        assert record.exc_info[0] is ProgrammingError
    else:
        assert record.getMessage().startswith("database unavailable: OperationalError")
        assert record.exc_info is None


def test_an_update_asking_for_another_json_format_is_not_written_through() -> None:
    product = ProductFactory(stock_level=5)
    clerk = token_client(make_user("clerk", "change_product"))
    response = clerk.put(
        f"/api/products/{product.pk}",
        {"price": "1", "stock_level": 4},
        format="json",
        HTTP_ACCEPT="application/json; indent=4",
    )
    assert response.status_code == 200
    assert b"\n" in response.content  # indented, as asked
    cached = APIClient().get(f"/api/products/{product.pk}")
    assert cached["Content-Type"] == "application/json"
    assert b"\n" not in cached.content


def test_a_read_asking_for_indented_json_neither_gets_nor_leaves_a_cached_page() -> None:
    product = ProductFactory()
    anon = APIClient()
    indented = anon.get(f"/api/products/{product.pk}", HTTP_ACCEPT="application/json; indent=4")
    assert b"\n" in indented.content
    assert b"\n" not in anon.get(f"/api/products/{product.pk}").content
    assert (
        b"\n"
        in anon.get(f"/api/products/{product.pk}", HTTP_ACCEPT="application/json; indent=4").content
    )


def test_an_update_answered_after_a_newer_write_committed_is_not_cached() -> None:
    """Two writers of one product: the older answer must not become the cached detail. Kept
    as both write paths keep an update's answer (the cache middleware and the WSGI one)."""
    product = ProductFactory(stock_level=5)
    older = services.product_update(product_id=product.pk, stock_level=4)
    services.product_update(product_id=product.pk, stock_level=3)  # newer, committed
    body = cache.Entry(headers={"ETag": older.etag}, body=b'{"stock_level":4}')
    fast_path.keep_as_detail(product.pk, body)
    assert stock_of(APIClient(), product.pk) == 3


def _not_asked() -> bool:
    raise AssertionError("the write-through asked PostgreSQL whether the write is current")


def test_a_write_through_with_the_cache_off_asks_postgresql_nothing() -> None:
    """Its check that no later write committed is a query per write, for an entry it would
    not store (as with Redis unreachable)."""
    product = ProductFactory(stock_level=5)
    with override_settings(PRODUCT_CACHE_ENABLED=False):
        cache.detail_write_through(product.pk, cache.Entry(headers={}, body=b"{}"), _not_asked)


def test_a_write_through_keeps_the_entry_a_reader_stored_under_the_same_version() -> None:
    """A reader that missed after the write's invalidation stored the current row already: the
    write's entry would be the same product at the same version, for a query and a SET."""
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    assert stock_of(anon, product.pk) == 5  # stored, under the product's current version
    cache.detail_write_through(
        product.pk, cache.Entry(headers={}, body=b'{"stock_level":4}'), _not_asked
    )
    assert stock_of(anon, product.pk) == 5


def test_an_update_whose_connection_fails_in_flight_still_invalidates() -> None:
    """It may have committed: the next read must not be the cached old row."""
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    assert stock_of(anon, product.pk) == 5  # cached

    def lost_after_commit(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("UPDATE"):
            raise OperationalError("server closed the connection unexpectedly")
        return result

    with connection.execute_wrapper(lost_after_commit), pytest.raises(OperationalError):
        services.product_update(product_id=product.pk, stock_level=4)
    assert stock_of(anon, product.pk) == 4


def test_an_update_in_a_transaction_is_invalidated_after_its_commit_not_before() -> None:
    """A reader between the invalidation and the commit reads the old row and stores it under
    the new key: sent before the commit, the invalidation leaves that entry current."""
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    read_meanwhile = {}

    def reader() -> None:
        read_meanwhile["stock"] = stock_of(APIClient(), product.pk)
        connection.close()

    with transaction.atomic():
        services.product_update(product_id=product.pk, stock_level=4)
        thread = threading.Thread(target=reader)
        thread.start()
        thread.join(timeout=10)
    assert read_meanwhile == {"stock": 5}  # not committed yet: the old row, now cached
    assert stock_of(anon, product.pk) == 4


def test_a_model_save_outside_the_api_is_visible_to_the_next_read() -> None:
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    assert stock_of(anon, product.pk) == 5
    product.stock_level = 3  # as the admin or a shell would
    product.save()
    assert stock_of(anon, product.pk) == 3


def test_a_delete_is_visible_to_the_next_read_and_list() -> None:
    product = ProductFactory()
    anon = APIClient()
    assert anon.get(f"/api/products/{product.pk}").status_code == 200
    assert anon.get("/api/products").json()["count"] == 1
    product.delete()
    assert anon.get(f"/api/products/{product.pk}").status_code == 404
    assert anon.get("/api/products").json()["count"] == 0


def test_a_missing_product_is_not_cached_as_an_answer() -> None:
    """Only a 200 is stored: a stored 404 would come back from the cache as a 200."""
    anon = APIClient()
    assert [anon.get("/api/products/999999").status_code for _ in range(2)] == [404, 404]


def test_a_create_invalidates_every_cached_list_and_search_page() -> None:
    ProductFactory(name="steel bolt", price=Decimal("5.00"))
    anon = APIClient()
    assert anon.get("/api/products").json()["count"] == 1
    assert anon.get("/api/products/search?name=steel").json()["count"] == 1
    services.product_create(name="steel nut", price=Decimal("6.00"), stock_level=1)
    assert anon.get("/api/products").json()["count"] == 2
    assert anon.get("/api/products/search?name=steel").json()["count"] == 2


def test_seeding_invalidates_cached_pages() -> None:
    anon = APIClient()
    assert anon.get("/api/products").json()["count"] == 0
    call_command("seed_products", "--count", "30")
    assert anon.get("/api/products").json()["count"] == 30


def test_a_late_store_of_a_row_read_before_a_write_is_never_served() -> None:
    """Reader reads the old row, the write commits and invalidates, then the reader stores."""
    product = ProductFactory(stock_level=10)
    read_done = threading.Barrier(2, timeout=10)
    write_done = threading.Barrier(2, timeout=10)
    view = ProductDetailView.as_view()

    def slow_view(request):
        response = view(request, pk=product.pk)
        response.render()
        read_done.wait()  # the old row is in hand
        write_done.wait()  # ... and the write has committed and invalidated
        return response

    middleware = ProductCacheMiddleware(slow_view)
    results = {}

    def reader() -> None:
        request = RequestFactory().get(f"/api/products/{product.pk}")
        results["late"] = middleware(request)
        connection.close()

    thread = threading.Thread(target=reader)
    thread.start()
    read_done.wait()
    services.product_update(product_id=product.pk, stock_level=9)
    write_done.wait()
    thread.join(timeout=10)

    assert b'"stock_level":10' in results["late"].content  # the late reader did read the old row
    assert stock_of(APIClient(), product.pk) == 9
    assert stock_of(APIClient(), product.pk) == 9


def test_an_invalidation_returns_only_after_one_more_round_trip(monkeypatch) -> None:
    """The fence of products/near_cache.py: Redis writes a command's invalidation pushes
    before it reads the next command, so once a PING sent after the bump is answered, every
    process's near cache has the push in its socket. Without the PING, a read elsewhere right
    after the write is acknowledged may find its old copy: a window too narrow to hit by
    reading, so this checks the round trip itself."""
    calls: list[str] = []
    script, client = cache._script, cache._redis()
    ping = client.ping

    def recorded_script(name, source):
        run = script(name, source)

        def recorded(**kwargs):
            result = run(**kwargs)
            calls.append(name)
            return result

        return recorded

    monkeypatch.setattr(cache, "_script", recorded_script)
    monkeypatch.setattr(client, "ping", lambda: calls.append("ping") or ping())
    cache.invalidate([1])
    assert calls == ["invalidate", "ping"]


def test_a_hundred_concurrent_misses_on_one_key_cost_one_database_read() -> None:
    product = ProductFactory()
    view = ProductDetailView.as_view()
    loads = []
    lock = threading.Lock()

    def counting_view(request):
        with lock:
            loads.append(1)
        time.sleep(0.05)  # a slow query widens the window in which the others miss too
        response = view(request, pk=product.pk)
        response.render()
        return response

    middleware = ProductCacheMiddleware(counting_view)
    start = threading.Barrier(100, timeout=10)
    bodies = []

    def request_once() -> None:
        start.wait()
        response = middleware(RequestFactory().get(f"/api/products/{product.pk}"))
        with lock:
            bodies.append((response.status_code, response.content))
        connection.close()

    threads = [threading.Thread(target=request_once) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert len(bodies) == 100
    assert {status for status, _ in bodies} == {200}
    assert len({body for _, body in bodies}) == 1
    assert len(loads) == 1, f"{len(loads)} loads; cache state: suspect={cache._state.suspect}"


def _stock_served_by(port: int, product_id: int) -> int:
    status, _, body = json_request(port, "GET", f"/api/products/{product_id}")
    assert status == 200
    return int(body["stock_level"])


@contextlib.contextmanager
def _cached_in_another_process(product: Product) -> Iterator[Callable[[], int]]:
    """gunicorn's worker (another process, its near cache on) serving `product`'s detail from
    its cache; yields what reads the stock level it serves."""
    with serving() as port:
        assert _stock_served_by(port, product.pk) == product.stock_level
        assert _stock_served_by(port, product.pk) == product.stock_level  # from its cache now
        yield lambda: _stock_served_by(port, product.pk)


def _put_stock(client: APIClient, product_id: int, stock_level: int) -> int:
    response = client.put(
        f"/api/products/{product_id}",
        {"price": "1.00", "stock_level": stock_level},
        format="json",
    )
    return int(response.status_code)


@pytest.fixture
def long_rest(monkeypatch) -> None:
    """A process that saw Redis fail rests from it for a minute (the tests' own is 0 s)."""
    monkeypatch.setattr(cache, "RETRY_AFTER_FAILURE_S", 60.0)


def test_an_outage_is_logged_once_not_at_each_failure(caplog) -> None:
    """Every request of a process that cannot reach Redis fails a call: one warning each
    buried the log."""
    for _ in range(3):
        cache.redis_failed("a call timed out")
    said = [r for r in caplog.records if "product cache unavailable" in r.getMessage()]
    assert len(said) == 1


def test_a_write_while_this_process_rests_from_redis_still_reaches_the_others(
    long_rest,
) -> None:
    """A process that saw Redis fail leaves it alone for a second. A write it acknowledged
    meanwhile sent no invalidation, and the other processes, which reached Redis all along,
    served the old entry until something else bumped a counter (here, for good: no listener)."""
    product = ProductFactory(stock_level=5)
    clerk = token_client(make_user("clerk", "change_product"))
    with _cached_in_another_process(product) as served_stock:
        cache.redis_failed("a call timed out on a busy machine")
        assert cache.redis_resting()
        assert _put_stock(clerk, product.pk, 4) == 200
        assert served_stock() == 4


class BlackHole:
    """A TCP port that accepts connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]

    def attempts(self) -> int:
        """How many connections were made to it."""
        self.sock.settimeout(0.1)
        made = 0
        with contextlib.suppress(TimeoutError):
            while True:
                self.sock.accept()[0].close()
                made += 1
        return made

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def _black_holed_redis() -> Iterator[BlackHole]:
    """The cache's Redis, for the block, a port that accepts connections and never answers."""
    hole = BlackHole()
    caches = {"default": {**settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{hole.port}/0"
    try:
        with override_settings(CACHES=caches):
            yield hole
    finally:
        hole.close()


def test_writes_try_a_black_holed_redis_twice_per_rest_not_each_time(long_rest) -> None:
    """Each send waited out the socket timeout: a loop of writes (a command, the listener's
    invalidation per NOTIFY) went at four a second."""
    with _black_holed_redis() as hole:
        for product_id in range(5):
            cache.invalidate([product_id])
        assert cache._state.suspect
        assert hole.attempts() == 2


def test_a_lookup_that_finds_redis_still_down_rests_before_trying_again(long_rest) -> None:
    """After a rest, the first lookup tries Redis (its epoch bump); if Redis is still
    black-holed, the next lookups must wait for the next rest, not each wait out a socket
    timeout."""
    with _black_holed_redis() as hole:
        cache.redis_failed("an earlier call timed out")
        cache._state.retry_at = 0.0  # the rest is over
        for _ in range(3):
            assert cache.detail_lookup(1).slot is None
        assert hole.attempts() == 1


def test_a_reader_that_finds_redis_gone_as_it_claims_a_key_rests_from_it(long_rest) -> None:
    """Like any other call: the next requests go straight to PostgreSQL instead of each
    waiting out a socket timeout, and the epoch moves on when Redis is back."""
    lookup = cache.detail_lookup(1)
    assert lookup.slot is not None
    with _black_holed_redis():
        assert cache.claim(lookup) == (None, None)
        assert cache.redis_resting()


def test_after_redis_is_back_one_failed_send_skips_nothing_again(long_rest) -> None:
    with _black_holed_redis():
        cache.invalidate([1])
        cache.invalidate([1])  # two in a row: skipping
    cache._state.retry_at = cache._state.skip_sends_until = 0.0  # the rest is over
    assert cache.detail_lookup(1).slot is not None  # Redis answered its epoch bump
    with _black_holed_redis():
        cache.invalidate([1])  # one failure
    skips = cache._state.skips
    cache.invalidate([1])
    assert cache._state.skips == skips  # sent, not skipped


def test_skipped_sends_a_lookup_covered_are_not_covered_again(long_rest) -> None:
    """The lookup after a rest bumps the epoch, which covers the invalidations skipped in it:
    the next write must not bump the epoch again and drop every entry once more."""
    with _black_holed_redis():
        for _ in range(3):
            cache.invalidate([1])  # two failed, the third skipped
    assert cache._state.skips
    cache._state.retry_at = cache._state.skip_sends_until = 0.0  # the rest is over
    lookup = cache.detail_lookup(2)  # Redis answers its epoch bump
    cache.store(lookup, cache.Entry(headers={"ETag": '"x"'}, body=b"{}"))
    cache.invalidate([1])
    assert cache.detail_lookup(2).entry is not None


def test_skipped_sends_a_send_covered_are_not_covered_again(long_rest) -> None:
    """The first send after the skipping covers the skipped invalidations with an epoch bump:
    the sends after it must not bump the epoch again and drop every entry once more."""
    with _black_holed_redis():
        for _ in range(3):
            cache.invalidate([1])  # two failed, the third skipped
    cache._state.skip_sends_until = 0.0  # the skipping is over; the process still rests
    cache.invalidate([1])  # covers the skipped one: a new epoch
    epoch = cache._redis().get(cache._key("epoch"))
    cache.invalidate([1])
    assert cache._redis().get(cache._key("epoch")) == epoch


def test_a_send_that_went_out_between_two_failed_ones_starts_the_count_again(
    long_rest,
) -> None:
    """Only failures in a row start skipping: a failed send, one that went out, then another
    failed one, made the next writes of the rest skip theirs."""
    with _black_holed_redis():
        cache.invalidate([1])  # fails: this process rests
    cache.invalidate([1])  # goes out all the same
    with _black_holed_redis():
        cache.invalidate([1])  # fails: one in a row
    skips = cache._state.skips
    cache.invalidate([1])
    assert cache._state.skips == skips  # sent, not skipped


def test_a_send_skipped_during_the_epoch_bump_that_ends_a_rest_is_covered_by_another(
    long_rest, monkeypatch
) -> None:
    """A write acknowledged while a lookup's epoch bump is in flight, its send skipped, may come
    after the bump: the cache must not be trusted on that bump, and the next lookup bumps again.
    Trusted, the entries stored from the bump on could hide the write until the next send."""
    with _black_holed_redis():
        for _ in range(2):
            cache.invalidate([2])  # two failed: the rest's next sends are skipped
    cache._state.retry_at = 0.0  # the lookups' rest is over, not the sends'
    bump_epoch = cache.bump_epoch

    def bump_then_a_write() -> None:
        bump_epoch()
        cache.invalidate([1])  # skipped

    monkeypatch.setattr(cache, "bump_epoch", bump_then_a_write)
    assert cache.detail_lookup(1).slot is None
    monkeypatch.setattr(cache, "bump_epoch", bump_epoch)
    redis, epoch_key = cache._redis(), cache._key("epoch")
    epoch = redis.get(epoch_key)
    assert cache.detail_lookup(1).slot is not None
    assert redis.get(epoch_key) != epoch


def test_a_failure_during_the_epoch_bump_that_ends_a_rest_starts_another_rest(
    long_rest, monkeypatch
) -> None:
    """Another thread's call failing while a lookup bumps the epoch may have lost an
    invalidation after the bump: the lookup must not end the rest and trust the cache again."""
    cache.redis_failed("an earlier call timed out")
    cache._state.retry_at = 0.0  # the rest is over
    bump_epoch = cache.bump_epoch

    def bump_then_a_failure() -> None:
        bump_epoch()
        cache.redis_failed("another thread's call timed out")

    monkeypatch.setattr(cache, "bump_epoch", bump_then_a_failure)
    assert cache.detail_lookup(1).slot is None
    assert cache.redis_resting()


def test_two_threads_caught_by_one_stall_count_as_one_failed_send(long_rest) -> None:
    """Failures were counted per send: two gthread threads' sends in one stall were "two in a
    row", and the next write was skipped with Redis answering again."""
    start = threading.Barrier(2, timeout=10)

    def send() -> None:
        start.wait()
        cache.invalidate([1])

    with _black_holed_redis():
        cache._context()  # one client for both threads, as in a worker
        threads = [threading.Thread(target=send) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    skips = cache._state.skips
    cache.invalidate([1])
    assert cache._state.skips == skips  # sent, not skipped


def test_one_failed_send_does_not_keep_the_next_writes_from_the_others(long_rest) -> None:
    """One send that failed (Redis stalled for a moment) made the writes of the next second
    skip theirs, and the other processes, which reached Redis, served the old entries."""
    product = ProductFactory(stock_level=5)
    clerk = token_client(make_user("clerk", "change_product"))
    with _cached_in_another_process(product) as served_stock:
        with _black_holed_redis():
            cache.invalidate([product.pk + 1])  # fails: this process rests
        assert _put_stock(clerk, product.pk, 4) == 200
        assert served_stock() == 4


def test_writes_skipped_after_failed_sends_are_covered_by_the_next_send(long_rest) -> None:
    """A process that only writes (a command, a task) never looks the cache up, which is where
    a rest's skipped invalidations were made up for (an epoch bump): the other processes
    served their old entries until the entries expired."""
    product = ProductFactory(stock_level=5)
    other = ProductFactory()
    clerk = token_client(make_user("clerk", "change_product"))
    with _cached_in_another_process(product) as served_stock:
        with _black_holed_redis():
            cache.invalidate([other.pk])
            cache.invalidate([other.pk])  # two failed: the rest's next sends are skipped
        assert _put_stock(clerk, product.pk, 4) == 200  # its invalidation skipped
        cache._state.skip_sends_until = 0.0  # the rest is over
        services.product_update(product_id=other.pk, stock_level=7)  # the next write
        assert served_stock() == 4


@pytest.mark.parametrize("outage", ["refused", "black-holed"])
def test_redis_outage_serves_from_postgresql_and_drops_older_entries_after(
    outage, django_assert_num_queries
) -> None:
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    clerk = token_client(make_user("clerk", "change_product"))
    assert stock_of(anon, product.pk) == 5
    assert stock_of(anon, product.pk) == 5  # cached now

    hole = BlackHole() if outage == "black-holed" else None
    port = hole.port if hole else closed_port()
    caches = {"default": {**settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{port}/0"
    try:
        with override_settings(CACHES=caches):
            response = clerk.put(
                f"/api/products/{product.pk}", {"price": "1.00", "stock_level": 4}, format="json"
            )
            assert response.status_code == 200  # the invalidation was lost
            assert stock_of(anon, product.pk) == 4
    finally:
        if hole:
            hole.close()

    # Redis is back with the entry written before the outage still in it: it is never served,
    # and the cache is in use again.
    assert stock_of(anon, product.pk) == 4
    with django_assert_num_queries(0):
        assert stock_of(anon, product.pk) == 4


def test_writes_that_bypass_django_are_invalidated_by_the_listener() -> None:
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    assert stock_of(anon, product.pk) == 5
    assert stock_of(anon, product.pk) == 5  # cached now

    with listener() as process:
        assert process.stdout is not None
        assert "listening" in process.stdout.readline()
        assert stock_of(anon, product.pk) == 5  # cached again after the listener's start
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE products_product SET stock_level = 2 WHERE id = %s", [product.pk]
            )
        deadline = time.monotonic() + 15
        while stock_of(anon, product.pk) != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stock_of(anon, product.pk) == 2


def test_writes_made_while_no_listener_ran_are_invalidated_when_it_starts() -> None:
    """Their notifications went to nobody: the listener drops every cached product as it
    starts, before it says it is listening."""
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    assert stock_of(anon, product.pk) == 5  # cached now
    _raw_update_stock(product.pk, 2)
    assert stock_of(anon, product.pk) == 5  # nothing told the cache

    with listener() as process:
        assert process.stdout is not None
        assert "listening" in process.stdout.readline()
        assert stock_of(anon, product.pk) == 2


def test_the_listener_drops_entries_cached_before_a_redis_outage_as_soon_as_redis_is_back() -> None:
    """The listener may have lost invalidations while it could not reach Redis (here, the
    notification of a raw UPDATE); it asks Redis whether it is there several times a second,
    and drops every entry as soon as it answers, with nothing else to send."""
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    server = cache._redis().connection_pool.connection_kwargs
    with (
        Outage((server["host"], server["port"])) as outage,
        listener(REDIS_URL=f"redis://127.0.0.1:{outage.port}/{server.get('db', 0)}") as process,
    ):
        assert process.stdout is not None
        assert "listening" in process.stdout.readline()
        assert stock_of(anon, product.pk) == 5  # cached now
        outage.down()
        logged_line(process, "product cache unavailable")
        _raw_update_stock(product.pk, 2)  # its notification's invalidation is lost
        outage.up()
        logged_line(process, "product cache reachable again")
        assert stock_of(anon, product.pk) == 2


def _raw_update_announced(product_ids: list[int], *, stock_level: int) -> str:
    """An UPDATE by raw SQL (no model signal); the payload its trigger announced."""
    with connection.cursor() as cursor:
        cursor.execute("LISTEN product_changes")
        try:
            cursor.execute(
                "UPDATE products_product SET stock_level = %s WHERE id = ANY(%s)",
                [stock_level, product_ids],
            )
            # Only this channel's: a pooled connection may hold another test's notification.
            notify = next(
                n
                for n in connection.connection.notifies(timeout=5)
                if n.channel == "product_changes"
            )
        finally:
            # Or the pooled connection goes on hearing every write, and the next test to read
            # its notifications reads those first (its own products' INSERTs).
            cursor.execute("UNLISTEN product_changes")
    return str(notify.payload)


def test_a_raw_multi_row_update_is_invalidated_through_the_listener_notification(caplog) -> None:
    """The trigger announces writes that bypass Django; applying the notification invalidates
    those products (a payload it reads, not a warning and every product dropped)."""
    from products.management.commands.listen_product_changes import apply_notification

    products = ProductFactory.create_batch(2, stock_level=5)
    anon = APIClient()
    for product in products:
        assert stock_of(anon, product.pk) == 5
    payload = _raw_update_announced([p.pk for p in products], stock_level=1)
    assert sorted(int(i) for i in payload.split(",")) == sorted(p.pk for p in products)
    for product in products:
        assert stock_of(anon, product.pk) == 5  # nothing told the cache yet
    apply_notification(payload)
    for product in products:
        assert stock_of(anon, product.pk) == 1
    assert "unexpected" not in caplog.text


def test_a_raw_update_of_more_rows_than_a_notification_lists_drops_every_cached_product(
    caplog,
) -> None:
    """Past 100 rows the trigger announces `*` rather than the ids: expected, not a warning."""
    from products.management.commands.listen_product_changes import apply_notification

    products = Product.objects.bulk_create(
        Product(name=f"Bolt {n}", price=Decimal("1.00"), stock_level=5) for n in range(101)
    )
    anon = APIClient()
    assert stock_of(anon, products[-1].pk) == 5
    payload = _raw_update_announced([p.pk for p in products], stock_level=1)
    assert payload == "*"
    assert stock_of(anon, products[-1].pk) == 5  # nothing told the cache yet
    apply_notification(payload)
    assert stock_of(anon, products[-1].pk) == 1
    assert "unexpected" not in caplog.text


def test_a_notification_the_listener_cannot_read_drops_every_cached_product(caplog) -> None:
    from products.management.commands.listen_product_changes import apply_notification

    product = ProductFactory(stock_level=5)
    anon = APIClient()
    assert stock_of(anon, product.pk) == 5
    with connection.cursor() as cursor:
        cursor.execute("UPDATE products_product SET stock_level = 1 WHERE id = %s", [product.pk])
    assert stock_of(anon, product.pk) == 5
    apply_notification(f"{product.pk},x")
    assert stock_of(anon, product.pk) == 1
    assert "unexpected product_changes payload" in caplog.text


def _bulk_updated(update) -> list[int]:
    """Two products cached with stock 5, `update(products)`, then their stock as read."""
    products = ProductFactory.create_batch(2, stock_level=5)
    anon = APIClient()
    assert [stock_of(anon, product.pk) for product in products] == [5, 5]
    update(products)
    return [stock_of(anon, product.pk) for product in products]


def test_queryset_update_invalidates_after_commit_without_the_listener() -> None:
    def update(products: list[Product]) -> None:
        assert Product.objects.filter(pk__in=[p.pk for p in products]).update(stock_level=1) == 2

    assert _bulk_updated(update) == [1, 1]


def test_bulk_update_invalidates_after_commit_without_the_listener() -> None:
    def update(products: list[Product]) -> None:
        for product in products:
            product.stock_level = 2
        assert Product.objects.bulk_update(products, ["stock_level"]) == 2

    assert _bulk_updated(update) == [2, 2]


@pytest.mark.parametrize("ignore_conflicts", [False, True])
def test_bulk_create_invalidates_cached_pages_without_the_listener(ignore_conflicts) -> None:
    ProductFactory(name="steel bolt")
    anon = APIClient()
    assert anon.get("/api/products/search?name=steel").json()["count"] == 1
    new = Product(name="steel nut", price=Decimal("1.00"), stock_level=1)
    Product.objects.bulk_create([new], ignore_conflicts=ignore_conflicts)
    assert anon.get("/api/products/search?name=steel").json()["count"] == 2


class CountingApp:
    """Stands in for Django behind the WSGI layer: counts what reaches it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        start_response("204 No Content", [])
        return [b""]


@pytest.fixture
def wsgi_layer():
    from products.api.fast_path import CachedReadsApp

    inner = CountingApp()
    return CachedReadsApp(inner), inner


def test_the_wsgi_layer_answers_a_hit_before_django_with_security_headers(wsgi_layer) -> None:
    app, inner = wsgi_layer
    product = ProductFactory()
    cached = APIClient().get(f"/api/products/{product.pk}")  # fills the cache
    status, headers, body = send(app, "GET", f"/api/products/{product.pk}")
    assert inner.calls == 0
    assert status == 200
    assert body == cached.content
    assert headers["ETag"] == cached["ETag"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == cached["X-Frame-Options"]


def test_the_wsgi_layer_answers_an_https_page_django_cached(wsgi_layer) -> None:
    """Both layers key a page by its scheme alike: one stored over HTTPS by the middleware (a
    process without the WSGI layer, the test client) is a hit for the WSGI layer over HTTPS."""
    app, inner = wsgi_layer
    ProductFactory()
    cached = APIClient().get("/api/products", {"limit": "2"}, secure=True)  # fills the cache
    status, _, body = send(
        app, "GET", "/api/products", QUERY_STRING="limit=2", **{"wsgi.url_scheme": "https"}
    )
    assert (status, inner.calls) == (200, 0)
    assert body == cached.content


def test_the_wsgi_layer_answers_if_none_match_with_304(wsgi_layer) -> None:
    app, inner = wsgi_layer
    product = ProductFactory()
    etag = APIClient().get(f"/api/products/{product.pk}")["ETag"]
    status, headers, _ = send(app, "GET", f"/api/products/{product.pk}", HTTP_IF_NONE_MATCH=etag)
    assert (status, headers["ETag"], inner.calls) == (304, etag, 0)


@pytest.mark.parametrize(
    "environ",
    [
        {"HTTP_AUTHORIZATION": "Token abc"},
        {"HTTP_COOKIE": "sessionid=abc"},
        {"HTTP_ACCEPT": "text/html,application/xhtml+xml"},
        {"QUERY_STRING": "format=api"},
        {"HTTP_HOST": "evil.example"},
        {"REQUEST_METHOD": "HEAD"},
    ],
    ids=["token", "session", "browser", "browsable-format", "unknown-host", "head"],
)
def test_the_wsgi_layer_leaves_everything_but_anonymous_json_reads_to_django(
    wsgi_layer, environ
) -> None:
    app, inner = wsgi_layer
    product = ProductFactory()
    APIClient().get(f"/api/products/{product.pk}")  # cached
    send(app, "GET", f"/api/products/{product.pk}", **environ)
    assert inner.calls == 1


def test_the_wsgi_layer_counts_reads_against_the_rate_limit(wsgi_layer, settings) -> None:
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMIT_READS = "3/m"
    app, inner = wsgi_layer
    product = ProductFactory()
    client = APIClient(REMOTE_ADDR="10.9.8.7")
    client.get(f"/api/products/{product.pk}")  # 1 (fills the cache)
    for _ in range(2):  # 2 and 3 are served from the cache
        status, _, _ = send(app, "GET", f"/api/products/{product.pk}", REMOTE_ADDR="10.9.8.7")
        assert status == 200
    send(app, "GET", f"/api/products/{product.pk}", REMOTE_ADDR="10.9.8.7")
    assert inner.calls == 1  # the 4th goes to Django, which answers 429
    response = client.get(f"/api/products/{product.pk}")
    assert response.status_code == 429


def test_a_client_over_its_limit_whose_miss_finds_the_entry_stored_meanwhile_gets_429(
    settings, monkeypatch
) -> None:
    """Through Django alone (the cache middleware): another reader stored the entry between
    this one's lookup and its claim, and this client is over its limit; the view answers the
    429, as for a hit, where the middleware had nothing to return (a 500)."""
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMIT_READS = "2/m"
    product = ProductFactory()
    client = APIClient(REMOTE_ADDR="10.9.8.6")
    assert client.get(f"/api/products/{product.pk}").status_code == 200  # 1, stored
    assert client.get(f"/api/products/{product.pk}").status_code == 200  # 2, a hit
    looked_up = fast_path._lookup

    def missed_just_before_the_store(*args: Any) -> cache.Lookup | None:
        found = looked_up(*args)
        return None if found is None else dataclasses.replace(found, entry=None)

    monkeypatch.setattr(fast_path, "_lookup", missed_just_before_the_store)
    response = client.get(f"/api/products/{product.pk}")  # 3: its claim finds the entry
    assert response.status_code == 429


def test_a_hit_whose_rate_limit_counters_redis_refuses_is_served_unthrottled(
    wsgi_layer, settings, unix_redis
) -> None:
    """A Redis at maxmemory (noeviction) still answers reads, and the near cache still holds the
    entry, but the counters' writes are refused: the hit is served, uncounted, as the view
    serves a request whose counters are unavailable (RATELIMIT_FAIL_OPEN), not a 500."""
    settings.RATELIMIT_ENABLE = True
    path, _ = unix_redis
    app, inner = wsgi_layer
    product = ProductFactory()
    with override_settings(CACHES=caches_on(f"unix://{path}?db=0")):
        APIClient().get(f"/api/products/{product.pk}")  # fills the cache
        status, _, _ = send(app, "GET", f"/api/products/{product.pk}")
        assert (status, inner.calls) == (200, 0)  # a hit, counted
        full = redis.Redis(unix_socket_path=path)
        full.config_set("maxmemory-policy", "noeviction")
        full.config_set("maxmemory", "1")
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            full.set("probe", "1")

        status, _, body = send(app, "GET", f"/api/products/{product.pk}")

    assert (status, inner.calls) == (200, 0), body  # from the near cache, ahead of Django
    assert json.loads(body)["id"] == product.pk


def _raw_update_stock(product_id: int, stock_level: int) -> None:
    """A write that tells the cache nothing (no listener runs in these tests)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE products_product SET stock_level = %s WHERE id = %s", [stock_level, product_id]
        )


@pytest.mark.parametrize("sent_an_invalidation", [True, False], ids=["writer", "bystander"])
def test_probe_drops_entries_cached_before_an_outage_it_saw(sent_an_invalidation) -> None:
    """The listener probes: it notices an outage even when it had nothing to send."""
    product = ProductFactory(stock_level=5)
    anon = APIClient()
    assert stock_of(anon, product.pk) == 5  # cached
    caches = {"default": {**settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{closed_port()}/0"
    with override_settings(CACHES=caches):
        if sent_an_invalidation:
            cache.invalidate([product.pk])  # lost
        assert cache.probe() is False
    _raw_update_stock(product.pk, 1)  # a write whose invalidation was lost (here or elsewhere)
    epoch = cache._redis().get(cache._key("epoch"))
    assert cache.probe() is True  # Redis is back: the epoch moves on
    assert cache._redis().get(cache._key("epoch")) != epoch  # for processes that saw nothing
    assert stock_of(anon, product.pk) == 1


def test_probe_drops_older_entries_as_soon_as_redis_answers_though_the_process_rests(
    long_rest,
) -> None:
    """The listener has nothing else to do with Redis: it does not wait out the rest, so the
    entries cached before an outage stop being served as soon as Redis is back."""
    cache.redis_failed("the listener's PING timed out")
    epoch = cache._redis().get(cache._key("epoch"))
    assert cache.probe() is True
    assert cache._redis().get(cache._key("epoch")) != epoch


def test_a_reader_storing_late_after_the_counters_were_flushed_stores_under_a_dead_key() -> None:
    """A flush (or an eviction) empties the counters; the next write must not count them back
    up to a value a slow reader still holds."""
    product = ProductFactory(stock_level=6)  # its creation set the version counter
    anon = APIClient()
    lookup = cache.detail_lookup(product.pk)  # a reader misses ...
    old = anon.get(f"/api/products/{product.pk}", HTTP_ACCEPT="text/html")  # ... reads the row
    assert old.status_code == 200
    redis = cache._redis()
    for suffix in ("epoch", "gen", f"ver:{product.pk}"):
        redis.delete(cache._key(suffix))  # flushed
    services.product_update(product_id=product.pk, stock_level=7)  # a write after the flush
    stale = cache.Entry(headers={"ETag": '"stale"'}, body=b'{"stock_level":6}')
    cache.store(lookup, stale)  # the slow reader stores what it read before the write
    assert stock_of(anon, product.pk) == 7


def test_every_counter_a_write_bumps_keeps_a_ttl() -> None:
    """Every key has a TTL: a counter the invalidation script left without one (INCR keeps
    none it did not have) would outlive its product for good."""
    product = ProductFactory()  # its creation starts the counters
    services.product_update(product_id=product.pk, stock_level=1)  # ... and this counts them up
    cache.invalidate_all()
    redis = cache._redis()
    for suffix in ("gen", f"ver:{product.pk}", "epoch"):
        # Days, not seconds: a counter that expires restarts, and every entry built on it goes.
        ttl = redis.ttl(cache._key(suffix))
        assert cache.COUNTER_TTL_S - 60 < ttl <= cache.COUNTER_TTL_S, suffix


@pytest.mark.parametrize(
    ("earlier", "later"),
    [(("1700000000", "999999"), ("1700000001", "42")), (("1700000000", "5"), ("1700000000", "6"))],
)
def test_a_counter_that_starts_again_starts_above_every_earlier_clock_value(
    earlier: tuple[str, str], later: tuple[str, str]
) -> None:
    """A restarted counter takes the server's clock in microseconds: the microseconds are
    padded to six digits, or a later second's first tenth (42 us: "170000000142") made a
    smaller value than the second before it had, one an old entry's key may carry."""

    def clock_us(seconds: str, micro: str) -> int:
        # The scripts' own text, with Redis's TIME standing still at (seconds, micro).
        script = (
            f"local redis = {{call = function() return {{'{seconds}', '{micro}'}} end}}\n"
            f"{cache._CLOCK_US}\nreturn clock_us"
        )
        return int(cache._redis().eval(script, 0))

    assert clock_us(*earlier) < clock_us(*later)
    assert clock_us(*later) == int(later[0]) * 1_000_000 + int(later[1])


def test_a_stored_entry_expires_with_the_cache_ttl() -> None:
    """Every key has a TTL: an entry stored without one stays in Redis after its key is
    dead (a later version, generation or epoch), until eviction."""
    lookup = cache.detail_lookup(1)
    assert lookup.slot is not None
    cache.store(lookup, cache.Entry(headers={"ETag": '"x"'}, body=b"{}"))
    assert 0 < cache._redis().ttl(lookup.slot.key) <= settings.PRODUCT_CACHE_TTL_S


def test_a_query_with_escaped_separators_never_shares_a_cached_page_with_another() -> None:
    ProductFactory(name="a bolt")
    anon = APIClient()
    crafted = anon.get("/api/products/search?name=a%26page%3D1")
    assert crafted.json()["count"] == 0  # searched for the literal text "a&page=1"
    real = anon.get("/api/products/search?name=a&page=1")
    assert real.json()["count"] == 1


def test_the_same_parameters_in_another_order_share_a_cached_page() -> None:
    """Parameters are ordered by name: `page=1&limit=1` and `limit=1&page=1` are one page."""
    params = [("page", "1"), ("limit", "1")]
    lookup = cache.page_lookup("/api/products", host="testserver", scheme="http", params=params)
    cache.store(lookup, cache.Entry(headers={}, body=b"[]"))
    reordered = params[::-1]
    again = cache.page_lookup("/api/products", host="testserver", scheme="http", params=reordered)
    assert again.entry is not None


@pytest.mark.parametrize(
    ("asked_as", "links"),
    [({"HTTP_HOST": "localhost"}, "http://localhost/"), ({"secure": True}, "https://testserver/")],
    ids=["another-host", "another-scheme"],
)
def test_a_cached_page_is_not_served_for_another_host_or_scheme(asked_as, links: str) -> None:
    """A page's next/previous links are absolute: the host and scheme are part of its key."""
    ProductFactory.create_batch(2)
    anon = APIClient()
    assert anon.get("/api/products?limit=1").json()["next"].startswith("http://testserver/")
    assert anon.get("/api/products?limit=1", **asked_as).json()["next"].startswith(links)


def test_an_entry_stored_for_a_parameter_given_twice_is_not_served() -> None:
    """An older release answered `page=2&page=1` with page 1 and stored it: the view refuses
    it now, and the cache must not answer for it."""
    ProductFactory.create_batch(3)
    anon = APIClient()
    query = "page=2&page=1"
    answer = anon.get("/api/products?page=1")
    lookup = cache.page_lookup(
        "/api/products", host="testserver", scheme="http", params=parse_qsl(query)
    )
    headers = {name: answer[name] for name in ("Content-Type", "ETag", "Vary")}
    cache.store(lookup, cache.Entry(headers=headers, body=answer.content))
    assert anon.get(f"/api/products?{query}").status_code == 400


def test_a_parameter_given_twice_is_refused_though_one_of_its_values_is_cached() -> None:
    ProductFactory.create_batch(3)
    anon = APIClient()
    assert anon.get("/api/products?limit=2").json()["limit"] == 2
    assert anon.get("/api/products?limit=2").json()["limit"] == 2  # a hit
    for query in ("limit=2&limit=2", "limit=1&limit=2", "limit=2&limit=1"):
        assert anon.get(f"/api/products?{query}").status_code == 400


def _recording_invalidations(monkeypatch) -> list[list[int]]:
    """The id lists cache.invalidate is called with from now on (it still runs)."""
    calls: list[list[int]] = []
    invalidate = cache.invalidate

    def record(product_ids) -> None:
        calls.append(list(product_ids))
        invalidate(product_ids)

    monkeypatch.setattr(cache, "invalidate", record)
    return calls


def test_deleting_many_products_in_one_transaction_sends_their_invalidations_together(
    monkeypatch,
) -> None:
    products = Product.objects.bulk_create(
        Product(name=f"Crate {n}", price=Decimal("1.00"), stock_level=1) for n in range(2_500)
    )
    anon = APIClient()
    watched = [products[0].pk, products[1_500].pk, products[-1].pk]
    assert [stock_of(anon, pk) for pk in watched] == [1, 1, 1]
    calls = _recording_invalidations(monkeypatch)

    with transaction.atomic():
        Product.objects.filter(name__startswith="Crate ").delete()  # a post_delete per row

    assert [len(batch) for batch in calls] == [1_000, 1_000, 500]
    assert sorted(pk for batch in calls for pk in batch) == sorted(p.pk for p in products)
    assert [anon.get(f"/api/products/{pk}").status_code for pk in watched] == [404, 404, 404]


def test_a_change_after_a_rolled_back_savepoint_is_still_invalidated(monkeypatch) -> None:
    first, second = ProductFactory.create_batch(2, stock_level=5)
    anon = APIClient()
    assert [stock_of(anon, first.pk), stock_of(anon, second.pk)] == [5, 5]
    calls = _recording_invalidations(monkeypatch)

    with transaction.atomic():
        with contextlib.suppress(RuntimeError), transaction.atomic():
            first.stock_level = 1
            first.save()  # the transaction's first change: its callback is dropped below
            raise RuntimeError
        second.stock_level = 2
        second.save()

    assert stock_of(anon, second.pk) == 2
    assert stock_of(anon, first.pk) == 5
    assert calls == [sorted([first.pk, second.pk])]  # one more miss for the first: harmless


@pytest.mark.parametrize("fast_reads", [True, False], ids=["wsgi-path", "view"])
def test_a_page_answered_but_not_stored_leaves_the_cache_in_use(
    settings, fast_reads: bool, django_assert_num_queries
) -> None:
    """Nowhere to store is not a Redis failure: taken for one, each such page dropped every
    entry (a new epoch) and made the process rest from Redis."""
    settings.PRODUCT_FAST_READS = fast_reads
    product = ProductFactory()
    assert send(application, "GET", f"/api/products/{product.pk}")[0] == 200  # cached
    assert send(application, "GET", "/api/products", QUERY_STRING="limit=2&cb=1")[0] == 200
    with django_assert_num_queries(0):
        assert send(application, "GET", f"/api/products/{product.pk}")[0] == 200


def _page_entries() -> list[bytes]:
    """The list and search pages stored in Redis (this test run's prefix)."""
    pattern = django_cache.make_key(f"products:l{cache.REPRESENTATION}:*")
    return list(get_redis_connection("default").scan_iter(match=pattern))


@pytest.mark.parametrize(
    ("path", "query", "plain"),
    [
        ("/api/products", "limit=100&cb=8f3a", "limit=100"),
        ("/api/products/search", "name=steel&cb=8f3a", "name=steel"),
        ("/api/products", "limit=100&cb=", "limit=100"),  # blank: a parameter all the same
        # The views take these spellings of a number too, each a key of its own.
        ("/api/products", "limit=0100", "limit=100"),
        ("/api/products", "limit=%20100", "limit=100"),
        ("/api/products", "page=01", "page=1"),
        ("/api/products/search", "name=steel&min_price=007.5", "name=steel&min_price=7.5"),
        ("/api/products/search", "name=steel&max_price=%20900", "name=steel&max_price=900"),
    ],
)
@pytest.mark.parametrize("fast_reads", [True, False], ids=["wsgi-path", "view"])
def test_a_page_asked_for_with_a_parameter_the_view_ignores_is_answered_but_not_stored(
    settings, path: str, query: str, plain: str, fast_reads: bool
) -> None:
    """Every parameter went into the page's key: `cb=<random>` made each request an entry of
    its own (20 KB for a 100-byte request), and filled Redis while staying within the rate
    limit; so did a number's other spellings (`limit=00100`)."""
    settings.PRODUCT_FAST_READS = fast_reads
    ProductFactory(name="steel bolt")

    status, _, body = send(application, "GET", path, QUERY_STRING=query)
    answered_again = send(application, "GET", path, QUERY_STRING=query)

    assert (status, json.loads(body)["count"]) == (200, 1)
    assert answered_again[2] == body
    assert _page_entries() == []
    # Without it, the page is stored as before.
    assert send(application, "GET", path, QUERY_STRING=plain)[0] == 200
    assert len(_page_entries()) == 1


def _hashed_key(key: str, key_prefix: str, version: int) -> str:
    return f"{key_prefix}:{version}:{hashlib.sha256(key.encode()).hexdigest()}"


def test_a_cache_that_builds_its_keys_otherwise_is_refused_by_name() -> None:
    """products.cache builds most keys as make_key("products:") + a suffix, and the restart
    check (redis_connected) as make_key("products:epoch"): with a KEY_FUNCTION that does not
    end a key with its name (a hash of it), the two differ, and a Redis restart would bump an
    epoch no lookup reads."""
    caches = {"default": {**settings.CACHES["default"], "KEY_FUNCTION": _hashed_key}}
    with (
        override_settings(CACHES=caches),
        pytest.raises(ImproperlyConfigured, match="KEY_FUNCTION"),
    ):
        cache.detail_lookup(1)
