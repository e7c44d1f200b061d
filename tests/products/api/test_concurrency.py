"""Twenty HTTP clients decrement one product's stock at once: no update is lost."""

from __future__ import annotations

import threading

import pytest
import requests
from django.test import override_settings
from rest_framework.authtoken.models import Token

from tests.products.conftest import ProductFactory, make_user

CLIENTS = 20
MAX_ATTEMPTS = 200


@pytest.mark.django_db(transaction=True)
def test_twenty_clients_with_if_match_lose_no_stock_update(live_server) -> None:
    user = make_user("clerk20", "change_product")
    token = Token.objects.create(user=user).key
    product = ProductFactory(stock_level=100, price="5.00")
    url = f"{live_server.url}/api/products/{product.id}"
    start = threading.Barrier(CLIENTS)
    outcomes: list[tuple[int, int]] = []  # (successful PUTs, 412 retries) per client
    errors: list[BaseException] = []

    def client() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        retries = 0
        try:
            start.wait(timeout=30)
            for _ in range(MAX_ATTEMPTS):
                current = session.get(url, timeout=30)
                assert current.status_code == 200, current.text
                body = current.json()
                response = session.put(
                    url,
                    json={"price": body["price"], "stock_level": body["stock_level"] - 1},
                    headers={"If-Match": current.headers["ETag"]},
                    timeout=30,
                )
                if response.status_code == 412:
                    assert response.json()["error"]["code"] == "precondition_failed"
                    retries += 1
                    continue
                assert response.status_code == 200, response.text
                outcomes.append((1, retries))
                return
            raise AssertionError("gave up after too many 412s")
        except BaseException as exc:
            errors.append(exc)

    with override_settings(RATELIMIT_ENABLE=False):
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    assert not errors, errors
    assert len(outcomes) == CLIENTS
    product.refresh_from_db()
    assert product.stock_level == 100 - CLIENTS
    assert product.version == 1 + CLIENTS
    # The interleaving really happened: some client had to retry after someone else's write.
    assert sum(retries for _, retries in outcomes) > 0
