"""The WSGI application, the only entry point (gunicorn serves it): a stack of layers that a
request goes through in this order, the ones that answer some requests handing on the others:

1. `request_ids.RequestIdApp`: the request's id, in its answer and in the lines it logs.
2. `head.HeadWithoutBodyApp`: a HEAD answer keeps GET's headers and loses its body.
3. `forwarded.TrustedProtoApp`: X-Forwarded-Proto is dropped unless a trusted proxy sent it.
4. `request_body.ChunkedBodyApp`: a chunked body is read and given the Content-Length every
   layer below reads it by; a body too large or coded otherwise, and a charset that is no text
   encoding, are refused.
5. `products.api.fast_path.CachedReadsApp`: cache hits of anonymous JSON product reads.
6. `products.api.fast_reads.ProductPagesApp`: the list and search pages the cache did not hold.
7. `products.api.fast_writes.ProductUpdateApp`: plain token updates of one product.
8. Django, through the middleware stack (settings.MIDDLEWARE): everything else.
"""

import os

from django.core.wsgi import get_wsgi_application

# A server started without a settings module is a deployment's: the local settings' DEBUG
# pages and public key are for manage.py and `make run`, which name them.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_project.settings.production")

django_application = get_wsgi_application()

# Imported after setup: they read settings and the cache configuration.
from inventory_project.forwarded import TrustedProtoApp  # noqa: E402
from inventory_project.head import HeadWithoutBodyApp  # noqa: E402
from inventory_project.request_body import ChunkedBodyApp  # noqa: E402
from inventory_project.request_ids import RequestIdApp  # noqa: E402
from products.api.fast_path import CachedReadsApp  # noqa: E402
from products.api.fast_reads import ProductPagesApp  # noqa: E402
from products.api.fast_writes import ProductUpdateApp  # noqa: E402

# The layers 1 to 7 of the docstring, outermost first.
application = RequestIdApp(
    HeadWithoutBodyApp(
        TrustedProtoApp(
            ChunkedBodyApp(CachedReadsApp(ProductPagesApp(ProductUpdateApp(django_application))))
        )
    )
)
