from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from ads_sync import services
from ads_sync.models import AdsAccount, SyncDay
from tests.files import file_size_limit
from tests.processes import manage

from .factories import campaign_day
from .helpers import csv_lines

pytestmark = pytest.mark.django_db

DAY = dt.date(2025, 1, 10)


@contextlib.contextmanager
def _full_disk() -> Iterator[TextIO]:
    """A stream whose every line fails to write, as to a full disk (/dev/full)."""
    full = open("/dev/full", "w", buffering=1)  # noqa: SIM115 (closed below, whatever happens)
    try:
        yield full
    finally:
        with contextlib.suppress(OSError):  # closing flushes what is left: that fails too
            full.close()


def test_export_by_day_writes_one_line_per_account_and_date(tmp_path: Path) -> None:
    services.day_rows_replace(
        customer_id="1111111111",
        day=DAY,
        rows=[campaign_day(campaign_id=1, clicks=2), campaign_day(campaign_id=2, clicks=5)],
        currency_code="EUR",
    )
    out = tmp_path / "by_day.csv"
    call_command("export_ads_csv", "--by", "day", "--out", str(out), stdout=io.StringIO())
    lines = csv_lines(out)
    assert [(x["customer_id"], x["date"], x["clicks"]) for x in lines] == [
        ("1111111111", "2025-01-10", "7")
    ]


def test_an_export_by_day_leaves_out_quiet_days_outside_its_range(tmp_path: Path) -> None:
    AdsAccount.objects.create(customer_id="1111111111", time_zone="UTC", currency_code="EUR")
    for day in (DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)):
        SyncDay.objects.create(
            customer_id="1111111111", date=day, state="done", fetched_at=timezone.now()
        )
    out = tmp_path / "by_day.csv"
    assert services.combined_csv_write(out=out, start=DAY, end=DAY, by="day") == 1
    lines = csv_lines(out)
    assert [(x["date"], x["clicks"]) for x in lines] == [("2025-01-10", "0")]


def test_an_export_by_campaign_is_ordered_by_account_then_date_then_campaign(
    tmp_path: Path,
) -> None:
    """Stored in the opposite order, so that only the export's own order can sort them."""
    for customer_id in ("2222222222", "1111111111"):
        for day in (DAY + dt.timedelta(days=1), DAY):
            services.day_rows_replace(
                customer_id=customer_id,
                day=day,
                rows=[campaign_day(day=day, campaign_id=n) for n in (2, 1)],
                currency_code="EUR",
            )
    out = tmp_path / "all.csv"
    assert services.combined_csv_write(out=out, start=None, end=None) == 8
    lines = [(x["customer_id"], x["date"], x["campaign_id"]) for x in csv_lines(out)]
    assert lines == [
        (customer_id, str(day), campaign_id)
        for customer_id in ("1111111111", "2222222222")
        for day in (DAY, DAY + dt.timedelta(days=1))
        for campaign_id in ("1", "2")
    ]


def test_export_refuses_a_reversed_range(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="after --end"):
        call_command("export_ads_csv", "--start", "2025-02-02", "--end", "2025-02-01")


def test_export_to_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=f"cannot write {tmp_path}"):
        call_command("export_ads_csv", "--out", str(tmp_path), stdout=io.StringIO())


def test_an_export_over_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    """A file only its owner could read was replaced by one that everyone can (0644)."""
    services.day_rows_replace(
        customer_id="1111111111", day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    out = tmp_path / "private.csv"
    out.write_text("")
    out.chmod(0o600)
    call_command("export_ads_csv", "--out", str(out), stdout=io.StringIO())
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_text().startswith("customer_id,")


def test_export_to_a_dash_writes_the_csv_alone_to_standard_output(tmp_path: Path) -> None:
    services.day_rows_replace(
        customer_id="1111111111", day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    out, err = io.StringIO(), io.StringIO()
    call_command("export_ads_csv", "--out", "-", stdout=out, stderr=err)
    lines = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(x["customer_id"], x["campaign_id"]) for x in lines] == [("1111111111", "1")]
    assert "wrote 1 line(s) to standard output" in err.getvalue()
    assert not Path("-").exists()


def test_export_into_a_folder_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(CommandError, match=f"no folder {missing}"):
        call_command("export_ads_csv", "--out", str(missing / "x.csv"), stdout=io.StringIO())
    assert not missing.exists()


@pytest.mark.django_db(transaction=True)
def test_export_to_a_pipe_closed_early_stops_quietly() -> None:
    """`export_ads_csv --out - | head` ended in two BrokenPipeError tracebacks."""
    services.day_rows_replace(
        customer_id="1111111111",
        day=DAY,
        rows=[campaign_day(campaign_id=n) for n in range(1, 3001)],  # more than a pipe holds
        currency_code="EUR",
    )
    reader = manage("export_ads_csv", "--out", "-", text=False)  # on the rows above
    assert reader.stdout is not None
    assert reader.stderr is not None
    assert reader.stdout.readline().startswith(b"customer_id,")
    reader.stdout.close()  # as `head -1` does
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 1
    assert "Traceback" not in stderr, stderr


def test_export_to_a_full_disk_is_a_clear_error() -> None:
    services.day_rows_replace(
        customer_id="1111111111", day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    with _full_disk() as full, pytest.raises(CommandError, match="cannot write to standard output"):
        call_command("export_ads_csv", "--out", "-", stdout=full, stderr=io.StringIO())


@pytest.mark.parametrize("by", ["campaign", "day"])
def test_an_export_whose_write_fails_leaves_no_cursor_open(by: str) -> None:
    """The rows' server-side cursor was left to the garbage collector, which closed it whenever
    it ran: once while the same thread held the connection's lock (psycopg's Lock is not
    re-entrant), and the process hung for good (CI, in the test after this one's twin)."""
    services.day_rows_replace(
        customer_id="1111111111", day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    with _full_disk() as full, pytest.raises(CommandError) as failed:
        call_command("export_ads_csv", "--by", by, "--out", "-", stdout=full, stderr=io.StringIO())
    # `failed` holds the traceback, and with it every frame of the export, as pytest does.
    assert failed.value.__cause__ is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_cursors")
        assert cursor.fetchall() == []


def test_export_to_a_named_pipe_writes_into_it_and_leaves_it_a_pipe(tmp_path: Path) -> None:
    """A temporary file renamed over it replaced it: the reader got nothing (as root, a device
    such as /dev/full was replaced the same way)."""
    services.day_rows_replace(
        customer_id="1111111111", day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    try:
        call_command("export_ads_csv", "--out", str(fifo), stdout=io.StringIO())
    finally:
        if reader.is_alive():  # the command never opened it: let the reader go
            # Without blocking: a reader that finished after the check leaves no one to open
            # against, and a blocking open waited for one for ever (ENXIO now, suppressed).
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    lines = list(csv.DictReader(io.StringIO(received[0].decode())))
    assert [(x["customer_id"], x["campaign_id"]) for x in lines] == [("1111111111", "1")]


def test_export_to_a_link_writes_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    services.day_rows_replace(
        customer_id="1111111111", day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    target = tmp_path / "exports" / "latest.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    call_command("export_ads_csv", "--out", str(link), stdout=io.StringIO())
    assert link.is_symlink()
    assert target.read_text().startswith("customer_id,")


def test_export_into_a_folder_that_cannot_be_written_is_a_clear_error() -> None:
    """/sys refuses new files, even to root (who may write a folder whatever its mode)."""
    services.day_rows_replace(
        customer_id="1111111111", day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    out = Path("/sys/ads_export.csv")
    with pytest.raises(CommandError, match=f"cannot write {out}: ") as refused:
        call_command("export_ads_csv", "--out", str(out), stdout=io.StringIO())
    assert isinstance(refused.value.__cause__, OSError)
    assert not out.exists()


def test_an_export_that_fails_halfway_leaves_the_file_it_was_to_replace_whole(
    tmp_path: Path,
) -> None:
    """A write that fails on the way (a full disk) must leave the last good export as it was,
    and nothing of the new one beside it."""
    services.day_rows_replace(
        customer_id="1111111111",
        day=DAY,
        rows=[campaign_day(campaign_id=n) for n in range(1, 201)],  # some 15 KB of lines
        currency_code="EUR",
    )
    out = tmp_path / "ads_export.csv"
    out.write_text("customer_id,date\n1111111111,2025-01-09\n")  # the last good export
    good = out.read_bytes()

    with file_size_limit(4096), pytest.raises(CommandError, match=f"cannot write {out}: "):
        call_command("export_ads_csv", "--out", str(out), stdout=io.StringIO())

    assert out.read_bytes() == good
    assert list(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize("length", [255, 240])
def test_an_export_to_a_file_named_near_the_longest_name_is_written(
    tmp_path: Path, length: int
) -> None:
    """Its temporary file's name, 18 bytes longer, was too long: "File name too long" for a
    name the folder takes."""
    services.day_rows_replace(
        customer_id="1111111111", day=DAY, rows=[campaign_day(campaign_id=1)], currency_code="EUR"
    )
    out = tmp_path / ("é" * ((length - 4) // 2) + "x" * ((length - 4) % 2) + ".csv")
    assert len(os.fsencode(out.name)) == length
    call_command("export_ads_csv", "--out", str(out), stdout=io.StringIO())
    assert out.read_text().startswith("customer_id,")
    assert list(tmp_path.iterdir()) == [out]
