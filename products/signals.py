"""Cache invalidation, and nothing else: after commit, so no reader can refill the old row.

One transaction's changes are sent together (products/cache.py, `invalidate_on_commit`).
"""

from __future__ import annotations

from typing import Any

from products import cache
from products.models import Product


def product_changed(sender: type[Product], instance: Product, using: str, **kwargs: Any) -> None:
    cache.invalidate_on_commit([instance.pk], using=using)
