import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_project.settings.local")

django_application = get_wsgi_application()

# Imported after setup: they read settings and the cache configuration.
from inventory_project.forwarded import TrustedProtoApp  # noqa: E402
from inventory_project.head import HeadWithoutBodyApp  # noqa: E402
from inventory_project.request_body import ChunkedBodyApp  # noqa: E402
from products.api.fast_path import CachedReadsApp  # noqa: E402
from products.api.fast_reads import ProductPagesApp  # noqa: E402
from products.api.fast_writes import ProductUpdateApp  # noqa: E402

# Cached anonymous product reads, the list and search pages the cache does not hold, and plain
# token updates of one product are answered before Django builds a request; everything else
# goes to Django. First, X-Forwarded-Proto is dropped unless a trusted proxy sent it, and a
# chunked body is given the Content-Length every layer below reads it by. Outermost, a HEAD
# request's answer keeps its headers and loses its body.
application = HeadWithoutBodyApp(
    TrustedProtoApp(
        ChunkedBodyApp(CachedReadsApp(ProductPagesApp(ProductUpdateApp(django_application))))
    )
)
