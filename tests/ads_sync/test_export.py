from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ads_sync import services

from .factories import campaign_day

pytestmark = pytest.mark.django_db

DAY = dt.date(2025, 1, 10)


def test_export_by_day_writes_one_line_per_account_and_date(tmp_path: Path) -> None:
    services.day_rows_replace(
        customer_id="1111111111",
        day=DAY,
        rows=[campaign_day(campaign_id=1, clicks=2), campaign_day(campaign_id=2, clicks=5)],
        currency_code="EUR",
    )
    out = tmp_path / "by_day.csv"
    call_command("export_ads_csv", "--by", "day", "--out", str(out), stdout=io.StringIO())
    with out.open(newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [(x["customer_id"], x["date"], x["clicks"]) for x in lines] == [
        ("1111111111", "2025-01-10", "7")
    ]


def test_export_refuses_a_reversed_range(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="after --end"):
        call_command("export_ads_csv", "--start", "2025-02-02", "--end", "2025-02-01")


def test_export_to_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=f"cannot write {tmp_path}"):
        call_command("export_ads_csv", "--out", str(tmp_path), stdout=io.StringIO())


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
