"""pytest: the real PostgreSQL, Redis and RabbitMQ, never SQLite or local memory."""

from .base import *
from .base import CACHES, DATABASES, SECRET_KEY, env_filled

DEBUG = False
SECRET_KEY = SECRET_KEY or "django-insecure-tests-only"
# Separate names let several test runs share one PostgreSQL server without dropping each other's.
DATABASES["default"]["TEST"] = {"NAME": env_filled("TEST_DATABASE_NAME", "test_inventory")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Keep test keys away from a `make run` on the same Redis and let each test start clean, and
# consume from a queue of their own so a running `make run` worker never takes their tasks.
# Variables of their own, like TEST_DATABASE_NAME: a shell that exported `.env` gave the tests
# `make run`'s prefix and queue, and each test deleted the running server's keys.
CACHES["default"]["KEY_PREFIX"] = env_filled("TEST_CACHE_KEY_PREFIX", "inv-test")
CELERY_TASK_DEFAULT_QUEUE = env_filled("TEST_CELERY_TASK_DEFAULT_QUEUE", "inventory-tests")
ADS_SYNC_OUTPUT_DIR = BASE_DIR / ".test-output"
# Serve static files from the apps' folders: tests do not run collectstatic.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
