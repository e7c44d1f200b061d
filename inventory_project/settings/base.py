"""Settings shared by every environment.

The environment variables every environment shares are read here; the few that one settings
module alone uses are read in that module (local: DEBUG's default; test: the TEST_* names;
production: the SECURE_* ones). Every one is listed with its default in `.env.example`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from kombu.transport import TRANSPORT_ALIASES

from ads_sync import history
from inventory_project import redis_connect
from inventory_project.postgresql.connection import Connection
from inventory_project.postgresql.pool import reconnect_while_requests_wait

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_filled(name: str, default: str) -> str:
    """The variable without the spaces at its ends; empty or blank is the default, as for the
    numbers and switches (an empty queue name, say, configured no queue at all)."""
    return env_str(name, default).strip() or default


def env_folder(name: str, default: str) -> Path:
    """A folder: `~` is the user's home, and a relative path is the checkout's (web, workers and
    commands may run in other directories)."""
    return BASE_DIR / Path(env_filled(name, default)).expanduser()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = (
            f"{minimum if minimum is not None else ''}..{maximum if maximum is not None else ''}"
        )
        raise ImproperlyConfigured(f"{name} must be an integer in {bounds}, got {raw!r}")
    return value


# The most seconds any duration setting takes: PostgreSQL's largest timeout (2^31 - 1 ms), about
# 24.8 days. Far above any sane value, and far below where the sockets, locks and sleeps they are
# passed to overflow (about 10^10 s: REDIS_SOCKET_TIMEOUT_S=1e10 raised OverflowError on every
# Redis call, ADS_SYNC_TIMEOUT_S=1e10 on every Google Ads call).
SECONDS_MAX = 2_147_483


def env_float(
    name: str, default: float, *, positive: bool = False, minimum: float | None = None
) -> float:
    """A finite number (`nan` and `inf` are refused: a timeout or rate of either made the
    processes that read it fail later, with a message that did not name it); above 0 with
    `positive`, else at least 0; at least `minimum` if given."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        which = "above 0" if positive else "0 or more"
        raise ImproperlyConfigured(f"{name} must be a finite number {which}, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def env_seconds(name: str, default: float, *, positive: bool = False) -> float:
    """A duration: env_float's number, at most SECONDS_MAX."""
    value = env_float(name, default, positive=positive)
    if value > SECONDS_MAX:
        raise ImproperlyConfigured(
            f"{name} must be at most {SECONDS_MAX} seconds, got {os.environ[name]!r}"
        )
    return value


def env_pg_timeout_s(name: str, default: float) -> float:
    """Seconds for one of PostgreSQL's timeouts, 0 for none. PostgreSQL takes whole
    milliseconds up to 2^31 - 1: below 1 ms it read 0 (no limit), above it refused the value
    ("value exceeds integer range") on every connection or migration that set it."""
    value = env_float(name, default)
    if value and not 0.001 <= value <= SECONDS_MAX:
        raise ImproperlyConfigured(
            f"{name} must be 0 (no limit) or 0.001 to {SECONDS_MAX} seconds, "
            f"got {os.environ[name]!r}"
        )
    return value


def pg_milliseconds(seconds: float) -> str:
    """A timeout as PostgreSQL's settings take it with no unit: whole milliseconds."""
    return str(round(seconds * 1000))


def env_time_of_day(name: str, default: str) -> tuple[int, int]:
    """A time of day as HH:MM (or HH), 00:00 to 23:59: the hour and the minute."""
    raw = env_filled(name, default)
    match = re.fullmatch(r"([0-9]{1,2})(?::([0-9]{2}))?", raw)
    hour, minute = (int(match[1]), int(match[2] or 0)) if match else (-1, -1)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ImproperlyConfigured(
            f"{name} must be a time of day, HH:MM (00:00-23:59), got {raw!r}"
        )
    return hour, minute


def env_rate(name: str, default: str) -> str:
    """A django-ratelimit rate, checked whole: it reads "5/x" as 5 a second and fails on every
    request for "abc" (a 500 from the first API read)."""
    raw = env_filled(name, default)
    match = re.fullmatch(r"([0-9]+)/([0-9]*)([smhd])", raw)
    if match is None or int(match[1]) == 0 or int(match[2] or 1) == 0:
        raise ImproperlyConfigured(
            f"{name} must be a rate: requests, '/', then s, m, h or d, maybe after a number "
            f"(100/m, 5/10s), got {raw!r}"
        )
    return raw


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_customer_ids(name: str, *, many: bool = True) -> list[str]:
    """Google Ads customer ids, comma-separated: ten digits each, dashes allowed (123-456-7890)."""
    given = env_list(name, "")
    if not many and len(given) > 1:
        raise ImproperlyConfigured(f"{name} takes one customer id, got {len(given)}")
    bad = [item for item in given if not re.fullmatch(r"[0-9]{10}", item.replace("-", ""))]
    if bad:
        raise ImproperlyConfigured(
            f"{name}: a customer id is ten digits, dashes allowed; got {', '.join(map(repr, bad))}"
        )
    return [item.replace("-", "") for item in given]


def url_parts(name: str, url: str) -> tuple[SplitResult, int | None]:
    """The URL in variable `name`, split, and its port: a port that is not a number (or past
    65535) and a bad IPv6 address are refused naming the variable, where urllib's traceback
    named neither it nor the URL. Not with urllib's words: a password holding an unencoded
    `/` is cut there, and urllib quoted what came before it as the port."""
    try:
        parts = urlsplit(url)
        return parts, parts.port
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}: its port is not a number from 0 to 65535, or its IPv6 address is "
            "malformed; in the user name and password, percent-encode any of : / ? # [ ] @"
        ) from None


def database_from_url(url: str) -> dict[str, object]:
    """Translate `postgres://user:password@host:port/name?option=value` into a DATABASES entry."""
    parts, port = url_parts("DATABASE_URL", url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// URL, got {parts.scheme!r}")
    return {
        # Django's backend, with a cheaper check of pooled connections (see its docstring).
        "ENGINE": "inventory_project.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


# --- Core -----------------------------------------------------------------------------------

SECRET_KEY = env_str("SECRET_KEY", "")
DEBUG = env_bool("DEBUG", False)
# Empty (or only commas) is the default, as for the other variables: an empty list answered
# every request with a 400 outside DEBUG. No settings module has a default of its own.
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "") or ["localhost", "127.0.0.1", "[::1]"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
PORT = env_int("PORT", 8000, minimum=1, maximum=65535)
# Error reports (DEBUG's page, e-mails) hide the password inside URL settings too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "inventory_project.error_reports.SettingsFilter"

INSTALLED_APPS = [
    "inventory_project.apps.AdminConfig",  # django.contrib.admin with the project's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "inventory_project",
    "products",
    "ads_sync",
]

MIDDLEWARE = [
    # First: the pages the security middleware answers itself (a bad Host's 400) carry it too.
    "inventory_project.csp.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Cached product reads are answered here, ahead of sessions, auth and DRF.
    "products.api.fast_path.ProductCacheMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "inventory_project.logins.LoginRateLimitMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last, so that it sees a view's exception first: a database outage or a lock held too
    # long is a 503 page, not the 500 of a bug.
    "inventory_project.unavailable.DatabaseUnavailableMiddleware",
]

# The HTML pages' policy (inventory_project/csp.py): their own scripts, styles, images and
# requests only; no inline script, no framing, no plugin, forms posted to the site only.
CONTENT_SECURITY_POLICY = env_filled(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self';"
    " frame-ancestors 'none'",
)

ROOT_URLCONF = "inventory_project.urls"
WSGI_APPLICATION = "inventory_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic puts the files the web serves (whitenoise). The Docker image collects them
# into the default as it is built.
STATIC_ROOT = env_folder("STATIC_ROOT", "staticfiles")
# Files served at the site's root by whitenoise: the favicon, which browsers ask every page
# of the admin, the browsable API and Swagger for (a 404 and a warning line each time).
WHITENOISE_ROOT = BASE_DIR / "inventory_project" / "public"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- PostgreSQL (psycopg 3 with Django's native pool) ---------------------------------------

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/inventory")
DB_POOL_MIN_SIZE = env_int("DB_POOL_MIN_SIZE", 2, minimum=0)
# Sized for a gthread worker with several threads plus the tests' concurrent clients.
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 20, minimum=1)
# psycopg_pool refuses a max below the min only when Django opens the pool: the processes started
# and every request was a 500 (/readyz a 503) with its ValueError, which named neither variable.
if DB_POOL_MAX_SIZE < DB_POOL_MIN_SIZE:
    raise ImproperlyConfigured(
        f"DB_POOL_MAX_SIZE must be at least DB_POOL_MIN_SIZE ({DB_POOL_MIN_SIZE}), "
        f"got {DB_POOL_MAX_SIZE}"
    )
DB_POOL_TIMEOUT_S = env_seconds("DB_POOL_TIMEOUT_S", 10.0, positive=True)
# Once a checkout has waited DB_POOL_TIMEOUT_S in vain, the next ones wait this long, until one
# gets a connection (inventory_project/postgresql/base.py): in an outage, a 503 in half a
# second instead of a server thread held for ten, so the requests behind do not queue.
DB_POOL_OUTAGE_TIMEOUT_S = env_seconds("DB_POOL_OUTAGE_TIMEOUT_S", 0.5, positive=True)
# psycopg_pool tries a lost connection again at doubling intervals (1, 2, 4, 8 s ...) for five
# minutes, and only one such attempt at a time may grow the pool: after an outage of a minute
# its next try could come half a minute after PostgreSQL was back, with every request meanwhile
# waiting DB_POOL_TIMEOUT_S for a 503. An attempt gives up after this long instead, and the
# next starts at once while requests wait (inventory_project/postgresql/pool.py).
DB_POOL_RECONNECT_TIMEOUT_S = env_seconds("DB_POOL_RECONNECT_TIMEOUT_S", 5.0, positive=True)
# psycopg prepares a statement on a connection once it has run this many times there, so hot
# queries skip PostgreSQL's parse and plan (the token query's plan cost four times its run).
# 0 turns it off: needed behind PgBouncer in transaction mode before version 1.21. A negative
# number was taken silently, as 0.
DB_PREPARE_THRESHOLD = env_int("DB_PREPARE_THRESHOLD", 5, minimum=0)
# How many prepared statements each connection keeps, the least recently used deallocated past
# it (psycopg's default, 100). Each holds its plan in the connection's server process: a search
# repeated often enough is prepared with its values (products/selectors.py), and its plan takes
# 73-458 kB there, so many distinct repeated searches could take up to 46 MB of the server's
# memory per connection. Lower it where that counts more than planning; it is also the room
# the hot fixed statements (the token query, the update) share with the searches.
DB_PREPARED_MAX = env_int("DB_PREPARED_MAX", 100, minimum=1)

# How long an atomic migration waits for a lock (a table's, or a row's in a data migration)
# before it gives up, rolled back (inventory_project/postgresql/schema.py); 0: no limit.
MIGRATION_LOCK_TIMEOUT_S = env_pg_timeout_s("MIGRATION_LOCK_TIMEOUT_S", 5.0)
# What a web request's SQL may wait for, set on each connection of a gunicorn worker
# (gunicorn.conf.py; inventory_project/postgresql/base.py), 0 for no limit. Without them a
# request waited as long as whatever held its lock: ten PUTs behind a row lock that a shell kept
# for 30 s held all eight of the server's threads that long, and /healthz waited 28.6 s behind
# them. Past a limit the request gets a 503 saying which. Celery's workers, the commands and
# migrations keep PostgreSQL's defaults: they wait for advisory locks on purpose, and may build
# an index for minutes (the tasks have time limits of their own).
WEB_DB_LOCK_TIMEOUT_S = env_pg_timeout_s("WEB_DB_LOCK_TIMEOUT_S", 5.0)
WEB_DB_STATEMENT_TIMEOUT_S = env_pg_timeout_s("WEB_DB_STATEMENT_TIMEOUT_S", 10.0)
# A transaction of a web request idle this long (a request stuck between two statements) is
# ended by the server, with its locks.
WEB_DB_IDLE_IN_TRANSACTION_TIMEOUT_S = env_pg_timeout_s(
    "WEB_DB_IDLE_IN_TRANSACTION_TIMEOUT_S", 60.0
)
# How long a web request waits for any one answer from PostgreSQL before its connection is
# closed and it gets a 503: the limits above are the server's own, and a server that stopped
# working without closing its sockets (a frozen process, a stalled disk) enforces none of them,
# while its kernel keeps TCP's probes answered. A request on it waited with no end, and with it
# every request queued behind the worker's threads (inventory_project/postgresql/connection.py).
# Above the statement limit, so that a slow query gets PostgreSQL's own answer; 0: no limit.
WEB_DB_ANSWER_TIMEOUT_S = env_seconds("WEB_DB_ANSWER_TIMEOUT_S", 15.0)
if 0 < WEB_DB_ANSWER_TIMEOUT_S <= WEB_DB_STATEMENT_TIMEOUT_S:
    raise ImproperlyConfigured(
        "WEB_DB_ANSWER_TIMEOUT_S must be above WEB_DB_STATEMENT_TIMEOUT_S "
        f"({WEB_DB_STATEMENT_TIMEOUT_S:g}), or 0 for no limit, got {WEB_DB_ANSWER_TIMEOUT_S:g}"
    )
WEB_DB_SESSION = {
    "lock_timeout": pg_milliseconds(WEB_DB_LOCK_TIMEOUT_S),
    "statement_timeout": pg_milliseconds(WEB_DB_STATEMENT_TIMEOUT_S),
    "idle_in_transaction_session_timeout": pg_milliseconds(WEB_DB_IDLE_IN_TRANSACTION_TIMEOUT_S),
}

_default_db = database_from_url(DATABASE_URL)
_default_db.update(
    {
        # The pool owns connection lifetime: Django requires CONN_MAX_AGE = 0 with it.
        "CONN_MAX_AGE": 0,
        # Off: with the pool, this would cost an empty query on every checkout. The backend
        # (inventory_project/postgresql) checks each checkout without a round trip instead.
        "CONN_HEALTH_CHECKS": False,
    }
)
_db_options = dict(_default_db["OPTIONS"])  # type: ignore[call-overload]
_db_options["pool"] = {
    "min_size": DB_POOL_MIN_SIZE,
    "max_size": DB_POOL_MAX_SIZE,
    "timeout": DB_POOL_TIMEOUT_S,
    "reconnect_timeout": DB_POOL_RECONNECT_TIMEOUT_S,
    "reconnect_failed": reconnect_while_requests_wait,
    # psycopg's, with the web's bound on waiting for an answer (WEB_DB_ANSWER_TIMEOUT_S).
    "connection_class": Connection,
}
# A server that vanished without a word (a host gone, a network cut) was noticed only when TCP
# gave up: about 15 minutes for a query waiting on it, two hours for an idle connection (the
# cache listener's LISTEN among them, which meanwhile missed every change), two minutes for a
# connection attempt. libpq's parameters; the URL's query string may set each otherwise. The
# user timeout also ends a connection whose server reads nothing for that long while the app
# sends (a COPY): 30 s, not less.
DB_CONNECTION_DEFAULTS = {
    "connect_timeout": "5",  # seconds
    "keepalives_idle": "10",  # seconds without traffic before the first probe
    "keepalives_interval": "5",
    "tcp_user_timeout": "30000",  # ms that sent data (a probe too) may go unacknowledged
}
# The server's side, set on each new connection (inventory_project/postgresql/base.py). A
# connection the app gave up on in a cut stayed open on the server for two hours (its keepalive
# default), with any transaction's locks: about 25 s of silence ends it. A statement whose
# client closed its connection (WEB_DB_ANSWER_TIMEOUT_S, a worker killed at its hard time
# limit) ran on to its end, holding its locks, where no statement limit ended it: the server
# looks at the client's socket every second while it runs (PostgreSQL 14+).
DB_SERVER_SESSION = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "client_connection_check_interval": "1000",  # ms
}
_db_options = {**DB_CONNECTION_DEFAULTS, **_db_options}
if DB_PREPARE_THRESHOLD > 0:
    # Only server-side binding sends parameters apart from the query text, which preparing needs.
    _db_options["server_side_binding"] = True
    _db_options["prepare_threshold"] = DB_PREPARE_THRESHOLD
_default_db["OPTIONS"] = _db_options
DATABASES = {"default": _default_db}

# --- Redis: cache, rate limits, locks -------------------------------------------------------

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Refused at start, naming the variable: without a scheme, or with a port that was not a number,
# the server started and every API read was a 500 ("Redis URL must specify one of the following
# schemes", urllib's "Port could not be cast to integer value").
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):  # as redis-py reads it
    raise ImproperlyConfigured(
        f"REDIS_URL must be a redis://, rediss:// or unix:// URL, got {REDIS_URL.split('@')[-1]!r}"
    )
# django-redis takes a comma-separated list (the primary, then replicas): each is checked.
for _redis_url in REDIS_URL.split(","):
    _redis_parts, _ = url_parts("REDIS_URL", _redis_url)
    # redis-py reads the path of a redis:// URL as the database number (unless `?db=` gives
    # it), and silently took db 0 for one that was not a number (`/cache`).
    if (
        _redis_parts.scheme != "unix"
        and "db=" not in _redis_parts.query
        and not re.fullmatch(r"[0-9]*", unquote(_redis_parts.path).replace("/", ""))
    ):
        # Not the path itself: a password holding an unencoded `/` would be in it.
        raise ImproperlyConfigured(
            "REDIS_URL: its path is the database number, a whole number (redis://host:6379/0); "
            "in the password, percent-encode any of : / ? # [ ] @"
        )
# Short timeouts: a dead or black-holed Redis must degrade to PostgreSQL, not hang requests.
REDIS_SOCKET_TIMEOUT_S = env_seconds("REDIS_SOCKET_TIMEOUT_S", 0.25, positive=True)

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        # Empty is the default: an empty prefix put the keys at `:1:products:...`, beside any
        # other user of the same Redis database.
        "KEY_PREFIX": env_filled("CACHE_KEY_PREFIX", "inv"),
        "TIMEOUT": 300,
        "OPTIONS": {
            # django-redis's client, counting rate limits in one round trip, not two.
            "CLIENT_CLASS": "inventory_project.ratelimit_counters.CountingClient",
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT_S,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT_S,
            "IGNORE_EXCEPTIONS": True,
            "CONNECTION_POOL_KWARGS": {
                "max_connections": 100,
                "retry_on_timeout": False,
                # Each new connection checks that the server is the one the product cache's
                # entries were written on (a restart may have reloaded an older snapshot).
                "redis_connect_func": redis_connect.connected,
            },
        },
    }
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "inventory_project.cache"

# --- Celery (RabbitMQ broker; progress lives in the database, so no result backend) ---------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
# Each of its URLs (Celery takes failover ones, `;`-separated) checked at start: one whose port
# was not a number started the web (its /readyz failing) and stopped the worker and beat with
# a traceback that named neither the variable nor the URL.
for _broker in CELERY_BROKER_URL.split(";"):
    _parts, _ = url_parts("CELERY_BROKER_URL", _broker)
    # As kombu reads it: `redis+socket://` is the redis transport.
    if "://" not in _broker or _parts.scheme.partition("+")[0] not in TRANSPORT_ALIASES:
        raise ImproperlyConfigured(
            "CELERY_BROKER_URL must be a URL of a transport Celery knows (amqp://, redis://, "
            f"...), got {_broker.split('://')[0] if '://' in _broker else _broker.split('@')[-1]!r}"
        )
# Empty is the default (as the Procfile's worker --hostname reads it): with an empty name Celery
# configured no queue at all, and routed its tasks to none.
CELERY_TASK_DEFAULT_QUEUE = env_filled("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# No results to expire: without this, beat adds a daily `celery.backend_cleanup` task that
# cleans nothing and shows among the periodic tasks.
CELERY_RESULT_EXPIRES = None
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360, minimum=1)
# The soft limit lets a task end itself (SoftTimeLimitExceeded) before the hard one kills its
# process: at or past the hard limit it never came.
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT "
        f"({CELERY_TASK_TIME_LIMIT}), got {CELERY_TASK_SOFT_TIME_LIMIT}"
    )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = False
# Celery's line, with the id of what is served (inventory_project/request_ids.py): in a task,
# the web request's that sent it, else the task's own; "-" outside a task.
CELERY_WORKER_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(request_id)s %(message)s"
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "inventory_project.beat:Scheduler"

# Periodic tasks that `manage.py ensure_periodic_tasks` creates when missing. Operators edit
# them in the admin afterwards; the command never overwrites an existing entry. Domains append.
# Each item: name, task, crontab dict (minute, hour, day_of_week, day_of_month, month_of_year),
# and optionally kwargs and a description.
PERIODIC_TASKS: list[dict[str, object]] = [
    {
        "name": "sessions: clear expired",
        "task": "inventory_project.clear_expired_sessions",
        "crontab": {"minute": "30", "hour": "4"},
        "description": "Delete expired login sessions (Django's clearsessions).",
    }
]
LOGIN_REDIRECT_URL = "products:list"  # a route name: resolve_url() reverses it
# Passwords set in the admin or with `changepassword`: Django's four checks (Django's own
# project template sets them). Without them "1", "password" or the username itself was taken,
# and the login limits (RATELIMIT_LOGINS, 10/m: 14,400 guesses a day per username) slow a
# guesser down, but the first entries of any list of common passwords still come in a day.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- REST framework and OpenAPI -------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "inventory_project.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "inventory_project.parsers.JSONParser",
        "inventory_project.parsers.FormParser",
        "inventory_project.parsers.MultiPartParser",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "inventory_project.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.DjangoModelPermissionsOrAnonReadOnly"
    ],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "inventory_project.negotiation.ContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # One JSON error shape for every API error.
    "EXCEPTION_HANDLER": "products.api.errors.api_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Inventory API",
    "DESCRIPTION": "Products: detail, paginated list, search, and authenticated writes.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["products.api.schema.without_slash_twins"],
}

# --- Rate limits (django-ratelimit on the shared Redis cache) -------------------------------

RATELIMIT_ENABLE = env_bool("RATELIMIT_ENABLED", True)
RATELIMIT_USE_CACHE = "default"
# With Redis down, serve unthrottled (and log) rather than refuse every request.
RATELIMIT_FAIL_OPEN = True
RATELIMIT_READS = env_rate("RATELIMIT_READS", "100/m")
RATELIMIT_WRITES = env_rate("RATELIMIT_WRITES", "50/m")
# Login POSTs (admin, browsable API), counted per client IP and per username; the admin's
# password changes per client IP and per account.
RATELIMIT_LOGINS = env_rate("RATELIMIT_LOGINS", "10/m")
# Clients are keyed by REMOTE_ADDR unless this many proxies in front append X-Forwarded-For.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
# The peers whose X-Forwarded-For is read (with TRUSTED_PROXY_COUNT): the proxies gunicorn
# trusts with X-Forwarded-Proto, the same variable. A client that reaches the server directly
# counts as its own address, whatever header it sends. "*": any peer.
TRUSTED_PROXY_IPS = env_list("FORWARDED_ALLOW_IPS", "127.0.0.1")
# One client's network, for every limit above (django-ratelimit's names and defaults): an IPv6
# host commonly holds a whole /64.
RATELIMIT_IPV6_MASK = env_int("RATELIMIT_IPV6_MASK", 64, minimum=0, maximum=128)
RATELIMIT_IPV4_MASK = env_int("RATELIMIT_IPV4_MASK", 32, minimum=0, maximum=32)

# --- Products ---------------------------------------------------------------------------------

PRODUCT_CACHE_ENABLED = env_bool("PRODUCT_CACHE_ENABLED", True)
PRODUCT_CACHE_TTL_S = env_int("PRODUCT_CACHE_TTL_S", 300, minimum=1, maximum=SECONDS_MAX)
# Per-process copy of hot entries, kept coherent by Redis invalidation pushes; 0 turns it off.
PRODUCT_NEAR_CACHE_MAX_BYTES = env_int("PRODUCT_NEAR_CACHE_MAX_BYTES", 64 * 1024 * 1024, minimum=0)
# Token-authenticated JSON updates of one product answered ahead of Django's request cycle
# (products/api/fast_writes.py); false sends every write through the DRF view.
PRODUCT_FAST_WRITES = env_bool("PRODUCT_FAST_WRITES", True)
# Anonymous JSON list and search pages that the cache does not answer, answered ahead of
# Django's request cycle (products/api/fast_reads.py); false sends them through the DRF views.
PRODUCT_FAST_READS = env_bool("PRODUCT_FAST_READS", True)

# --- Google Ads sync --------------------------------------------------------------------------

GOOGLE_ADS_CLIENT_ID = env_str("GOOGLE_ADS_CLIENT_ID", "")
GOOGLE_ADS_CLIENT_SECRET = env_str("GOOGLE_ADS_CLIENT_SECRET", "")
GOOGLE_ADS_REFRESH_TOKEN = env_str("GOOGLE_ADS_REFRESH_TOKEN", "")
GOOGLE_ADS_DEVELOPER_TOKEN = env_str("GOOGLE_ADS_DEVELOPER_TOKEN", "")
GOOGLE_ADS_CUSTOMER_IDS = env_customer_ids("GOOGLE_ADS_CUSTOMER_IDS")
# The manager account the accounts are reached through, if any.
GOOGLE_ADS_LOGIN_CUSTOMER_ID = "".join(env_customer_ids("GOOGLE_ADS_LOGIN_CUSTOMER_ID", many=False))
GOOGLE_ADS_ENDPOINT = env_str("GOOGLE_ADS_ENDPOINT", "googleads.googleapis.com")
GOOGLE_ADS_TOKEN_URI = env_filled("GOOGLE_ADS_TOKEN_URI", "https://oauth2.googleapis.com/token")
GOOGLE_ADS_CA_FILE = env_str("GOOGLE_ADS_CA_FILE", "")
ADS_SYNC_TIMEOUT_S = env_seconds("ADS_SYNC_TIMEOUT_S", 60.0, positive=True)
# At least one call in 1,000 s: a rate like 1e-320 made every call's wait infinite, and the
# sleep raised OverflowError.
ADS_SYNC_MAX_QPS = env_float("ADS_SYNC_MAX_QPS", 5.0, minimum=0.001)
ADS_SYNC_MAX_ATTEMPTS = env_int("ADS_SYNC_MAX_ATTEMPTS", 5, minimum=1)
# Exponential backoff with jitter between attempts: base, doubled per attempt, capped.
ADS_SYNC_RETRY_BASE_S = env_seconds("ADS_SYNC_RETRY_BASE_S", 1.0)
ADS_SYNC_RETRY_MAX_S = env_seconds("ADS_SYNC_RETRY_MAX_S", 60.0)
# Empty is the default: it was the project folder itself, and the CSVs landed among the code.
ADS_SYNC_OUTPUT_DIR = env_folder("ADS_SYNC_OUTPUT_DIR", "output")
# Back to 2000-01-01 at most: unbounded, a million days overflowed the date arithmetic
# (OverflowError) in every gap detection. The UTC date, as backfill_ads': Django sets TZ only after
# the settings are read, so date.today() here was the machine's.
_utc_today = dt.datetime.now(dt.UTC).date()
_ads_sync_days_max = (_utc_today - dt.date(2000, 1, 1)).days
# The history, at most the most days of the 37 months Google Ads serves by day: the days of those
# months vary (1122 to 1126), and a bound of the day's count refused the next day what it took.
# The gap detection plans no day before the earliest of its own day (ads_sync/selectors.py).
ADS_SYNC_HISTORY_DAYS = env_int(
    "ADS_SYNC_HISTORY_DAYS", 730, minimum=1, maximum=history.DAYS_SERVED_MOST
)
ADS_SYNC_LOOKBACK_DAYS = env_int("ADS_SYNC_LOOKBACK_DAYS", 3, minimum=0, maximum=_ads_sync_days_max)
# A failed day is tried by every daily detection this many times in a row; after that the
# detection waits 2, 4, 8 ... days between tries, at most the max. `backfill_ads` does not wait.
ADS_SYNC_FAILED_DAILY_RETRIES = env_int("ADS_SYNC_FAILED_DAILY_RETRIES", 2, minimum=0)
# At most the days since 2000-01-01, as the lookback: above about 2.9 million days the date of the
# next try overflowed (OverflowError in the task that recorded the failure).
ADS_SYNC_FAILED_BACKOFF_MAX_DAYS = env_int(
    "ADS_SYNC_FAILED_BACKOFF_MAX_DAYS", 30, minimum=1, maximum=_ads_sync_days_max
)
# (hour, minute), UTC. Checked here: beat took "25:00" and then never ran the detection.
ADS_SYNC_DAILY_AT = env_time_of_day("ADS_SYNC_DAILY_AT", "03:00")
PERIODIC_TASKS.append(
    {
        "name": "ads_sync: detect gaps",
        "task": "ads_sync.detect_gaps",
        "crontab": {"minute": str(ADS_SYNC_DAILY_AT[1]), "hour": str(ADS_SYNC_DAILY_AT[0])},
        "kwargs": {"trigger": "beat"},
        "description": "Plan the missing Google Ads days and fan out one sync_day per date.",
    }
)
PERIODIC_TASKS.append(
    {
        "name": "ads_sync: resend lost tasks",
        "task": "ads_sync.resend_lost",
        "crontab": {"minute": "*/10"},
        "description": (
            "Send again the days of unfinished runs whose sync_day tasks are nowhere (a purged "
            "queue, a broker that lost its data): checked twice, 10 minutes apart."
        ),
    }
)

# --- Logging: everything to stderr, where the process manager or container runtime collects it

# In any case, as celery's --loglevel takes it; empty is the default. logging.config refused
# `info`, `10` or `verbose` in every process with a traceback that did not name the variable.
# WARN and FATAL are logging's (and celery's) other names for WARNING and CRITICAL.
_log_levels = {name: name for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}
_log_levels.update(WARN="WARNING", FATAL="CRITICAL")
_log_level = env_filled("LOG_LEVEL", "INFO").upper()
if _log_level not in _log_levels:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be one of {', '.join(_log_levels)} (any case), "
        f"got {os.environ['LOG_LEVEL']!r}"
    )
LOG_LEVEL = _log_levels[_log_level]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # request_id: the web request's (inventory_project/request_ids.py), "-" outside one.
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s %(process)d %(request_id)s %(message)s"
        },
    },
    "filters": {
        "sparse": {"()": "inventory_project.logs.Sparse"},
        # On the handler: every logger's lines pass it, the libraries' too. (Celery's worker
        # and beat put handlers of their own in its place: inventory_project/celery.py.)
        "credentials": {"()": "inventory_project.logs.WithoutCredentials"},
        "request_id": {"()": "inventory_project.request_ids.RequestIdFilter"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["credentials", "request_id"],
        }
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler (DEBUG only) would print each of its lines a second
        # time, unformatted: its lines go to the root handler alone.
        "django": {"handlers": [], "propagate": True},
        "django.db.backends": {"level": "INFO"},
        # A request for a host not in ALLOWED_HOSTS is a 400 (in the access log) that every
        # scanner sends: a line a minute without the traceback, not one each time (the line
        # still tells a deploy whose ALLOWED_HOSTS lacks its own host).
        "django.security.DisallowedHost": {"filters": ["sparse"]},
        "inventory_project.cache": {"level": "WARNING"},
        # google-api-core turns this logger's propagation off when a client is built, unless
        # it is configured: google-ads' lines (`Request made: ... FaultMessage: ...` for a failed
        # call) then went to logging's last resort, unformatted and past the handler's filter.
        # Configured, they reach the handler; from WARNING up, as the last resort took them
        # (its INFO is a line per API call).
        "google": {
            "level": LOG_LEVEL if LOG_LEVEL in ("ERROR", "CRITICAL") else "WARNING",
            "propagate": True,
        },
    },
}


def require_secret_key(key: str) -> str:
    if not key:
        raise ImproperlyConfigured("SECRET_KEY must be set in production")
    return key
