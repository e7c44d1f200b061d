"""What the broker and the workers say about the sync's tasks (ads_sync/broker.py), against the
real RabbitMQ: tasks_lost answers True only when it can be sure, and False whenever it cannot."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery.app.control import Inspect
from celery.worker.control import Panel
from kombu import Consumer
from kombu import Queue as KombuQueue

from ads_sync import broker, tasks
from inventory_project.celery import app as celery_app
from tests.processes import closed_port

from .helpers import sync_worker  # noqa: F401 (a fixture)

# No run has this id: a check of it finds none of its tasks anywhere.
NO_SUCH_RUN = -1

_holding = threading.Semaphore(0)  # released by each hold task as it starts
_release = threading.Event()


@celery_app.task(name="tests.ads_sync.test_broker.hold")
def hold() -> None:
    """A task that keeps its worker thread until the test lets it go (bounded: a test that
    fails before then must not keep the worker's shutdown waiting)."""
    _holding.release()
    _release.wait(60)


def test_a_broker_that_cannot_be_reached_is_never_taken_for_lost_tasks(monkeypatch) -> None:
    """Lost would send every unsettled day of the run again; unreachable says nothing of them."""
    monkeypatch.setattr(
        celery_app.conf, "broker_url", f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    )
    queue = celery_app.conf.task_default_queue

    assert broker.tasks_lost(queue, [NO_SUCH_RUN]) is False
    assert broker.consumed(queue) is None  # not "no worker": one may wait for the broker
    assert broker.queue_has_consumers(queue) is False


def test_a_queue_that_does_not_exist_counts_nothing_and_loses_nothing() -> None:
    queue = f"inventory-tests-missing-{uuid.uuid4()}"  # never declared: nobody consumes it

    assert broker.queue_counts(queue) == (0, 0)
    assert broker.consumed(queue) is False
    assert broker.tasks_lost(queue, [NO_SUCH_RUN]) is False


def test_a_transport_that_keeps_no_counts_never_has_the_tasks_lost(monkeypatch) -> None:
    """Redis or another broker of kombu's that counts no messages: nothing tells that the
    queue is empty, so nothing is sent again."""
    monkeypatch.setattr(celery_app.conf, "broker_url", "memory://")
    queue = celery_app.conf.task_default_queue

    assert broker.queue_counts(queue) is None
    assert broker.tasks_lost(queue, [NO_SUCH_RUN]) is False


@pytest.fixture
def unconsumed_queue() -> Iterator[str]:
    """An empty queue of the tests' own that no worker consumes."""
    name = f"{celery_app.conf.task_default_queue}-unconsumed-{uuid.uuid4().hex[:8]}"
    with celery_app.connection_for_write() as conn:
        queue = KombuQueue(name, channel=conn.default_channel)
        queue.declare()
        try:
            yield name
        finally:
            queue.delete()


def test_an_empty_queue_nobody_consumes_leaves_the_tasks_not_lost(
    monkeypatch, unconsumed_queue: str
) -> None:
    """A worker in its warm shutdown has stopped consuming and still runs its tasks: with no
    consumer, even no worker answering says nothing of them."""
    for command in ("active_queues", "active", "reserved", "scheduled"):
        monkeypatch.setattr(Inspect, command, lambda self: None)  # nobody answers

    assert broker.queue_counts(unconsumed_queue) == (0, 0)
    assert broker.tasks_lost(unconsumed_queue, [NO_SUCH_RUN]) is False


def _answering_workers(queue: str, tries: int = 10) -> int:
    """How many workers answer that they consume `queue`: asked again while none does, since
    one broadcast waits 1.5 s for the replies, which a loaded machine's worker may miss."""
    for _ in range(tries):
        if names := broker.workers_consuming(queue):
            return len(names)
    return 0


@pytest.fixture
def a_consumer_that_is_no_worker() -> Iterator[None]:
    """Another consumer of the test queue beside the module's worker, which does not answer the
    workers' inspect broadcast: a worker of another app, or one too busy to answer in time."""
    queue = celery_app.conf.task_default_queue
    with celery_app.connection_for_write() as conn:
        bound = celery_app.amqp.queues[queue](conn.default_channel)
        with Consumer(conn.default_channel, queues=[bound], accept=["json"]):
            yield


@pytest.mark.usefixtures("sync_worker", "a_consumer_that_is_no_worker")
def test_a_consumer_of_the_queue_that_does_not_answer_leaves_the_tasks_not_lost() -> None:
    """It may hold the tasks: only when every consumer answered are they known to be nowhere."""
    queue = celery_app.conf.task_default_queue
    assert broker.queue_counts(queue) == (0, 2)
    assert _answering_workers(queue) == 1

    assert broker.tasks_lost(queue, [NO_SUCH_RUN]) is False


@pytest.fixture
def busy_worker(sync_worker) -> Iterator[None]:  # noqa: F811 (the fixture imported above)
    """The module's worker with both its threads held by a task, and a third task waiting in
    the queue: the worker takes no more than it can run (prefetch multiplier 1)."""
    _release.clear()
    for _ in range(3):
        hold.delay()
    try:
        for _ in range(2):
            assert _holding.acquire(timeout=30), "the worker did not start the tasks"
        yield
    finally:
        _release.set()


@pytest.mark.usefixtures("busy_worker")
def test_a_message_waiting_in_the_queue_leaves_the_tasks_not_lost() -> None:
    """The waiting message may be one of the run's: no worker can say what it holds."""
    queue = celery_app.conf.task_default_queue
    deadline = time.monotonic() + 10  # the third message reaches the queue after the others
    while broker.queue_counts(queue) != (1, 1):
        assert time.monotonic() < deadline, broker.queue_counts(queue)
        time.sleep(0.05)

    assert broker.tasks_lost(queue, [NO_SUCH_RUN]) is False


@pytest.mark.parametrize("by_name", [False, True], ids=["args", "kwargs"])
def test_a_task_of_another_run_a_worker_holds_leaves_this_run_lost(
    sync_worker: Any,  # noqa: F811 (the fixture)
    by_name: bool,
) -> None:
    """A worker busy with other runs' days kept a run whose tasks were lost from being sent
    again for as long as it was busy. The run is read from a task sent by hand with keyword
    arguments (`celery call --kwargs`) as well as from the fan-out's positional ones."""
    queue = celery_app.conf.task_default_queue
    # Each case its own run: a revoked task stays with the module's worker until its countdown.
    other_run = NO_SUCH_RUN - 1 - by_name
    args = ("1234567890", "2000-01-01", other_run)
    if by_name:
        named = dict(zip(("customer_id", "date_iso", "run_id"), args, strict=True))
        held = tasks.sync_day.apply_async(kwargs=named, countdown=60)
    else:
        held = tasks.sync_day.apply_async(args, countdown=60)
    try:
        deadline = time.monotonic() + 10  # the worker takes it from the queue, to hold it
        while broker.queue_counts(queue) != (0, 1):
            assert time.monotonic() < deadline, broker.queue_counts(queue)
            time.sleep(0.05)
        # Asked again while a loaded machine's worker misses a broadcast (then: not lost).
        assert any(broker.tasks_lost(queue, [NO_SUCH_RUN]) for _ in range(5))
        assert not broker.tasks_lost(queue, [other_run])
    finally:
        # To this worker only, and once it has answered: a broadcast also reached the workers of
        # the suite's other processes, which logged, between pytest's dots, that there is no
        # result backend to mark the task in.
        celery_app.control.revoke(held.id, destination=[sync_worker.hostname], reply=True)


@pytest.fixture
def a_worker_of_another_queue() -> Iterator[str]:
    """A worker of another queue on the broker's vhost (another project's, say), answering the
    workers' broadcasts at once: its replies come before those of a worker that takes its time."""
    name = f"other-{uuid.uuid4().hex[:8]}@tests"
    handlers = {
        "active_queues": lambda state, **kwargs: [{"name": f"{name}-queue"}],
        "active": lambda state, **kwargs: [],
        "reserved": lambda state, **kwargs: [],
        "scheduled": lambda state, **kwargs: [],
    }
    stop = threading.Event()
    with celery_app.connection_for_write() as conn:
        node = celery_app.control.mailbox.Node(name, handlers=handlers, channel=conn.channel())
        node.listen()

        def answer() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):  # nothing came: look at the flag
                    conn.drain_events(timeout=0.1)

        answering = threading.Thread(target=answer, daemon=True)
        answering.start()
        try:
            yield name
        finally:
            stop.set()
            answering.join(timeout=5)


@pytest.mark.usefixtures("sync_worker", "a_worker_of_another_queue")
def test_a_quicker_worker_of_another_queue_does_not_keep_the_tasks_from_being_lost(
    monkeypatch,
) -> None:
    """The workers holding the queue are asked by name: a broadcast that stopped at as many
    replies as they are would take the other worker's for theirs, and never find the tasks
    lost."""
    answer = Panel.data["active"]

    def slowly(state: Any, **kwargs: Any) -> Any:  # the module's worker, busy for a moment
        time.sleep(0.5)
        return answer(state, **kwargs)

    monkeypatch.setitem(Panel.data, "active", slowly)
    queue = celery_app.conf.task_default_queue
    assert _answering_workers(queue) == 1

    # Asked again while a loaded machine's worker misses a broadcast (then: not lost).
    assert any(broker.tasks_lost(queue, [NO_SUCH_RUN]) for _ in range(5))


def _lost_once_asked(monkeypatch, command: str, answer: object) -> bool:
    """tasks_lost of a run with no task anywhere, once it has reached the workers' `command`
    ask, which then gives `answer` (an exception is raised): asked again while a loaded
    machine's worker missed the `active_queues` broadcast and the check stopped before it."""
    reached: list[str] = []

    def ask(self: Inspect) -> object:
        reached.append(command)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(Inspect, command, ask)
    queue = celery_app.conf.task_default_queue
    for _ in range(10):
        lost = broker.tasks_lost(queue, [NO_SUCH_RUN])
        if reached:
            return lost
    raise AssertionError(f"tasks_lost never asked the workers' {command}")


@pytest.mark.usefixtures("sync_worker")
def test_a_workers_ask_that_raises_leaves_the_tasks_not_lost(monkeypatch) -> None:
    """The broker connection dropped mid-check: what the workers hold is not known."""
    assert _lost_once_asked(monkeypatch, "active", ConnectionResetError("reset")) is False


@pytest.mark.usefixtures("sync_worker")
def test_a_worker_that_named_its_queue_and_then_does_not_answer_leaves_the_tasks_not_lost(
    monkeypatch,
) -> None:
    """It answered `active_queues`, then not `active` (it stopped, or was too busy): it may
    hold the run's tasks. Celery gives None for a broadcast nobody answered."""
    assert _lost_once_asked(monkeypatch, "active", None) is False
