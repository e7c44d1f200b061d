"""Production: behind a TLS-terminating proxy.

`python manage.py check --deploy --fail-level WARNING` passes with SECRET_KEY (50+ random
characters), ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS set; see the README.
"""

from .base import *
from .base import SECRET_KEY, env_bool, env_int, require_secret_key

DEBUG = False
SECRET_KEY = require_secret_key(SECRET_KEY)

# The proxy terminates TLS and says so in X-Forwarded-Proto, which a WSGI layer ahead of Django
# (inventory_project.forwarded) removes unless the peer is in FORWARDED_ALLOW_IPS: Django alone
# would believe it from any client.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
# Sent over HTTPS only. docker/compose.yaml serves plain HTTP on its port unless a TLS proxy is
# put in front, and turns this off with the redirect.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
