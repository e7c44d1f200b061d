from __future__ import annotations

import signal
import subprocess
from io import StringIO
from itertools import islice, pairwise

import psycopg
import pytest
from django.core.management import CommandError, call_command

from products.management.commands import listen_product_changes
from products.management.commands.listen_product_changes import reconnect_delays
from tests.clocks import FakeClock
from tests.database import database_url
from tests.processes import closed_port, listener, logged_line


@pytest.mark.parametrize("option", ["--reconnect-delay", "--reconnect-delay-max"])
@pytest.mark.parametrize("delay", ["-1", "nan", "inf", "soon"])
def test_the_listeners_reconnect_delays_are_checked_when_it_starts(option: str, delay: str) -> None:
    """-1 or nan were taken, and ended the listener at its first reconnect."""
    parser = listen_product_changes.Command().create_parser("manage.py", "listen_product_changes")
    with pytest.raises(CommandError, match="not a number of seconds >= 0"):
        parser.parse_args([option, delay])  # parsed only: a listener never starts
    assert vars(parser.parse_args([option, "0.5"]))[option[2:].replace("-", "_")] == 0.5


def test_reconnects_double_their_wait_up_to_the_most() -> None:
    assert list(islice(reconnect_delays(1, 10), 6)) == [1, 2, 4, 8, 10, 10]
    assert list(islice(reconnect_delays(20, 10), 2)) == [10, 10]


def _retries(process: subprocess.Popen[str], count: int) -> list[str]:
    """The waits of the next `count` reconnect warnings on the listener's stderr."""
    lines = [
        logged_line(process, "PostgreSQL connection failed, retrying in") for _ in range(count)
    ]
    return [line.split("retrying in ")[1].split(" s:")[0] for line in lines]


def test_a_server_that_stays_down_is_asked_less_and_less_often() -> None:
    """It was asked every second, with a warning each time, for as long as it was down."""
    unreachable = f"postgres://postgres@127.0.0.1:{closed_port()}/inventory"
    args = ("--reconnect-delay", "0.05", "--reconnect-delay-max", "0.2")
    with listener(*args, DATABASE_URL=unreachable) as process:
        assert _retries(process, 4) == ["0.05", "0.1", "0.2", "0.2"]


def test_sigterm_during_a_wait_ends_the_listener_at_once() -> None:
    """time.sleep resumes after the signal handler: SIGTERM waited out the whole delay."""
    unreachable = f"postgres://postgres@127.0.0.1:{closed_port()}/inventory"
    with listener("--reconnect-delay", "600", DATABASE_URL=unreachable) as process:
        assert _retries(process, 1) == ["600"]  # longer than the default most: taken as asked
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


@pytest.mark.django_db
def test_a_new_outage_starts_again_from_the_first_wait() -> None:
    args = ("--reconnect-delay", "0.05", "--reconnect-delay-max", "5")
    with (
        listener(*args) as process,
        psycopg.connect(database_url(), autocommit=True) as admin,
    ):
        assert process.stdout is not None
        for _ in range(3):
            assert "listening" in process.stdout.readline()
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = 'LISTEN product_changes'"
            )
            # Reconnected at once each time: the waits of the outage before are forgotten.
            assert _retries(process, 1) == ["0.05"]


@pytest.mark.django_db
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_listening_ends_the_listener_cleanly(signum: int) -> None:
    """`make run`'s Ctrl-C and a deploy's SIGTERM reach it while it waits for notifications."""
    with listener() as process:
        assert process.stdout is not None
        assert "listening" in process.stdout.readline()
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0


def test_each_reconnect_comes_after_its_whole_wait(monkeypatch) -> None:
    """A listener that did not wait retried a server that stays down as fast as it refused, and
    one that did not sleep spun a core for the whole wait."""
    waits, naps = _reconnects(monkeypatch, 4, reconnect_delay=0.05, reconnect_delay_max=0.2)
    assert waits == pytest.approx([0.05, 0.1, 0.2], abs=0.01)
    assert sum(naps) == pytest.approx(0.35, abs=0.01)
    assert max(naps) <= 0.1  # short enough to stop soon after a signal


def test_by_default_reconnects_wait_1_s_then_twice_as_long_up_to_10_s(monkeypatch) -> None:
    """The waits the README gives for the Procfile's listener, which sets neither option."""
    waits, _ = _reconnects(monkeypatch, 7)
    assert waits == pytest.approx([1, 2, 4, 8, 10, 10], abs=0.01)


def test_a_longest_wait_of_0_is_taken_as_asked_not_as_the_default(monkeypatch) -> None:
    waits, _ = _reconnects(monkeypatch, 3, reconnect_delay=0.05, reconnect_delay_max=0)
    assert waits == pytest.approx([0, 0], abs=0.01)


def _reconnects(
    monkeypatch, attempts_count: int, **options: float
) -> tuple[list[float], list[float]]:
    """The waits between `attempts_count` connection attempts of a listener whose server stays
    down, and the naps it took, on a clock of the test's own (tests/clocks.py)."""
    clock = FakeClock()
    attempts: list[float] = []

    def refused(self: listen_product_changes.Command, params: dict[str, object]) -> None:
        attempts.append(clock.now)
        self._running = len(attempts) < attempts_count
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(listen_product_changes, "time", clock)
    monkeypatch.setattr(listen_product_changes.Command, "_listen", refused)
    monkeypatch.setattr(listen_product_changes.signal, "signal", lambda signum, handler: None)
    call_command("listen_product_changes", stdout=StringIO(), **options)
    return [later - earlier for earlier, later in pairwise(attempts)], clock.naps
