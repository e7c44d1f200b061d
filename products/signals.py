"""Cache invalidation, and nothing else: after commit, so no reader can refill the old row.

A transaction that changes many products one by one (the admin's "delete selected", a loop of
saves in a shell) sends their invalidations together: each change queues its id on its
connection, and the first of the transaction's after-commit callbacks sends every queued id,
in one Redis round trip per INVALIDATE_BATCH ids; the callbacks after it find nothing left.
Deleting 5,000 products in the admin cost 5,000 round trips before (0.24 ms each).

An id is taken off the queue only when it is sent. Ids queued in a savepoint or a transaction
that was rolled back stay queued and go with the next commit's: an extra invalidation costs one
miss, a lost one a stale read.
"""

from __future__ import annotations

import itertools
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
    ids = iter(sorted(queued))
    while batch := list(itertools.islice(ids, INVALIDATE_BATCH)):
        cache.invalidate(batch)
