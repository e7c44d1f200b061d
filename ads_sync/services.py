"""Writes for the Google Ads sync: plan a run, sync one (customer, date), write the CSV files."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import logging
import os
import re
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone

from ads_sync import locks, selectors
from ads_sync.integrations import google_ads
from ads_sync.models import FINAL_STATES, AdsAccount, CampaignDayMetric, SyncDay, SyncRun

logger = logging.getLogger(__name__)

DAY_CSV_HEADER = [
    "customer_id",
    "date",
    "campaign_id",
    "campaign_name",
    "impressions",
    "clicks",
    "cost",
    "cost_micros",
    "currency_code",
    "conversions",
]
TOTALS_CSV_HEADER = [
    "customer_id",
    "date",
    "impressions",
    "clicks",
    "cost",
    "cost_micros",
    "currency_code",
    "conversions",
]
MICROS = Decimal(1_000_000)


def micros_to_currency(micros: int) -> Decimal:
    """Exact decimal currency (micros are millionths of the account's currency unit)."""
    return (Decimal(micros) / MICROS).quantize(Decimal("0.000001"))


# --- CSV files ------------------------------------------------------------------------------


# A writer killed between its temporary file and the rename (SIGKILL, a power cut) leaves the
# file behind; a planning removes those this old, which no live writer can still be writing.
CSV_LEFTOVER_AFTER_S = 3600
_CSV_LEFTOVER = re.compile(r"\..+\.csv\.[^.]+\.tmp")
# The longest file name, in bytes, on Linux's file systems (NAME_MAX).
_NAME_MAX = 255


def _campaign_row(row: CampaignDayMetric) -> list[object]:
    """One metric row in DAY_CSV_HEADER's columns: money in currency, the micros kept."""
    return [
        row.customer_id,
        row.date.isoformat(),
        row.campaign_id,
        row.campaign_name,
        row.impressions,
        row.clicks,
        micros_to_currency(row.cost_micros),
        row.cost_micros,
        row.currency_code,
        row.conversions,
    ]


@contextlib.contextmanager
def _atomic_csv(path: Path) -> Iterator[Any]:
    """Write to a temporary file next to `path`, then os.replace it: readers never see half.

    A new file gets the mode open() would give it (0666 less the umask); a file replaced keeps
    its own, so an export over a file only its owner may read does not open it to others.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = _csv_temporary(path)
    try:
        # The file object owns the descriptor from here: closed whatever fails next (a chmod
        # refused by the mount left it open, one per day written, until the worker ran out).
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            with contextlib.suppress(FileNotFoundError):
                mode = os.stat(path).st_mode & 0o777
                if mode != os.fstat(fd).st_mode & 0o777:
                    os.fchmod(fd, mode)
            yield csv.writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _csv_temporary(path: Path) -> tuple[int, str]:
    """A new file beside `path` for `_atomic_csv` (a name _CSV_LEFTOVER matches), and its name.

    Not mkstemp's: it creates 0600 whatever the umask, which os.replace then gave the CSV.
    """
    # The temporary name is 18 bytes longer than the file's ("." and ".<12 hex>.tmp"): for a
    # file named near the longest name a folder takes, the start of its name is left out (the
    # end, .csv, is what _CSV_LEFTOVER looks for).
    base = os.fsdecode(os.fsencode(path.name)[-(_NAME_MAX - 18) :])
    while True:
        name = str(path.parent / f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), name
        except FileExistsError:  # another write's name (48 random bits: all but never)
            continue


def _csv_turn(path: Path) -> None:
    """Wait for the other writers of the file at `path`, and keep them waiting to the end of the
    current transaction: a PostgreSQL advisory lock on the path. Taken before the writer's query
    and held to its rename, it makes the file left the one built from the later read.

    A writer holds one file's turn and waits for no other lock while holding it, so turns never
    meet in two orders: a day file's writer holds nothing else; a totals file's writer may hold
    its run's row (`run_finish_if_settled`) or the planning lock (`run_plan`), taken before.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{__name__}:{path}"])


def day_csv_write(*, customer_id: str, day: dt.date, output_dir: str | Path) -> Path:
    """Write one day's CSV from the database rows (header only for a day without rows).

    Writers of one day file take turns, from their query to their rename (`_csv_turn`). A plan
    rewrites the files of done days after its planning lock is released, and a later plan may
    fetch one of those days meanwhile: the rewrite read the older rows, the fetch stored the
    newer ones and wrote its file, then the rewrite renamed its older file over it, and the
    file kept rows the database no longer held. The turn ends with this transaction: callers
    have none open, or a run of rewrites would hold each file's turn to its end.
    """
    path = selectors.day_csv_path(output_dir=output_dir, customer_id=customer_id, day=day)
    with transaction.atomic():
        _csv_turn(path)
        rows = CampaignDayMetric.objects.filter(customer_id=customer_id, date=day).order_by(
            "campaign_id"
        )
        with _atomic_csv(path) as writer:
            writer.writerow(DAY_CSV_HEADER)
            for row in rows:
                writer.writerow(_campaign_row(row))
    return path


def _dates(start: dt.date | None, end: dt.date | None) -> Q:
    """Rows dated from `start` to `end`, both included, either open when None."""
    dates = Q()
    if start:
        dates &= Q(date__gte=start)
    if end:
        dates &= Q(date__lte=end)
    return dates


def _daily_totals(*, start: dt.date | None = None, end: dt.date | None = None) -> QuerySet[Any]:
    """Per customer and date, ordered so: the sums of its campaign rows, and zeros for a day
    fetched with no campaign activity (its day file is header only), which is not a day never
    fetched (no line). One statement, so both parts see the same rows."""
    dates = _dates(start, end)
    sums = (
        CampaignDayMetric.objects.filter(dates)
        .values("customer_id", "date", "currency_code")
        .annotate(
            impressions_sum=Sum("impressions"),
            clicks_sum=Sum("clicks"),
            cost_micros_sum=Sum("cost_micros"),
            conversions_sum=Sum("conversions"),
        )
    )
    rows = CampaignDayMetric.objects.filter(
        customer_id=OuterRef("customer_id"), date=OuterRef("date")
    )
    currency = AdsAccount.objects.filter(pk=OuterRef("customer_id")).values("currency_code")
    # Fetched at least once (a day being fetched again, or whose re-fetch failed, keeps it).
    zeros = (
        SyncDay.objects.filter(dates, fetched_at__isnull=False)
        .exclude(Exists(rows))
        .values("customer_id", "date")
        .annotate(
            currency_code=Coalesce(Subquery(currency), Value("")),
            impressions_sum=Value(0),
            clicks_sum=Value(0),
            cost_micros_sum=Value(0),
            conversions_sum=Value(Decimal("0.000000")),
        )
    )
    return sums.union(zeros, all=True).order_by("customer_id", "date")


def totals_csv_write(*, output_dir: str | Path) -> Path:
    """Rebuild `<dir>/ads_daily_totals.csv`: one row per customer and date, from the database.

    Writers of one file take turns, from their query to their rename (`_csv_turn`), to the end
    of the transaction (the caller's, if one is open). Two runs finishing at once read the
    database in one order and could rename in the other, leaving the file built from the older
    read, without the other run's days, until the next run finished.
    """
    path = selectors.totals_csv_path(output_dir=output_dir)
    with transaction.atomic():
        _csv_turn(path)
        with _atomic_csv(path) as writer:
            combined_csv_lines(writer, start=None, end=None, by="day")
    return path


def _totals_line(total: dict[str, object]) -> list[object]:
    cost_micros = int(total["cost_micros_sum"] or 0)  # type: ignore[call-overload]
    return [
        total["customer_id"],
        total["date"].isoformat(),  # type: ignore[attr-defined]
        total["impressions_sum"],
        total["clicks_sum"],
        micros_to_currency(cost_micros),
        cost_micros,
        total["currency_code"],
        total["conversions_sum"],
    ]


def combined_csv_write(
    *, out: Path, start: dt.date | None, end: dt.date | None, by: str = "campaign"
) -> int:
    """Write a combined file from the database: one line per campaign-day or per day."""
    with _atomic_csv(out) as writer:
        return combined_csv_lines(writer, start=start, end=end, by=by)


def combined_csv_lines(
    writer: Any, *, start: dt.date | None, end: dt.date | None, by: str = "campaign"
) -> int:
    """Write the combined CSV's header and lines to a csv writer; the count of lines.

    The query runs before the header is written, so a database that fails (unreachable, not
    migrated) leaves a stream such as standard output empty rather than holding a header.

    A write that fails (a full disk, a reader gone) leaves the rows unread. Their server-side
    cursor is closed here, not left to the garbage collector: that closed it whenever it next
    ran, in whatever transaction was open then (aborting it: "cursor does not exist"), or in
    the middle of a psycopg call holding the connection's lock, which is not re-entrant, and
    the process hung for good.
    """
    line: Callable[[Any], list[object]]
    if by == "day":
        header, qs, line = TOTALS_CSV_HEADER, _daily_totals(start=start, end=end), _totals_line
    else:
        qs = CampaignDayMetric.objects.filter(_dates(start, end)).order_by(
            "customer_id", "date", "campaign_id"
        )
        header, line = DAY_CSV_HEADER, _campaign_row
    # QuerySet.iterator returns a generator: closing it drops the generator over the cursor,
    # whose `finally` closes the cursor (Django's cursor_iter).
    rows = cast("Generator[Any, None, None]", qs.iterator(chunk_size=5000))
    with contextlib.closing(rows):
        first = next(rows, None)
        writer.writerow(header)
        if first is None:
            return 0
        writer.writerow(line(first))
        count = 1
        for row in rows:
            writer.writerow(line(row))
            count += 1
    return count


# --- Rows -----------------------------------------------------------------------------------


def day_rows_replace(
    *, customer_id: str, day: dt.date, rows: list[google_ads.CampaignDay], currency_code: str
) -> int:
    """Make the database hold exactly `rows` for (customer, day): upsert on the natural key and
    delete the campaigns the API no longer returns, in one transaction; how many rows it holds.

    A row the answer holds twice is stored once: PostgreSQL refuses an upsert that names one
    row twice ("ON CONFLICT DO UPDATE command cannot affect row a second time"). Two different
    rows for one campaign raise PermanentAdsError naming it, and the day's rows are left as
    they were: which of the two is right is not known. So does a row of another date.
    """
    unique: dict[int, google_ads.CampaignDay] = {}
    for row in rows:
        if row.date != day:
            # The query asks for one date: stored under `day`, the row's figures would stand for
            # a day they are not (and the day's file with them).
            raise google_ads.PermanentAdsError(
                f"{customer_id} {day}: the answer held a row of {row.date} (campaign "
                f"{row.campaign_id}); the day's rows are left as they were"
            )
        seen = unique.setdefault(row.campaign_id, row)
        if seen != row:
            raise google_ads.PermanentAdsError(
                f"{customer_id} {day}: campaign {row.campaign_id} came twice in the answer with "
                f"different figures ({_figures(seen)}; then {_figures(row)}); the day's rows "
                "are left as they were"
            )
    rows = list(unique.values())
    now = timezone.now()
    objects = [
        CampaignDayMetric(
            customer_id=customer_id,
            date=day,
            campaign_id=row.campaign_id,
            campaign_name=row.campaign_name,
            impressions=row.impressions,
            clicks=row.clicks,
            cost_micros=row.cost_micros,
            conversions=Decimal(str(row.conversions)),
            currency_code=currency_code,
            fetched_at=now,
        )
        for row in rows
    ]
    with transaction.atomic():
        if objects:
            CampaignDayMetric.objects.bulk_create(
                objects,
                update_conflicts=True,
                unique_fields=["customer_id", "campaign_id", "date"],
                update_fields=[
                    "campaign_name",
                    "impressions",
                    "clicks",
                    "cost_micros",
                    "conversions",
                    "currency_code",
                    "fetched_at",
                ],
            )
        CampaignDayMetric.objects.filter(customer_id=customer_id, date=day).exclude(
            campaign_id__in=[row.campaign_id for row in rows]
        ).delete()
    return len(objects)


def _figures(row: google_ads.CampaignDay) -> str:
    return (
        f"{row.date} {row.campaign_name!r}: impressions {row.impressions}, clicks {row.clicks}, "
        f"cost_micros {row.cost_micros}, conversions {row.conversions}"
    )


# --- Accounts -------------------------------------------------------------------------------


def account_ensure(
    *, customer_id: str, counter: google_ads.CallCounter | None = None
) -> AdsAccount:
    """The account's time zone and currency, asked of the API only the first time; `counter`
    counts the calls that took."""
    account = AdsAccount.objects.filter(pk=customer_id).first()
    if account is not None:
        return account
    info = google_ads.get_account(customer_id, counter=counter)
    account, _ = AdsAccount.objects.update_or_create(
        customer_id=customer_id,
        defaults={"time_zone": info.time_zone, "currency_code": info.currency_code},
    )
    return account


# --- Runs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    run: SyncRun
    days: list[tuple[str, dt.date]]
    failed_accounts: tuple[str, ...] = ()
    # Done days whose CSV is gone or older than their fetch: rewritten after the fan-out.
    csv_missing: tuple[tuple[str, dt.date], ...] = ()
    # Each looked-up account's dates, cut at its own last complete day.
    windows: tuple[selectors.Window, ...] = ()


def run_plan(
    *,
    trigger: str,
    customer_ids: list[str] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    days: int | None = None,
    force: bool = False,
    output_dir: str | Path | None = None,
    lock_wait_s: float = 0.0,
) -> Plan | None:
    """Plan one run under the planning lock: select the missing days and put them in the ledger
    as pending for a new SyncRun. The done days whose CSVs are gone or older than the day's last
    fetch are returned (`Plan.csv_missing`) for `plan_csv_restore` to rewrite after the fan-out.

    Returns None when another planning holds the lock (its run is the one fan-out), or when the
    lock expired before the plan was stored (another planner may be planning these days).
    """
    # Once each: the ledger's upsert may not name one (customer, date) twice.
    customer_ids = list(dict.fromkeys(customer_ids or settings.GOOGLE_ADS_CUSTOMER_IDS))
    # Absolute: the workers that write there may run in another working directory.
    out = os.path.abspath(Path(output_dir or settings.ADS_SYNC_OUTPUT_DIR).expanduser())
    # Before any API call: with a folder that cannot be written, every day fetched would fail
    # at its CSV (OSError, for the caller: `backfill_ads` checks it first, with its message).
    csv_dir_ensure(output_dir=out)
    csv_leftovers_remove(output_dir=out)
    stored: SyncRun | None = None
    try:
        with locks.planning_lock(wait_s=lock_wait_s) as lock:
            if not lock:
                return None
            # The run's time counts its planning: account lookups, the gap query, the CSV checks.
            planning_started_at = timezone.now()
            lookups = google_ads.CallCounter()
            notes = []
            known = []
            for customer_id in customer_ids:
                try:
                    account_ensure(customer_id=customer_id, counter=lookups)
                except google_ads.AdsError as exc:
                    notes.append(f"{customer_id}: account lookup failed: {exc}")
                    logger.warning("ads sync: account %s skipped: %s", customer_id, exc)
                    continue
                finally:
                    # A new account's lookup may take the client's whole retry budget.
                    lock.renew()
                known.append(customer_id)
            windows = selectors.sync_windows(customer_ids=known, start=start, end=end, days=days)
            # The daily detection waits out a failing day's backoff; a backfill asked for by hand
            # (after fixing an account's access, say) tries every failed day at once.
            backoff = trigger == SyncRun.Trigger.BEAT and not force
            planned = selectors.missing_days(windows=windows, force=force, backoff=backoff)
            if backoff and (waiting := selectors.backed_off_days(windows=windows)):
                notes.append(
                    f"{waiting} failed day(s) wait out their backoff (SyncDay.retry_after); "
                    "`backfill_ads` tries them at once"
                )
                logger.warning("ads sync: %s failed day(s) left to their backoff", waiting)
            gone = selectors.done_days_needing_csv(
                windows=windows, output_dir=out, exclude=set(planned)
            )
            total_days = sum((w.end - w.start).days + 1 for w in windows if w.end >= w.start)
            if not lock.still_held():
                # It expired (a lookup outlasted it): another planner may be planning these days.
                # No run records this planning's account lookups: the log does.
                logger.warning(
                    "ads sync: the planning lock expired before the plan was stored "
                    "(%d API call(s) made for account lookups)",
                    lookups.calls,
                )
                return None
            now = timezone.now()
            with transaction.atomic():
                locks.hold_for_this_transaction()
                planned, taken_over = _take_over(planned=planned)
                run = SyncRun.objects.create(
                    trigger=trigger,
                    planning_started_at=planning_started_at,
                    range_start=min((w.start for w in windows), default=None),
                    range_end=max((w.end for w in windows), default=None),
                    customer_ids=customer_ids,
                    output_dir=out,
                    force=force,
                    planned=len(planned),
                    skipped=total_days - len(planned),
                    csv_rewritten=len(gone),
                    api_calls=lookups.calls,
                    notes="\n".join(notes),
                )
                SyncDay.objects.bulk_create(
                    [
                        SyncDay(customer_id=c, date=d, state=SyncDay.State.PENDING, run=run)
                        for c, d in planned
                    ],
                    update_conflicts=True,
                    unique_fields=["customer_id", "date"],
                    update_fields=["state", "run", "updated_at"],
                    batch_size=2000,
                )
                # bulk_create with update_conflicts does not refresh auto_now on the update branch.
                SyncDay.objects.filter(run=run).update(updated_at=now)
                # The runs this plan settles close in its transaction, so that a planner stopped
                # after the commit leaves none of them open; their totals files are written below.
                closed = [run_id for run_id in taken_over if _finish_claim(run_id=run_id)]
                if not planned and _finish_claim(run_id=run.pk):
                    closed.append(run.pk)
                # Last in the block: a signal handled as the commit returns (a time limit,
                # Ctrl-C) finds the plan marked stored. If the commit failed instead, failing
                # the days of a run that does not exist changes nothing.
                stored = run
        # The runs it took every last day from finished here: said as run_finish_if_settled
        # says it. This run, if it had nothing to fetch, once its files are rewritten
        # (plan_csv_restore).
        closed_runs = list(SyncRun.objects.filter(pk__in=closed).order_by("pk"))
        for other in closed_runs:
            if other.pk != run.pk:
                _finished_log(other)
        for folder in dict.fromkeys(closed_run.output_dir for closed_run in closed_runs):
            try:
                totals_csv_write(output_dir=folder)
            except OSError as exc:
                # An older run's folder may no longer be writable: its totals file waits for
                # the next run that finishes there, and this plan goes on. Said by the runs
                # that finished without it too: this one's backfill_ads exits 73 on it.
                logger.exception("ads sync: the totals file in %s could not be written", folder)
                SyncRun.objects.filter(pk__in=closed, output_dir=folder).update(
                    totals_error=str(exc)
                )
    except BaseException as exc:  # a detection's time limit, Ctrl-C in backfill_ads
        if stored is not None:
            # The plan is stored and no task is sent yet: fail its days, as a failed fan-out
            # does, so that the next planning takes them instead of waiting on them as in flight.
            try:
                reason = f"planning cut short: {type(exc).__name__}"
                run_fail_pending(run_id=stored.pk, reason=reason)
            except Exception:
                logger.exception("ads sync: run %s: its days could not be failed", stored.pk)
        raise
    failed = tuple(c for c in customer_ids if c not in known)
    return Plan(
        run=run,
        days=planned,
        failed_accounts=failed,
        csv_missing=tuple(gone),
        windows=tuple(windows),
    )


def plan_csv_restore(*, plan: Plan) -> None:
    """Rewrite from the database the CSVs of done days that the plan found gone or outdated.

    Called after the fan-out: until its tasks are sent, the plan's pending days are in the
    ledger with nothing to run them, and a failure here (a folder that cannot be written) must
    not leave them so. A run with no day to fetch finished when it was planned; its time is
    extended to count the rewriting.
    """
    # The plan stored them with the run as rewritten already.
    run_csv_restore(
        run=plan.run,
        days=plan.csv_missing,
        counted=len(plan.csv_missing),
        after_finish=not plan.days,
    )
    if not plan.days:
        # Finished when it was planned: no day of it will say so (run_finish_if_settled).
        plan.run.refresh_from_db()
        _finished_log(plan.run)


def run_csv_restore(
    *,
    run: SyncRun,
    days: Sequence[tuple[str, dt.date]],
    counted: int = 0,
    after_finish: bool = False,
) -> tuple[int, list[str]]:
    """Rewrite from the database the CSVs of these done days into the run's folder; how many
    were written, and the errors of those that were not ("customer date: error"). They count as
    the run's rewritten files, `counted` of them already. `after_finish`: the run has finished
    and its time is extended to count the rewriting.

    A file that cannot be written (its account's folder is not one) is the run's note, and the
    next plan there tries it again.
    """
    written, errors = 0, []
    try:
        for customer_id, day in days:
            try:
                day_csv_write(customer_id=customer_id, day=day, output_dir=run.output_dir)
            except OSError as exc:
                errors.append(f"{customer_id} {day}: {exc}")
                continue
            written += 1
    finally:
        # The files written, not those planned: a folder that fails halfway counts what it took.
        if written != counted:
            SyncRun.objects.filter(pk=run.pk).update(
                csv_rewritten=F("csv_rewritten") + written - counted
            )
    if errors:
        logger.error("ads sync: run %s: %d CSV file(s) not rewritten", run.pk, len(errors))
        note = f"{len(errors)} CSV file(s) could not be rewritten, first: {errors[0]}"
        _run_note_add(run_id=run.pk, note=note)
    if days and after_finish:
        run_finish_extend(run=run)
    return written, errors


def run_finish_extend(*, run: SyncRun) -> None:
    """Move a finished run's end, and its time, to now: work done for it after its last day
    settled (files rewritten, a wait for dates of its range that other runs held)."""
    now = timezone.now()
    SyncRun.objects.filter(pk=run.pk, finished_at__isnull=False).update(
        finished_at=now, elapsed_s=_elapsed_until(now)
    )


def csv_dir_ensure(*, output_dir: str | Path) -> None:
    """Create the CSV folder if needed and check that files can be written in it (OSError)."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-check-"):
        pass


def csv_leftovers_remove(*, output_dir: str | Path) -> int:
    """Remove the temporary files of CSV writes that never finished (`_atomic_csv`'s, older
    than CSV_LEFTOVER_AFTER_S) from the folder and its account folders; how many went."""
    cutoff = time.time() - CSV_LEFTOVER_AFTER_S
    removed = 0
    root = Path(output_dir)
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            for entry in os.scandir(folder):
                if folder == root and entry.is_dir():
                    folders.append(Path(entry.path))  # the account folders, one level down
                elif _CSV_LEFTOVER.fullmatch(entry.name) and entry.is_file():
                    # Gone meanwhile: renamed by its writer, or removed by another planner.
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
                            removed += 1
        except OSError as exc:  # tidying up: a folder it may not read must not stop a planning
            logger.warning("ads sync: unfinished CSV writes in %s not removed: %s", folder, exc)
    if removed:
        logger.warning("ads sync: removed %d unfinished CSV write(s) in %s", removed, root)
    return removed


_IN_FLIGHT_PLANNED_SQL = """
SELECT s.customer_id, s.date, s.run_id, s.updated_at
FROM ads_sync_syncday s
JOIN unnest(%s::text[], %s::date[]) AS p(customer_id, date)
  ON p.customer_id = s.customer_id AND p.date = s.date
JOIN ads_sync_syncrun r ON r.id = s.run_id
WHERE s.state IN ('pending', 'running') AND r.finished_at IS NULL
ORDER BY s.id
FOR UPDATE OF s
"""


def _take_over(*, planned: list[tuple[str, dt.date]]) -> tuple[list[tuple[str, dt.date]], set[int]]:
    """Settle, for the unfinished runs that planned them, the days this plan takes over.

    A pending or running day of an unfinished run is planned again once it has not moved for
    IN_FLIGHT_STALE_AFTER (its message was lost). Its old run no longer owns it, so none of the
    old run's tasks will settle it: count it there as deferred, or that run never finishes and
    a `backfill_ads` waiting on it waits forever.

    Only the planned days that are in flight are locked (in id order), and each is checked again
    under its lock: a day that moved since it was selected (a task of its run just started it)
    is in flight again and is left out of this plan. A task settling a locked day waits for this
    transaction and then finds the day moved on, so nothing is counted twice. Returns the days
    still to plan and the old runs, to be closed if this settled them.
    """
    if not planned:
        return planned, set()
    stale_before = timezone.now() - selectors.IN_FLIGHT_STALE_AFTER
    with connection.cursor() as cursor:
        cursor.execute(_IN_FLIGHT_PLANNED_SQL, [[c for c, _ in planned], [d for _, d in planned]])
        in_flight = cursor.fetchall()
    alive = {(c, d) for c, d, _, updated_at in in_flight if updated_at > stale_before}
    counts = Counter(run_id for c, d, run_id, updated_at in in_flight if (c, d) not in alive)
    for run_id, taken in counts.items():
        SyncRun.objects.filter(pk=run_id).update(deferred=F("deferred") + taken)
    return [key for key in planned if key not in alive], set(counts)


def run_finish_if_settled(*, run_id: int) -> bool:
    """Close the run once every planned day is done, failed or deferred; exactly one caller
    wins and rebuilds the totals file."""
    # One transaction: the run is seen finished together with why its totals file could not be
    # written, which backfill_ads reads once it sees the run finished. Written after the
    # claim, it could come too late for it (a large file fails at its rename).
    try:
        with transaction.atomic():
            if not _finish_claim(run_id=run_id):
                return False
            _finished_totals_write(run_id=run_id)
    except BaseException:
        # Stopped while writing the file (a time limit): the run finishes all the same, as it
        # did when the claim came first; no other caller would ever claim it.
        _finish_claim(run_id=run_id)
        raise
    return True


def _finished_totals_write(*, run_id: int) -> None:
    """Say that the run finished, and rebuild its folder's totals file (or record on the run
    why it could not be)."""
    run = SyncRun.objects.get(pk=run_id)
    _finished_log(run)
    try:
        totals_csv_write(output_dir=run.output_dir)
    except OSError as exc:
        # The run is settled whatever its folder allows; the next run there rebuilds the file.
        logger.exception("ads sync: the totals file in %s could not be written", run.output_dir)
        # Said by the run too: backfill_ads, waiting for it, exits 73 on it.
        SyncRun.objects.filter(pk=run.pk).update(totals_error=str(exc))


def _finished_log(run: SyncRun) -> None:
    """The line that says a run finished, how long it took and what it did."""
    logger.info(
        "ads sync: run %s (%s) finished in %.1f s: %s planned, %s done, %s failed, %s deferred,"
        " %s row(s), %s API call(s)",
        run.pk,
        run.trigger,
        run.elapsed_s or 0.0,
        run.planned,
        run.done,
        run.failed,
        run.deferred,
        run.rows,
        run.api_calls,
    )


def run_totals_rebuild(*, run: SyncRun) -> None:
    """Rebuild the run's folder's totals file (OSError if it cannot be). Once it is written,
    the run no longer says that it could not be as it finished."""
    totals_csv_write(output_dir=run.output_dir)
    SyncRun.objects.filter(pk=run.pk).exclude(totals_error="").update(totals_error="")


def _run_note_add(*, run_id: int, note: str) -> None:
    """A line added to the run's notes, in one statement: another process may add one too."""
    newline = Case(When(notes="", then=Value("")), default=Value("\n"))
    SyncRun.objects.filter(pk=run_id).update(notes=Concat(F("notes"), newline, Value(note)))


def _finish_claim(*, run_id: int) -> bool:
    """Mark the run finished if every planned day is settled; True for the one caller that did."""
    now = timezone.now()
    # Both in one statement: a reader that sees the run finished sees how long it took.
    claimed = SyncRun.objects.filter(
        pk=run_id,
        finished_at__isnull=True,
        planned__lte=F("done") + F("failed") + F("deferred"),
    ).update(finished_at=now, elapsed_s=_elapsed_until(now))
    return bool(claimed)


def _elapsed_until(moment: dt.datetime) -> RawSQL:
    """A run's seconds from the start of its planning (or its row, for runs stored without
    one) to `moment`."""
    return RawSQL(
        "EXTRACT(EPOCH FROM (%s - COALESCE(planning_started_at, started_at)))::double precision",
        [moment],
    )


# The SyncRun counter of each final state.
_RUN_COUNTER = {
    SyncDay.State.DONE: "done",
    SyncDay.State.FAILED: "failed",
    SyncDay.State.DEFERRED: "deferred",
}


def _settle(
    *,
    entry_id: int,
    run_id: int,
    state: str,
    from_states: tuple[str, ...] = (SyncDay.State.RUNNING,),
    **fields: object,
) -> bool:
    """Move a running ledger entry of this run to a final state and count it, atomically."""
    counter = _RUN_COUNTER[SyncDay.State(state)]
    rows = int(fields.get("rows", 0) or 0)  # type: ignore[call-overload]
    with transaction.atomic():
        moved = SyncDay.objects.filter(pk=entry_id, run_id=run_id, state__in=from_states).update(
            state=state, updated_at=timezone.now(), **fields
        )
        if moved:
            increments: dict[str, object] = {counter: F(counter) + 1}
            if state == SyncDay.State.DONE:
                increments["rows"] = F("rows") + rows
            SyncRun.objects.filter(pk=run_id).update(**increments)
    return bool(moved)


def run_fail_pending(*, run_id: int, reason: str) -> int:
    """The run's tasks could not all be sent: its days not started yet fail now, so that the
    next gap detection plans them at once instead of waiting for them as in flight."""
    moved = _settle_pending(run_id=run_id, state=SyncDay.State.FAILED, reason=reason)
    run_finish_if_settled(run_id=run_id)
    return moved


def run_defer_pending(*, run_id: int, reason: str) -> int:
    """A daily quota is gone: every day of the run not started yet is deferred, not attempted."""
    return _settle_pending(run_id=run_id, state=SyncDay.State.DEFERRED, reason=reason)


def _settle_pending(*, run_id: int, state: str, reason: str) -> int:
    """Move every pending day of the run to a final state and count them, atomically."""
    counter = _RUN_COUNTER[SyncDay.State(state)]
    with transaction.atomic():
        moved = SyncDay.objects.filter(run_id=run_id, state=SyncDay.State.PENDING).update(
            state=state, last_error=reason, updated_at=timezone.now()
        )
        if moved:
            SyncRun.objects.filter(pk=run_id).update(**{counter: F(counter) + moved})
    return moved


# A daily detection may start a little earlier in the day than the one that planned the day.
_BACKOFF_SLACK = dt.timedelta(hours=1)


def _failure_fields(*, failures: int, planned_at: dt.datetime) -> dict[str, Any]:
    """The ledger fields of one more failure in a row, after `failures` of them.

    The first ADS_SYNC_FAILED_DAILY_RETRIES failures leave the day to the next daily detection;
    each one after that doubles the wait (2, 4, 8 ... days, at most
    ADS_SYNC_FAILED_BACKOFF_MAX_DAYS), so that a day that cannot be fetched (an account whose
    access was revoked) does not cost an API call and a failed task every day for ever. The wait
    counts from when the run was planned, not from when its task ran: a task that waited hours
    in the queue behind a backfill must not push the retry past the detection it was meant for.
    """
    failures += 1
    beyond = failures - settings.ADS_SYNC_FAILED_DAILY_RETRIES
    retry_after = None
    if beyond > 0:
        wait_days = min(2 ** min(beyond, 30), settings.ADS_SYNC_FAILED_BACKOFF_MAX_DAYS)
        retry_after = planned_at + dt.timedelta(days=wait_days) - _BACKOFF_SLACK
    return {"failures": failures, "retry_after": retry_after}


@dataclass(frozen=True, slots=True)
class DayOutcome:
    state: str
    rows: int = 0
    error: str = ""


def day_fail(*, customer_id: str, day: dt.date, run_id: int, error: str) -> bool:
    """Record a failure that escaped day_sync (a bug, a lost database) so the run can settle."""
    entry = SyncDay.objects.filter(customer_id=customer_id, date=day).first()
    if entry is None:
        return False
    error = google_ads.redacted(error)
    # It may have escaped before the day was started: pending counts too, or the run never ends.
    settled = _settle(
        entry_id=entry.pk,
        run_id=run_id,
        state=SyncDay.State.FAILED,
        from_states=(SyncDay.State.PENDING, SyncDay.State.RUNNING),
        last_error=error,
        **_failure_fields(failures=entry.failures, planned_at=_planned_at(run_id)),
    )
    run_finish_if_settled(run_id=run_id)
    return settled


def _day_failed(*, entry: SyncDay, run_id: int, error: str, **fields: Any) -> DayOutcome:
    """Settle a started day as failed for its run (with the ledger `fields` given), and close
    the run if it was the last."""
    logger.warning(
        "ads sync: %s %s failed (run %s): %s", entry.customer_id, entry.date, run_id, error
    )
    _settle(
        entry_id=entry.pk, run_id=run_id, state=SyncDay.State.FAILED, last_error=error, **fields
    )
    run_finish_if_settled(run_id=run_id)
    return DayOutcome(state=SyncDay.State.FAILED, error=error)


def _planned_at(run_id: int) -> dt.datetime:
    started = SyncRun.objects.filter(pk=run_id).values_list("started_at", flat=True).first()
    return started or timezone.now()


def _entry_restored(*, run_id: int, customer_id: str, day: dt.date) -> SyncDay | None:
    """The ledger entry of a day with none, made again under the run as its planning made it,
    while the run has a planned day that is neither counted nor held by an entry: an entry
    deleted by hand (nothing in the project deletes one), without which the run never finished
    and a `backfill_ads` waiting on it waited for ever. The counts do not say which day lost its
    entry; the one asked for is taken for it.

    None when the run has no such day: the day was planned by no run (a task sent by hand for
    it). Synced under the run, its count broke the run's CHECK after the fetch
    (ads_run_counts_within_planned), and the day stayed running."""
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            return None
        held = SyncDay.objects.filter(run_id=run_id).exclude(state__in=FINAL_STATES).count()
        if run.done + run.failed + run.deferred + held >= run.planned:
            return None
        entry, _ = SyncDay.objects.get_or_create(
            customer_id=customer_id, date=day, defaults={"run": run}
        )
        return entry


def day_sync(*, customer_id: str, day: dt.date, run_id: int) -> DayOutcome:
    """Sync one (customer, date) for a run: fetch, replace the day's rows in one transaction,
    write the day's CSV from the database after commit, then mark the ledger done.

    Idempotent: a redelivered task whose day this run already settled does nothing; one that
    died midway starts over and leaves the same rows. The API's failures, an answer that cannot
    be stored and a CSV file that cannot be written are recorded on the day, not raised; a
    database error (storing the rows, settling the day) is raised, for `tasks.sync_day` to
    record the day as crashed or try it again.
    """
    run = SyncRun.objects.filter(pk=run_id).first()
    if run is None:
        return DayOutcome(state="skipped", error=f"run {run_id} no longer exists")
    now = timezone.now()
    entry = SyncDay.objects.filter(customer_id=customer_id, date=day).first()
    if entry is None:
        entry = _entry_restored(run_id=run_id, customer_id=customer_id, day=day)
    if entry is None:
        logger.warning(
            "ads sync: %s %s skipped: no run planned it (backfill_ads --customer %s --start %s"
            " --end %s does)",
            customer_id,
            day,
            customer_id,
            day,
            day,
        )
        return DayOutcome(state="skipped", error="no run planned this day")
    if entry.run_id == run_id and entry.state in FINAL_STATES:
        return DayOutcome(state="skipped")
    # Only the run that planned the day may start it (again, after a lost worker): a task of an
    # older run whose day was planned anew must not take it over and leave either run unsettled.
    started = (
        SyncDay.objects.filter(pk=entry.pk, run_id=run_id)
        .exclude(state__in=FINAL_STATES)
        .update(state=SyncDay.State.RUNNING, run=run, attempts=F("attempts") + 1, updated_at=now)
    )
    if not started:
        return DayOutcome(state="skipped")

    t0 = time.monotonic()
    calls = google_ads.CallCounter()
    try:
        try:
            account = account_ensure(customer_id=customer_id, counter=calls)
            rows = google_ads.fetch_data(customer_id, day, counter=calls)
        finally:
            # Before the day settles: the run's summary is read once its last day has.
            SyncRun.objects.filter(pk=run_id).update(api_calls=F("api_calls") + calls.calls)
    except google_ads.DailyQuotaExhausted as exc:
        reason = f"daily quota exhausted: {exc}"
        _settle(entry_id=entry.pk, run_id=run_id, state=SyncDay.State.DEFERRED, last_error=reason)
        run_defer_pending(run_id=run_id, reason=reason)
        run_finish_if_settled(run_id=run_id)
        return DayOutcome(state=SyncDay.State.DEFERRED, error=reason)
    except Exception as exc:
        # Anything the client could not handle (retries spent, permanent, credentials, or a
        # bug) fails this day only. The next daily detections try it again, after
        # ADS_SYNC_FAILED_DAILY_RETRIES of them only once its backoff has passed
        # (_failure_fields); a backfill, at once. Stored and shown in the admin: without
        # credentials, and cut (the client's own errors are already).
        error = google_ads.redacted(f"{type(exc).__name__}: {exc}")
        request_id = getattr(exc, "request_id", None)
        if request_id and request_id not in error:
            error += f" {google_ads.naming(request_id)}"  # as the client's own errors end
        if isinstance(exc, google_ads.InstallationCredentialsError):
            # The installation's credentials, not the account's day: missing, revoked or refused
            # for every day alike. Counted toward the day's backoff, a deployment without its
            # refresh token for two daily detections left every missing day waiting 2 to 30
            # days after the fix, unless someone ran a backfill. (An account that refuses a
            # freshly refreshed token is its own failure, backed off as usual.)
            return _day_failed(entry=entry, run_id=run_id, error=error, retry_after=None)
        return _day_failed(
            entry=entry,
            run_id=run_id,
            error=error,
            **_failure_fields(failures=entry.failures, planned_at=run.started_at),
        )

    stored = 0
    outcome = DayOutcome(state=SyncDay.State.DONE)

    def finish() -> None:
        nonlocal outcome
        # After commit: the file reflects committed rows, and the day is done only once the
        # file is in place. The time is taken before the write: a day file older than it
        # (another folder's, written at an earlier fetch) is rewritten by the next plan there.
        fetched_at = timezone.now()
        try:
            day_csv_write(customer_id=customer_id, day=day, output_dir=run.output_dir)
        except OSError as exc:
            # The fetch worked and its rows are stored: a folder that cannot be written is not
            # the account's failure, and does not count toward the day's backoff.
            error = f"CSV file not written: {type(exc).__name__}: {exc}"
            outcome = _day_failed(entry=entry, run_id=run_id, error=error, retry_after=None)
            return
        duration_ms = int((time.monotonic() - t0) * 1000)
        if _settle(
            entry_id=entry.pk,
            run_id=run_id,
            state=SyncDay.State.DONE,
            rows=stored,
            fetched_at=fetched_at,
            duration_ms=duration_ms,
            last_error="",
            failures=0,
            retry_after=None,
        ):
            logger.info(
                "ads sync: %s %s done: %d row(s) in %d ms (run %s)",
                customer_id,
                day,
                stored,
                duration_ms,
                run_id,
            )
        run_finish_if_settled(run_id=run_id)

    try:
        with transaction.atomic():
            stored = day_rows_replace(
                customer_id=customer_id, day=day, rows=rows, currency_code=account.currency_code
            )
            outcome = DayOutcome(state=SyncDay.State.DONE, rows=stored)
            transaction.on_commit(finish)
    except google_ads.PermanentAdsError as exc:  # an answer that cannot be stored
        return _day_failed(
            entry=entry,
            run_id=run_id,
            error=f"{type(exc).__name__}: {exc}",
            **_failure_fields(failures=entry.failures, planned_at=run.started_at),
        )
    return outcome
