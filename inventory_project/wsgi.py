import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_project.settings.local")

django_application = get_wsgi_application()

# Imported after setup: it reads settings and the cache configuration.
from products.api.fast_path import CachedReadsApp  # noqa: E402

# Cached anonymous product reads are answered before Django builds a request.
application = CachedReadsApp(django_application)
