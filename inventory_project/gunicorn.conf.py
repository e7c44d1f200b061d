"""gunicorn settings, read from the environment so the Procfile, Docker and the benchmark agree."""

import multiprocessing
import os
from typing import Any

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Open connections one worker takes at most (gunicorn's default: 1000). A worker that has its
# share stops accepting, so the others get the rest: without a cap, a burst of new keep-alive
# connections can all land on the one worker that was awake, and wait on its GIL while the
# other workers idle. gthread keeps at most this minus `threads` connections alive.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
# gunicorn's default line, with how long the request took (milliseconds) at its end.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# The control socket (gunicorn 25.1+) is not used here, and its default path
# ($XDG_RUNTIME_DIR or $HOME/.gunicorn) is shared by every server of a user (make run, the
# tests' and the benchmark's), and not writable in the image. Older releases ignore this.
control_socket_disable = True


def post_worker_init(worker: Any) -> None:
    """Bound what a request's SQL may wait for (the settings' WEB_DB_*), and answer the
    requests gunicorn itself refuses in the API's JSON error shape."""
    from inventory_project import server_errors
    from inventory_project.postgresql import base

    base.serve_web_requests()
    server_errors.install(worker.cfg)
