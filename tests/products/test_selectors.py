"""Reads: paging edge cases and the catalogue count."""

from __future__ import annotations

import pytest
from django.db import connection

from products import selectors
from products.models import Product
from tests.products.conftest import ProductFactory


@pytest.mark.django_db
def test_count_switches_to_the_planner_estimate_on_a_large_table(monkeypatch) -> None:
    ProductFactory.create_batch(3)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE products_product")
    monkeypatch.setattr(selectors, "EXACT_COUNT_MAX_ROWS", 1)
    page = selectors.product_list(page=1, limit=20)
    assert page.count_is_estimate is True
    assert page.count == 3


@pytest.mark.django_db
def test_page_past_the_end_raises_page_out_of_range() -> None:
    ProductFactory.create_batch(2)
    with pytest.raises(selectors.PageOutOfRange):
        selectors.product_list(page=2, limit=2)


@pytest.mark.django_db
def test_product_get_of_missing_id_raises_does_not_exist() -> None:
    with pytest.raises(Product.DoesNotExist):
        selectors.product_get(product_id=1)
