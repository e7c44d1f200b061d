"""gunicorn settings, read from the environment so the Procfile, Docker and the benchmark agree."""

import multiprocessing
import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured


def _env_int(name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    """As the settings' env_int (inventory_project/settings/base.py), which gunicorn's master
    cannot import here without loading every Django setting: empty is the default, and a value
    that is no integer, or out of range, is refused naming the variable. Read with a bare int(),
    `abc` was a traceback that named none, and a 0 made a server that listened and never
    answered (WEB_CONCURRENCY, GUNICORN_WORKER_CONNECTIONS) or whose workers failed to boot
    (GUNICORN_THREADS)."""
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}..{maximum if maximum is not None else ''}"
        raise ImproperlyConfigured(f"{name} must be an integer in {bounds}, got {raw!r}")
    return value


# gunicorn itself reads WEB_CONCURRENCY as it starts, before this file: it stops on a value
# that is not an integer, an empty one included, with its own traceback.
_port = _env_int("PORT", 8000, minimum=1, maximum=65535)
# Loopback unless HOST says otherwise: a server is put on the network on purpose (plain HTTP,
# maybe the local settings' DEBUG pages). The Docker image sets 0.0.0.0 for its published port.
bind = f"{os.environ.get('HOST') or '127.0.0.1'}:{_port}"
workers = _env_int("WEB_CONCURRENCY", multiprocessing.cpu_count(), minimum=1)
# gthread, dropping a client that goes quiet in the middle of a request (gunicorn_worker.py).
worker_class = os.environ.get(
    "GUNICORN_WORKER_CLASS", "inventory_project.gunicorn_worker.ThreadWorker"
)
threads = _env_int("GUNICORN_THREADS", 4, minimum=1)
# Seconds that worker waits for each next piece of a request it reads; 0: no limit.
# At most 2147483, as the settings' durations (SECONDS_MAX in settings/base.py).
_read_timeout = _env_int("GUNICORN_READ_TIMEOUT_S", 10, minimum=0, maximum=2_147_483)
# Open connections one worker takes at most (gunicorn's default: 1000). A worker that has its
# share stops accepting, so the others get the rest: without a cap, a burst of new keep-alive
# connections can all land on the one worker that was awake, and wait on its GIL while the
# other workers idle. gthread keeps at most this minus `threads` connections alive.
worker_connections = _env_int("GUNICORN_WORKER_CONNECTIONS", 1000, minimum=1)
# 0: no keep-alive; a timeout of 0: none (gunicorn's meanings).
keepalive = _env_int("GUNICORN_KEEPALIVE", 5, minimum=0)
timeout = _env_int("GUNICORN_TIMEOUT", 30, minimum=0)
graceful_timeout = 20
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
# gunicorn's default line, with how long the request took (milliseconds) and the request's id
# (inventory_project/request_ids.py: the one its other lines carry) at its end.
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms %({x-request-id}o)s'
)
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No header from those proxies sets a WSGI variable (gunicorn's default takes SCRIPT_NAME and
# PATH_INFO from headers of those names). A proxy that passes a client's headers with
# underscores on (HAProxy, Envoy) let the client move the app under a prefix: /x/admin/login/
# with `SCRIPT_NAME: /x` was the admin, past the proxy's rules for /admin/, and a prefix the
# path lacks was a 500. Nothing here is served under a prefix.
forwarder_headers = ""
# The control socket (gunicorn 25.1+) is not used here, and its default path
# ($XDG_RUNTIME_DIR or $HOME/.gunicorn) is shared by every server of a user (make run, the
# tests' and the benchmark's), and not writable in the image. Older releases ignore this.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Say at start that GUNICORN_READ_TIMEOUT_S is not applied when the worker class is not the
    project's: a `.env` copied from an older `.env.example` names gunicorn's own gthread."""
    from inventory_project.gunicorn_worker import ThreadWorker

    if _read_timeout and not issubclass(server.worker_class, ThreadWorker):
        server.log.warning(
            "GUNICORN_READ_TIMEOUT_S=%s is not applied: only "
            "inventory_project.gunicorn_worker.ThreadWorker reads it, and "
            "GUNICORN_WORKER_CLASS is %s (set GUNICORN_READ_TIMEOUT_S=0 if no limit is meant)",
            _read_timeout,
            server.cfg.worker_class_str,
        )


def post_worker_init(worker: Any) -> None:
    """Bound what a request's SQL may wait for (the settings' WEB_DB_*), answer the requests
    gunicorn itself refuses in the API's JSON error shape, and hand the worker its read limit."""
    from inventory_project import server_errors
    from inventory_project.postgresql import base

    base.serve_web_requests()
    server_errors.install(worker.cfg)
    worker.read_timeout = _read_timeout
