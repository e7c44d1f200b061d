"""Fixtures for the API's tests."""

from __future__ import annotations

import pytest

from products.api.fast_path import CachedReadsApp
from products.api.fast_reads import ProductPagesApp
from products.api.fast_writes import ProductUpdateApp
from tests.products.api.wsgi_client import CountingDjango


@pytest.fixture
def stack() -> tuple[CachedReadsApp, CountingDjango]:
    """The application's WSGI layers for products around Django's handler, as wsgi.py stacks
    them, and the count of the requests that reach Django."""
    django = CountingDjango()
    return CachedReadsApp(ProductPagesApp(ProductUpdateApp(django))), django
