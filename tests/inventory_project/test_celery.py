"""The Celery app (inventory_project/celery.py): what it takes from the Django settings."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.processes import run, run_python

PASSWORDS = ("redis-s3cret-pw", "broker-s3cret-pw")
WITH_PASSWORDS = {
    "REDIS_URL": f"redis://:{PASSWORDS[0]}@127.0.0.1:6379/0",
    "CELERY_BROKER_URL": f"amqp://guest:{PASSWORDS[1]}@127.0.0.1:5672//",
}
# What a worker runs for `celery inspect conf` (any broker client may ask), and sends back.
CONF_REPLY = """
import django, json, sys, types
django.setup()
from celery.worker import control
from inventory_project.celery import app
state = types.SimpleNamespace(app=app)
for with_defaults in (False, True):
    print(json.dumps(control.conf(state, with_defaults=with_defaults)))
"""


def test_a_workers_configuration_reply_holds_no_password() -> None:
    """The app took every Django setting: a worker's reply to `inspect conf` held REDIS_URL and
    the cache's LOCATION with their password, and CELERY_BROKER_URL unmasked."""
    reply = run_python(CONF_REPLY, **WITH_PASSWORDS).stdout
    assert [password for password in PASSWORDS if password in reply] == []
    assert "REDIS_URL" not in reply
    assert '"task_default_queue"' in reply  # the Celery settings are in it


def test_celery_report_prints_no_password() -> None:
    celery = str(Path(sys.executable).parent / "celery")
    out = run(celery, "-A", "inventory_project", "report", **WITH_PASSWORDS).stdout
    assert [password for password in PASSWORDS if password in out] == []
    assert "task_default_queue" in out


# A worker's logging as `celery worker` sets it up, then a library's line with a credential.
WORKER_LOG = """
import django, logging
django.setup()
from google.api_core import client_logging
from inventory_project.celery import app
app.log.setup(loglevel="INFO")
client_logging.initialize_logging()  # as building a Google Ads client does
try:
    raise RuntimeError("token endpoint: client_secret=GOCSPX-configured-client-secret")
except RuntimeError:
    logging.getLogger("grpc._plugin_wrapping").exception("AuthMetadataPluginCallback failed")
logging.getLogger("google.ads.googleads.client").warning(
    "Request made: FaultMessage: %s", "refresh_token=1//0g-configured-refresh-token"
)
"""


def test_a_worker_writes_no_credential_in_its_log() -> None:
    """The worker puts handlers of its own in the place of the settings' one (LOGGING), whose
    filter takes the credentials out."""
    result = run_python(
        WORKER_LOG,
        GOOGLE_ADS_CLIENT_SECRET="GOCSPX-configured-client-secret",
        GOOGLE_ADS_REFRESH_TOKEN="1//0g-configured-refresh-token",
    )
    for secret in ("GOCSPX-configured-client-secret", "0g-configured-refresh-token"):
        assert secret not in result.stderr
    assert "AuthMetadataPluginCallback failed" in result.stderr
    assert "Request made: FaultMessage: refresh_token=[redacted]" in result.stderr
