"""pytest: the real PostgreSQL, Redis and RabbitMQ, never SQLite or local memory."""

import os

from .base import *
from .base import CACHES, DATABASES, SECRET_KEY, env_filled

DEBUG = False
SECRET_KEY = SECRET_KEY or "django-insecure-tests-only"
# Separate names let several test runs share one PostgreSQL server without dropping each other's.
DATABASES["default"]["TEST"] = {"NAME": env_filled("TEST_DATABASE_NAME", "test_inventory")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# pytest-xdist runs the tests in worker processes (`gw0`, `gw1`, ...), one run each: each takes
# a cache prefix, a queue and a folder of its own (pytest-django adds the worker to the test
# database's name itself). A process a test starts inherits the worker's variable, and some are
# given the worker's names already (tests.processes.process_env): a name is suffixed once.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "").strip()


def _worker_own(name: str) -> str:
    suffix = f"-{_XDIST_WORKER}"
    return name if not _XDIST_WORKER or name.endswith(suffix) else name + suffix


# Keep test keys away from a `make run` on the same Redis and let each test start clean, and
# consume from a queue of their own so a running `make run` worker never takes their tasks.
# Variables of their own, like TEST_DATABASE_NAME: a shell that exported `.env` gave the tests
# `make run`'s prefix and queue, and each test deleted the running server's keys.
CACHES["default"]["KEY_PREFIX"] = _worker_own(env_filled("TEST_CACHE_KEY_PREFIX", "inv-test"))
CELERY_TASK_DEFAULT_QUEUE = _worker_own(
    env_filled("TEST_CELERY_TASK_DEFAULT_QUEUE", "inventory-tests")
)
# The tests give the code they run a CSV folder of their own (tmp_path); a worker process that
# plans by its settings is given one through the variable.
ADS_SYNC_OUTPUT_DIR = BASE_DIR / _worker_own(env_filled("TEST_ADS_SYNC_OUTPUT_DIR", ".test-output"))
# Serve static files from the apps' folders: tests do not run collectstatic.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
