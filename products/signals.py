"""Cache invalidation, and nothing else: after commit, so no reader can refill the old row.

A transaction that changes many products one by one (the admin's "delete selected", a loop of
saves in a shell) sends their invalidations together: each change queues its id on its
connection, and the first of the transaction's after-commit callbacks sends every queued id,
INVALIDATE_BATCH ids per invalidation (one script and one PING); the callbacks after it find
nothing left. Deleting 5,000 products in the admin cost 5,000 invalidations before (0.24 ms each).

Ids queued in a savepoint or a transaction that was rolled back stay queued and go with the
next commit's: an extra invalidation costs one miss, a lost one a stale read. For the same
reason, ids a send did not get to (it was interrupted) are queued again.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from products import cache
from products.models import Product

INVALIDATE_BATCH = 1_000

# Per connection, which is what a transaction belongs to (a thread's, or an async context's).
_queued: WeakKeyDictionary[BaseDatabaseWrapper, set[int]] = WeakKeyDictionary()


def product_changed(sender: type[Product], instance: Product, using: str, **kwargs: Any) -> None:
    connection = transaction.get_connection(using)
    _queued.setdefault(connection, set()).add(instance.pk)
    transaction.on_commit(lambda: _send(connection), using=using)


def _send(connection: BaseDatabaseWrapper) -> None:
    queued = _queued.pop(connection, None)
    if not queued:
        return  # an earlier callback of the same commit sent them
    ids = sorted(queued)
    for start in range(0, len(ids), INVALIDATE_BATCH):
        try:
            cache.invalidate(ids[start : start + INVALIDATE_BATCH])
        except BaseException:
            _queued.setdefault(connection, set()).update(ids[start:])
            raise


def forget_queued() -> None:
    """Drop every queued id (tests: a test's transaction is rolled back, never committed)."""
    _queued.clear()
