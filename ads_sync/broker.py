"""What the broker and the workers say about the sync's tasks: which workers consume a queue,
and whether a run's sync_day tasks are anywhere at all (queued, or held by a worker).

Used by `backfill_ads` while it waits, and by the `resend_lost` task for runs nobody waits on.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from inventory_project.celery import app as celery_app

SYNC_DAY_TASK = "ads_sync.sync_day"


def workers_consuming(queue: str, timeout_s: float = 1.5) -> list[str]:
    """Names of the running Celery workers that consume `queue` (empty: nobody will run it)."""
    try:
        replies = celery_app.control.inspect(timeout=timeout_s).active_queues() or {}
    except Exception:  # the broker itself is down: no worker can be reached either
        return []
    return sorted(
        name for name, queues in replies.items() if any(q.get("name") == queue for q in queues)
    )


def queue_counts(queue: str) -> tuple[int, int] | None:
    """(messages ready, consumers) of `queue` as the AMQP broker counts them: one passive
    declare, answered in milliseconds. (0, 0) for a queue that does not exist; None on another
    transport, which keeps no such counts. Raises when the broker cannot be reached."""
    with celery_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1)
        if conn.transport.driver_type != "amqp":
            return None
        try:
            channel: Any = conn.default_channel  # py-amqp's Channel
            ok = channel.queue_declare(queue=queue, passive=True)
        except conn.channel_errors:  # no such queue: no worker ever declared it
            return 0, 0
        return int(ok.message_count), int(ok.consumer_count)


def consumed(queue: str) -> bool | None:
    """Whether a worker consumes `queue`; None when the broker cannot be reached (a worker may
    well be running, waiting for it to come back)."""
    try:
        counts = queue_counts(queue)
    except Exception:
        return None
    if counts is not None:
        return counts[1] > 0
    return bool(workers_consuming(queue))


def queue_has_consumers(queue: str) -> bool:
    """Whether any worker consumes `queue` (no, with the broker down: no worker can be reached
    either), without waiting out a broadcast where the broker counts consumers (AMQP:
    `inspect()` always waits its whole reply timeout); other transports' workers are asked."""
    return consumed(queue) is True


def tasks_lost(queue: str, run_ids: Collection[int]) -> bool:
    """Whether no sync_day task of these runs is left anywhere: none waits in `queue` (it is
    empty) and none is held by a worker consuming it (running, reserved, or waiting for a
    retry). Then their unsettled days' messages were lost: a purged queue, or a broker that
    restarted without its data.

    False whenever it cannot be sure: a message in the queue (it may be one of theirs), a worker
    that does not answer, a transport that does not count messages.
    """
    try:
        counts = queue_counts(queue)
    except Exception:
        return False
    if counts is None or counts[0] or not counts[1]:
        return False
    # Not stopping at the first `consumers` replies: every worker on the broker's vhost answers
    # (other queues', other projects'), and ours might not be among the first.
    names = workers_consuming(queue)
    if len(names) < counts[1]:
        return False
    inspector = celery_app.control.inspect(destination=names, timeout=1.5, limit=len(names))
    for ask in (inspector.active, inspector.reserved, inspector.scheduled):
        try:
            replies: dict[str, list[Any]] = ask() or {}  # TypedDicts, of two shapes
        except Exception:
            return False
        if set(replies) != set(names):
            return False
        for held in replies.values():
            for entry in held:
                request = entry.get("request", entry)  # scheduled() wraps the request
                if request.get("name") == SYNC_DAY_TASK and _run_of(request) in run_ids:
                    return False
    return True


def _run_of(request: dict[str, Any]) -> object:
    """The run id of a sync_day request as a worker reports it (args, or kwargs)."""
    args: list[object] = list(request.get("args") or ())
    kwargs: dict[str, object] = request.get("kwargs") or {}
    return kwargs.get("run_id", args[2] if len(args) > 2 else None)
