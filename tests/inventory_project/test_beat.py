"""Celery beat's scheduler (inventory_project/beat.py): a due send outlasts a broker restart."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from kombu import Connection
from kombu.exceptions import OperationalError as KombuOperationalError

from inventory_project import beat, tasks
from inventory_project.celery import app as celery_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry() -> beat.PersistentEntry:
    schedule = CrontabSchedule.objects.create(minute="0", hour="3")
    model = PeriodicTask.objects.create(
        name="t", task=tasks.clear_expired_sessions.name, crontab=schedule
    )
    return beat.PersistentEntry(model, app=celery_app)


def test_every_entry_and_its_next_one_retry_the_send_for_minutes(
    entry: beat.PersistentEntry,
) -> None:
    for each in (entry, next(entry)):  # and after a run
        policy = dict(each.options["retry_policy"])
        assert policy.pop("errback") == beat.SendRetried("t")  # the name, for its log lines
        assert (each.options["retry"], policy) == (True, beat.PUBLISH_RETRY_POLICY)
    assert celery_app.conf.beat_scheduler == "inventory_project.beat:Scheduler"


@contextlib.contextmanager
def broker_back_after(delay_s: float) -> Iterator[str]:
    """A broker URL whose port refuses connections for `delay_s`, then forwards to the broker."""
    real = Connection(celery_app.conf.broker_url)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        time.sleep(delay_s)
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection((real.hostname, real.port or 5672))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    userid, password = real.userid or "guest", real.password or "guest"
    try:
        yield f"amqp://{userid}:{password}@127.0.0.1:{port}/{real.virtual_host or ''}"
    finally:
        stop.set()
        thread.join(5)


def _queued(queue: str) -> int:
    with Connection(celery_app.conf.broker_url) as conn:
        channel = conn.default_channel
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        finally:
            with contextlib.suppress(Exception):
                conn.default_channel.queue_delete(queue)


def test_a_due_task_sent_while_the_broker_restarts_reaches_it(
    entry: beat.PersistentEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """Beat marks an entry run before sending it; with Celery's default retries (about 0.6 s)
    a broker away at the due minute lost that day's detection. The retries are logged: until
    the last one failed, nothing said that beat stood still."""
    options = entry.options
    queue = f"beat-test-{uuid.uuid4()}"

    with (
        broker_back_after(2.0) as url,
        Connection(url) as conn,
        pytest.raises(KombuOperationalError),
    ):
        tasks.clear_expired_sessions.apply_async(connection=conn, queue=queue)  # Celery's default
    caplog.clear()
    with broker_back_after(2.0) as url, Connection(url) as conn:
        tasks.clear_expired_sessions.apply_async(
            connection=conn, queue=queue, **{k: v for k, v in options.items() if k != "headers"}
        )
    assert _queued(queue) == 1
    retried = [r.getMessage() for r in caplog.records if r.name == "inventory_project.beat"]
    assert len(retried) == 1  # once a minute
    assert retried[0].startswith("sending 't': the broker is out of reach (")


def test_an_entry_after_its_run_is_equal_to_the_one_before(entry: beat.PersistentEntry) -> None:
    """Beat rebuilds its schedule's heap when an entry compares unequal to the one it had."""
    assert next(entry).editable_fields_equal(entry)
