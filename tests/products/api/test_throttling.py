"""Rate limits with django-ratelimit on the real Redis."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from products.api import throttling
from tests.products.conftest import make_user, token_client

pytestmark = pytest.mark.django_db

CLOSED_PORT = 1


def _through_proxy(
    forwarded: list[str], *, proxy: str = "127.0.0.1", rate: str = "2/m", **settings: object
) -> list[int]:
    """The statuses of reads through a proxy at `proxy` (trusted, one of them unless `settings`
    say otherwise), one per X-Forwarded-For in `forwarded`, in turn."""
    client = APIClient(REMOTE_ADDR=proxy)
    limits = {"RATELIMIT_READS": rate, "TRUSTED_PROXY_COUNT": 1, **settings}
    with override_settings(**limits):
        return [
            client.get("/api/products", HTTP_X_FORWARDED_FOR=entry).status_code
            for entry in forwarded
        ]


def _from(addresses: list[str], **settings: object) -> list[int]:
    """The statuses of reads from clients at `addresses`, one each, in turn, at 2 a minute."""
    with override_settings(RATELIMIT_READS="2/m", **settings):
        return [
            APIClient(REMOTE_ADDR=address).get("/api/products").status_code for address in addresses
        ]


def test_reads_over_the_limit_are_429_with_retry_after(product) -> None:
    client = APIClient(REMOTE_ADDR="10.9.0.1")
    with override_settings(RATELIMIT_READS="3/m"):
        statuses = [client.get(f"/api/products/{product.id}").status_code for _ in range(4)]
        response = client.get(f"/api/products/{product.id}")
    assert statuses == [200, 200, 200, 429]
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_a_client_refused_in_the_windows_last_second_is_told_to_wait_a_second(
    product, monkeypatch
) -> None:
    """django-ratelimit's time left is whole seconds to the window's end, 0 in its last second:
    `Retry-After: 0` would send the client straight back into the same window."""
    refused = {"should_limit": True, "time_left": 0}
    monkeypatch.setattr(throttling, "count_once", lambda request, **kwargs: refused)
    response = APIClient(REMOTE_ADDR="10.9.0.9").get(f"/api/products/{product.id}")
    assert (response.status_code, response["Retry-After"]) == (429, "1")


def test_limits_are_per_client_ip(product) -> None:
    first, second = APIClient(REMOTE_ADDR="10.9.0.1"), APIClient(REMOTE_ADDR="10.9.0.2")
    with override_settings(RATELIMIT_READS="2/m"):
        for _ in range(2):
            first.get("/api/products")
        assert first.get("/api/products").status_code == 429
        assert second.get("/api/products").status_code == 200


def test_authenticated_clients_are_limited_per_user_not_per_ip(product) -> None:
    alice = token_client(make_user("alice"))
    bob = token_client(make_user("bob"))
    with override_settings(RATELIMIT_READS="2/m"):
        for _ in range(2):
            alice.get("/api/products", REMOTE_ADDR="10.9.0.7")
        assert alice.get("/api/products", REMOTE_ADDR="10.9.0.7").status_code == 429
        assert bob.get("/api/products", REMOTE_ADDR="10.9.0.7").status_code == 200


@pytest.mark.parametrize("method", ["get", "put"])
def test_a_made_up_token_is_no_way_around_the_limit(product, method) -> None:
    client = APIClient(REMOTE_ADDR="10.9.0.3")
    limits = {"RATELIMIT_READS": "3/m", "RATELIMIT_WRITES": "3/m"}
    with override_settings(**limits):
        statuses = [
            getattr(client, method)(
                f"/api/products/{product.id}",
                {"price": "1.00", "stock_level": 1} if method == "put" else None,
                format="json",
                HTTP_AUTHORIZATION=f"Token made-up-{n}",
            ).status_code
            for n in range(5)
        ]
        anonymous = client.get(f"/api/products/{product.id}").status_code
    assert statuses == [401, 401, 401, 429, 429]
    assert anonymous == (429 if method == "get" else 200)


@pytest.mark.parametrize("who", ["anonymous", "without permission", "session without CSRF"])
def test_refused_writes_count_against_the_limit(product, who) -> None:
    if who == "anonymous":
        client = APIClient(REMOTE_ADDR="10.9.0.6")
    elif who == "without permission":
        client = token_client(make_user("nobody"))
    else:
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(make_user("clerk", "change_product"))
    with override_settings(RATELIMIT_WRITES="3/m"):
        statuses = [
            client.put(
                f"/api/products/{product.id}", {"price": "1.00", "stock_level": 1}, format="json"
            ).status_code
            for _ in range(5)
        ]
    refused = 401 if who == "anonymous" else 403
    assert statuses == [refused] * 3 + [429] * 2


def test_viewing_browsable_pages_uses_up_no_writes(product) -> None:
    # The page asks the permissions of copies of the request (PUT, DELETE) to draw its forms:
    # refused for a user who may change but not delete, they are not refusals to count.
    clerk = token_client(make_user("clerk", "change_product"))
    with override_settings(RATELIMIT_WRITES="3/m", RATELIMIT_READS="100/m"):
        pages = [
            clerk.get(f"/api/products/{product.id}", HTTP_ACCEPT="text/html").status_code
            for _ in range(4)
        ]
        write = clerk.put(
            f"/api/products/{product.id}", {"price": "1.00", "stock_level": 1}, format="json"
        )
    assert pages == [200] * 4
    assert write.status_code == 200


def test_a_made_up_token_is_no_way_around_the_schema_s_limit() -> None:
    client = APIClient(REMOTE_ADDR="10.9.0.8")
    with override_settings(RATELIMIT_READS="2/m"):
        statuses = [
            client.get("/api/schema/", HTTP_AUTHORIZATION=f"Token made-up-{n}").status_code
            for n in range(4)
        ]
    assert statuses == [401, 401, 429, 429]


def test_the_schema_counts_as_a_read(product) -> None:
    client = APIClient(REMOTE_ADDR="10.9.0.4")
    with override_settings(RATELIMIT_READS="2/m"):
        statuses = [client.get(url).status_code for url in ("/api/schema/", "/api/schema")]
        over = client.get("/api/schema/")
    assert statuses == [200, 200]
    assert over.status_code == 429
    assert int(over["Retry-After"]) >= 1


def test_writes_have_their_own_limit(clerk, product) -> None:
    with override_settings(RATELIMIT_WRITES="2/m", RATELIMIT_READS="100/m"):
        codes = [
            clerk.patch(
                f"/api/products/{product.id}", {"stock_level": 1}, format="json"
            ).status_code
            for _ in range(3)
        ]
        assert clerk.get(f"/api/products/{product.id}").status_code == 200
    assert codes == [200, 200, 429]


def test_forged_x_forwarded_for_does_not_reset_the_limit(product) -> None:
    client = APIClient(REMOTE_ADDR="10.9.0.3")
    with override_settings(RATELIMIT_READS="2/m"):
        for n in range(2):
            client.get("/api/products", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}")
        response = client.get("/api/products", HTTP_X_FORWARDED_FOR="1.2.3.99")
    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_proxy_appended_address_is_the_client(product) -> None:
    # The client forged a first entry; the proxy appended the real address last.
    forwarded = [*["6.6.6.6, 10.9.0.4"] * 2, "7.7.7.7, 10.9.0.4", "6.6.6.6, 10.9.0.5"]
    assert _through_proxy(forwarded) == [200, 200, 429, 200]


def test_a_forwarded_for_shorter_than_the_proxy_chain_counts_as_the_peer(product) -> None:
    """Two proxies should have appended two entries: with one, which address is the client's
    is unknown, and the peer counts (without the check: an IndexError, a 500)."""
    forwarded = [f"203.0.113.{n}" for n in range(3)]
    assert _through_proxy(forwarded, TRUSTED_PROXY_COUNT=2) == [200, 200, 429]


def test_an_ipv6_client_is_limited_by_its_64_not_by_its_address(product) -> None:
    # Two addresses of one /64, a third of it, and one of the next /64.
    addresses = ["2001:db8:9:1::1", "2001:db8:9:1::2", "2001:db8:9:1:ffff::1", "2001:db8:9:2::1"]
    assert _from(addresses) == [200, 200, 429, 200]


def test_an_ipv4_mapped_ipv6_address_counts_as_its_ipv4_address(product) -> None:
    assert _from(["10.9.0.10", "10.9.0.10", "::ffff:10.9.0.10"]) == [200, 200, 429]


def test_a_forwarded_entry_that_is_no_address_is_counted_as_it_is(product) -> None:
    assert _through_proxy(["unknown"] * 3) == [200, 200, 429]


def test_switched_off_there_is_no_limit(product) -> None:
    client = APIClient(REMOTE_ADDR="10.9.0.6")
    with override_settings(RATELIMIT_READS="1/m", RATELIMIT_ENABLE=False):
        assert {client.get("/api/products").status_code for _ in range(3)} == {200}


@pytest.mark.parametrize("cache_on", [True, False])
def test_with_redis_hung_the_counters_are_left_alone_after_a_failure(
    product, monkeypatch, cache_on
) -> None:
    """Each request would otherwise wait out a socket timeout or two on them. With the cache
    off, no cache lookup fails first to start the rest: the counters' own failure must."""
    calls: list[str] = []

    def counting(*args, **kwargs):
        calls.append(kwargs["group"])
        return real(*args, **kwargs)

    real = throttling.get_usage
    monkeypatch.setattr(throttling, "get_usage", counting)
    caches = {"default": {**settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    client = APIClient(REMOTE_ADDR="10.9.0.11")
    limits = {"RATELIMIT_READS": "100/m", "PRODUCT_CACHE_ENABLED": cache_on}
    with override_settings(CACHES=caches, **limits):
        statuses = [client.get("/api/products/search?name=x").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    # With the cache on, its lookup may fail first and start the rest before any counter.
    assert len(calls) <= 1 if cache_on else len(calls) == 1, calls


def test_with_redis_down_requests_are_served_unthrottled_and_logged(clerk, product, caplog) -> None:
    caches = {"default": {**settings.CACHES["default"]}}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{CLOSED_PORT}/0"
    client = APIClient(REMOTE_ADDR="10.9.0.8")
    with override_settings(CACHES=caches, RATELIMIT_READS="1/m"), caplog.at_level(logging.WARNING):
        reads = {client.get(f"/api/products/{product.id}").status_code for _ in range(3)}
        write = clerk.patch(f"/api/products/{product.id}", {"stock_level": 2}, format="json")
    assert reads == {200}
    assert write.status_code == 200
    assert "rate limit counters unavailable" in caplog.text


def test_a_client_reaching_the_server_directly_cannot_choose_its_address(
    product, caplog, monkeypatch
) -> None:
    monkeypatch.setattr(throttling, "_WARNED", set())
    direct = APIClient(REMOTE_ADDR="10.9.0.7")  # not a proxy in FORWARDED_ALLOW_IPS
    with override_settings(RATELIMIT_READS="2/m", TRUSTED_PROXY_COUNT=1):
        statuses = [
            direct.get("/api/products", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
            for n in range(3)
        ]
    assert statuses == [200, 200, 429]
    warned = [r for r in caplog.records if "not in FORWARDED_ALLOW_IPS" in r.getMessage()]
    assert len(warned) == 1  # once per peer and process: the operator learns of it


def test_a_proxy_on_a_unix_socket_is_believed_as_gunicorn_believes_it(product) -> None:
    """Its REMOTE_ADDR is "" (no address): every client behind it shared one rate limit."""
    forwarded = ["203.0.113.1", "203.0.113.2", "203.0.113.1"]
    assert _through_proxy(forwarded, proxy="", rate="1/m") == [200, 200, 429]


def test_a_proxy_in_a_trusted_network_is_believed(product) -> None:
    statuses = _through_proxy(
        ["203.0.113.1", "203.0.113.2"],
        proxy="10.1.2.3",
        rate="1/m",
        TRUSTED_PROXY_IPS=["10.0.0.0/8"],
    )
    assert statuses == [200, 200]


@pytest.mark.parametrize(
    "entries",
    [
        ["198.51.100.7:4711", "198.51.100.7:4712"],
        ["[2001:db8::7]:4711", "[2001:db8::7]:4712"],
        ["[2001:db8::7]:4711", "2001:db8::7"],
    ],
)
def test_a_forwarded_address_with_a_port_counts_as_its_address(product, entries) -> None:
    assert _through_proxy(entries, rate="1/m") == [200, 429]


def test_a_star_in_forwarded_allow_ips_believes_any_peer(product) -> None:
    forwarded = ["203.0.113.1", "203.0.113.2"]
    statuses = _through_proxy(forwarded, proxy="192.0.2.99", rate="1/m", TRUSTED_PROXY_IPS=["*"])
    assert statuses == [200, 200]


def test_an_entry_of_forwarded_allow_ips_that_is_no_address_is_left_out_and_named(
    product, caplog
) -> None:
    """A host name (gunicorn takes none either) must not be a 500 on every request."""
    proxy = APIClient(REMOTE_ADDR="10.1.2.3")
    entries = ["proxy.internal.example", "10.0.0.0/8"]
    with (
        override_settings(RATELIMIT_READS="1/m", TRUSTED_PROXY_COUNT=1, TRUSTED_PROXY_IPS=entries),
        caplog.at_level(logging.WARNING),
    ):
        first = proxy.get("/api/products", HTTP_X_FORWARDED_FOR="203.0.113.1")
        other = proxy.get("/api/products", HTTP_X_FORWARDED_FOR="203.0.113.2")
    assert (first.status_code, other.status_code) == (200, 200)  # the network still counts
    assert "'proxy.internal.example' is not an address or network" in caplog.text


def test_a_request_refused_as_not_acceptable_uses_up_no_reads(product) -> None:
    """Only refusals by authentication or permissions count (CountsRefusals): content
    negotiation refuses before them, at no cost to the server."""
    client = APIClient(REMOTE_ADDR="10.9.0.9")
    with override_settings(RATELIMIT_READS="2/m"):
        refused = [
            client.get(f"/api/products/{product.id}", HTTP_ACCEPT="application/xml").status_code
            for _ in range(3)
        ]
        answered = client.get(f"/api/products/{product.id}").status_code
    assert (refused, answered) == ([406] * 3, 200)


def test_forwarded_entries_that_are_no_addresses_are_clients_of_their_own(product) -> None:
    forwarded = ["unknown", "unknown", "unknown", "obfuscated"]
    assert _through_proxy(forwarded) == [200, 200, 429, 200]


def test_an_ipv4_mask_makes_each_network_of_that_size_one_client(product) -> None:
    """RATELIMIT_IPV4_MASK=24: a client is its /24, as an IPv6 one is its /64."""
    addresses = ["10.9.1.1", "10.9.1.1", "10.9.1.200", "10.9.2.1"]
    assert _from(addresses, RATELIMIT_IPV4_MASK=24) == [200, 200, 429, 200]
