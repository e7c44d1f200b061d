"""Developer machine: `make run` and the manage.py commands default to these."""

from .base import *
from .base import SECRET_KEY, env_bool

DEBUG = env_bool("DEBUG", True)
# A development key is fine here; production refuses to start without SECRET_KEY.
SECRET_KEY = SECRET_KEY or "django-insecure-local-development-only"
