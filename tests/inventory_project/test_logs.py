"""Lines an outage would repeat at every request are written once a minute."""

from __future__ import annotations

import logging

from inventory_project import logs


def test_a_line_is_written_once_an_interval_saying_how_many_were_left_out(
    caplog, monkeypatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    every = logs.Every(interval_s=60)
    logger = logging.getLogger("tests.logs")

    with caplog.at_level(logging.WARNING, logger="tests.logs"):
        for _ in range(3):
            every.warning(logger, "Redis down: %s", "refused")
        now[0] += 59
        every.warning(logger, "Redis down: %s", "refused")
        now[0] += 1
        every.error(logger, "Redis down: %s", "refused")

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "Redis down: refused"),
        (logging.ERROR, "Redis down: refused (and 3 time(s) since the last such line)"),
    ]
