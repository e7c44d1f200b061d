"""redis-py's connect hook for the cache's Redis (the settings' CACHES, CONNECTION_POOL_KWARGS).

Every new connection first asks `products.cache` whether the server is the one its entries were
written on (`products.cache.redis_connected`). redis-py reconnects a pooled connection whose
server went away without a word to the caller, so a restart was noticed only by a process whose
near cache's own connection broke with it.
"""

from __future__ import annotations

from typing import Any


def connected(connection: Any) -> None:
    connection.on_connect()  # redis-py's own set-up: HELLO or AUTH, SELECT, the health check
    from products import cache  # here, not above: the settings import this module

    cache.redis_connected(connection)
