"""Cache invalidation, and nothing else: after commit, so no reader can refill the old row."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from products import cache
from products.models import Product


def product_changed(sender: type[Product], instance: Product, **kwargs: Any) -> None:
    product_id = instance.pk
    transaction.on_commit(lambda: cache.invalidate([product_id]))
