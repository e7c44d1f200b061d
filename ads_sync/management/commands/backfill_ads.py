"""Backfill Google Ads days through the same planning and sync_day tasks that beat uses."""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.db import InterfaceError, OperationalError, connection
from django.db.models import F, Sum
from kombu.exceptions import OperationalError as KombuOperationalError

from ads_sync import broker, selectors, services, tasks
from ads_sync.broker import queue_has_consumers, tasks_lost
from ads_sync.history import DAILY_HISTORY_MONTHS, earliest_day
from ads_sync.integrations import google_ads
from ads_sync.management.arguments import iso_date
from ads_sync.models import SyncDay, SyncRun
from inventory_project.celery import app as celery_app
from inventory_project.management import arguments
from inventory_project.management.database import DatabaseCommand

# The wait's last poll is part of the command's wall time; the query is one row by pk.
POLL_S = 0.2
PLAIN_EVERY_S = 5.0
STALL_CHECK_S = 30.0
# Other runs holding dates of the range are given up on (exit 4) after settling no day for as
# long as one day may take (every attempt, its backoff, the CSV): they are stranded.
OTHER_RUNS_STALL_S = float(tasks.SYNC_DAY_SOFT_LIMIT_S)
# The shell's status for a command stopped by a signal: 128 + its number (Ctrl-C: 130).
SIGNALLED = 128
# A command line it cannot run (sysexits' EX_USAGE): argparse's own 2 is this command's "no
# worker or broker", and 1 its "a date failed", both worth retrying; a typo is not.
USAGE = 64
# The CSV folder cannot be written (sysexits' EX_CANTCREAT).
CANT_CREATE = 73

# Tasks found lost (tasks_lost) at two stall checks in a row, with nothing settled between, are
# sent again; at most this many times in one wait.
RESENDS_MAX = 3

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Elsewhere:
    """What became of this range's dates that other runs were fetching."""

    runs: list[int] = field(default_factory=list)
    done: tuple[tuple[str, dt.date], ...] = ()
    failed: int = 0
    deferred: int = 0
    in_flight: int = 0  # their runs made no progress for OTHER_RUNS_STALL_S


class _LostTasks:
    """Sends again the tasks of the runs waited on once they are seen lost twice in a row."""

    def __init__(self, command: Command, queue: str) -> None:
        self.command = command
        self.queue = queue
        self.suspected = False
        self.resends = 0  # since the runs last settled a day

    def progress(self) -> None:
        self.suspected = False
        self.resends = 0

    def check(self, run_ids: list[int]) -> bool:
        """At a stall: True if days of the runs were sent again."""
        if not tasks_lost(self.queue, run_ids):
            self.suspected = False
            return False
        if not self.suspected:  # a message may have been on its way to a worker
            self.suspected = True
            return False
        self.suspected = False
        runs = ", ".join(map(str, run_ids))
        if self.resends >= RESENDS_MAX:
            hours = selectors.IN_FLIGHT_STALE_AFTER.total_seconds() / 3600
            raise CommandError(
                f"the tasks of run(s) {runs} were lost again after {RESENDS_MAX} re-sends (does "
                "every worker on the queue run this code? a worker that does not know a task "
                "drops it); their days stay planned, and a later plan over them takes them over "
                f"{hours:.0f} hours after they last moved",
                returncode=4,
            )
        try:
            sent = tasks.resend_unsettled(run_ids=run_ids)
        except (OperationalError, InterfaceError, KombuOperationalError) as exc:
            # The database or the broker went away since the check: the next stall checks again.
            self.command.stderr.write(f"\ncould not send the lost tasks again ({exc})")
            return False
        if not sent:  # only days a worker may still be running (resend_unsettled)
            return False
        self.resends += 1
        if self.command.stdout.isatty():
            self.command.stdout.write("")
        self.command.stdout.write(
            f"run(s) {runs}: {sent} date(s) had no task left (queue {self.queue!r} is empty and "
            "no worker holds one: lost with a purged queue, or a broker that restarted without "
            "its data); sent them again"
        )
        return True


class SignalInterrupt(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C; its text is the signal's name."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)  # args as given: it copies and pickles
        self.signum = signum

    def __str__(self) -> str:
        return signal.Signals(self.signum).name


def _not_complete(windows: Iterable[selectors.Window], end: dt.date | None) -> str:
    """The accounts whose last complete day is before `end`, and after which day: "" if none."""
    if end is None:
        return ""
    short = sorted((w.end, w.customer_id) for w in windows if w.end < end)
    return ", ".join(f"after {last} for {customer_id}" for last, customer_id in short)


def _totals_unwritten(run: SyncRun) -> str:
    """Why the run's folder's totals file could not be written as the run finished, or "" if
    it was (or has been rebuilt since)."""
    if not run.totals_error:
        return ""
    return f"the totals file in {run.output_dir} could not be written: {run.totals_error}"


def _usage(message: str) -> CommandError:
    return CommandError(message, returncode=USAGE)


def interrupted_status(exc: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by this signal (130 for Ctrl-C, 143 for SIGTERM)."""
    return SIGNALLED + getattr(exc, "signum", signal.SIGINT)


@contextlib.contextmanager
def stopped_like_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP (`timeout`, a cancelled CI job, a closed SSH session) stop the
    command as Ctrl-C does: planned days not yet sent are failed at once (tasks.run_start).
    Without this they ended the process mid-fan-out, and the days stayed pending, skipped by
    every plan as in flight, for 12 hours."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def interrupt(signum: int, frame: object) -> None:
        raise SignalInterrupt(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def broker_unreachable() -> str:
    """Why the broker cannot be reached (its URL, password masked, and the error), or ""."""
    try:
        with celery_app.connection_for_read() as conn:
            try:
                conn.ensure_connection(max_retries=1)
            except Exception as exc:
                return f"{conn.as_uri()}: {exc}"
    except Exception as exc:
        return str(exc)
    return ""


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Command(DatabaseCommand):
    help = (
        "Plan the missing Google Ads days of a range (all of them with --force), fan them out as "
        "sync_day tasks, show progress and a summary. With no --start or --days, the range is "
        "the last ADS_SYNC_HISTORY_DAYS days. Exit status 1 when a date failed or an account "
        "could not be looked up, 2 when no worker or broker takes the tasks, 3 when another "
        "planning holds the lock, 4 when dates of the range are not fetched yet (deferred, "
        "stranded in another run, tasks lost after every re-send, or not complete in the "
        "accounts' time zones), 64 when the arguments cannot be used, 73 when the CSV folder "
        "cannot be written, 128 + the signal (130 for Ctrl-C) when stopped while it waits (the "
        "run goes on in the workers)."
    )
    _database_down = False  # while waiting (`_read`)
    _broker_down = False  # while waiting for its own run (`_wait`)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--start", type=iso_date, help="first date (YYYY-MM-DD)")
        parser.add_argument(
            "--end", type=iso_date, help="last date, with --start (default: yesterday)"
        )
        parser.add_argument("--days", type=int, help="the last N days up to yesterday")
        parser.add_argument(
            "--customer",
            action="append",
            dest="customers",
            help="customer id (repeatable; default: GOOGLE_ADS_CUSTOMER_IDS)",
        )
        parser.add_argument("--output-dir", help="CSV folder for this run")
        parser.add_argument("--force", action="store_true", help="re-fetch done days too")
        parser.add_argument("--no-wait", action="store_true", help="print the run id and return")
        parser.add_argument(
            "--lock-wait",
            type=arguments.seconds,
            default=30.0,
            help="seconds to wait for another planning (default: 30)",
        )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        argparse_exit = parser.exit

        def exit_usage(status: int = 0, message: str | None = None) -> NoReturn:
            # argparse exits 2 for a command line it rejects (`--start 2025-13-01`).
            argparse_exit(USAGE if status == 2 else status, message)

        parser.exit = exit_usage  # type: ignore[method-assign]
        return parser

    def handle(self, *args: Any, **options: Any) -> None:
        with stopped_like_ctrl_c():
            self._backfill(**options)

    def _backfill(self, **options: Any) -> None:
        start, end, days = options["start"], options["end"], options["days"]
        if days is not None and (start or end):
            raise _usage("use either --days or --start/--end, not both")
        if days is not None and days < 1:
            raise _usage("--days must be at least 1")
        if start and end and start > end:
            raise _usage(f"--start {start} is after --end {end}")
        today = dt.datetime.now(dt.UTC).date()
        if start and start > today:
            # Yesterday is the last complete day; in no time zone is it after today in UTC.
            raise _usage(f"--start {start} is in the future: no complete day to fetch")
        earliest = earliest_day(today)
        if days is not None and days > (today - earliest).days:
            raise _usage(
                f"--days {days} reaches back before {earliest}: Google Ads serves days of the "
                f"last {DAILY_HISTORY_MONTHS} months only"
            )
        if start and start < earliest:
            raise _usage(
                f"--start {start} is before {earliest}: Google Ads serves days of the last "
                f"{DAILY_HISTORY_MONTHS} months only"
            )
        if end and not start and days is None:
            raise _usage("--end needs --start")
        if options["output_dir"] in ("", "-"):
            # "" read as the default folder, and "-" made a folder named "-" (export_ads_csv
            # takes "-" for standard output; a backfill writes one file per day).
            raise _usage(f"--output-dir {options['output_dir']!r} is not a folder")
        try:
            given = [google_ads.normalize_customer_id(c) for c in options["customers"] or []]
        except ValueError as exc:
            raise _usage(f"--customer: {exc}") from exc
        customers = list(dict.fromkeys(given)) or list(settings.GOOGLE_ADS_CUSTOMER_IDS)
        # After every check of what was typed: a command line refused for the configuration
        # must not be refused again, once that is set, for a mistake it held all along.
        if not customers:
            raise _usage("no customer: set GOOGLE_ADS_CUSTOMER_IDS or pass --customer")

        # The folder the user means is relative to where they run this, not to the workers.
        output_dir = Path(options["output_dir"] or settings.ADS_SYNC_OUTPUT_DIR).absolute()
        try:
            services.csv_dir_ensure(output_dir=output_dir)
        except OSError as exc:
            # Not a usage error: a full disk or a mount not up yet is worth a retry.
            raise CommandError(
                f"cannot write CSV files in {output_dir}: {exc}", returncode=CANT_CREATE
            ) from exc

        queue = celery_app.conf.task_default_queue
        workers = queue_has_consumers(queue)
        # With --no-wait no worker need run yet, but the broker must take the tasks: planned
        # and not sent, the days would be failed (with --force, days that were done).
        broker = "" if workers else broker_unreachable()
        if broker:
            raise CommandError(
                f"the broker cannot be reached ({broker}); start RabbitMQ or check "
                "CELERY_BROKER_URL, and retry",
                returncode=2,
            )
        if not workers and not options["no_wait"]:
            raise CommandError(
                f"no Celery worker is consuming queue {queue!r}: start one "
                "(`make run`, or `celery -A inventory_project worker`) and retry, or pass "
                "--no-wait to queue the dates for a worker that starts later",
                returncode=2,
            )

        try:
            plan = tasks.run_start(
                trigger=SyncRun.Trigger.BACKFILL,
                customer_ids=customers,
                start=start,
                end=end,
                days=days,
                force=options["force"],
                output_dir=output_dir,
                lock_wait_s=options["lock_wait"],
            )
        except KombuOperationalError as exc:
            raise CommandError(
                f"the broker could not take the tasks ({exc}); the dates not sent are marked "
                "failed and the next run plans them again",
                returncode=2,
            ) from exc
        except KeyboardInterrupt as exc:
            # run_start has failed whatever it had planned and not sent (services.run_plan).
            raise CommandError(
                "interrupted while planning; dates it planned and had not sent are marked "
                "failed and planned again by the next gap detection or backfill; dates sent "
                "go on in the workers (admin: Sync runs)",
                returncode=interrupted_status(exc),
            ) from None
        if plan is None:
            raise CommandError(
                "another planning holds the planning lock (or this one lost it during slow "
                "account lookups); retry in a minute",
                returncode=3,
            )
        run = plan.run
        self.stdout.write(
            f"run {run.pk}: {run.planned} date(s) planned for {len(customers)} account(s), "
            f"{run.range_start} .. {run.range_end}, output {run.output_dir}"
        )
        if run.range_start and run.range_end and run.range_start > run.range_end:
            raise CommandError(
                f"no date of {start} .. {end or start} is complete yet in the accounts' time "
                f"zones (the latest complete day is {run.range_end}); nothing to fetch",
                returncode=4,
            )
        # Each account's last complete day is yesterday in its own time zone: an --end that
        # one account has reached may still be ahead for another (Tokyo and Los Angeles).
        not_complete = _not_complete(plan.windows, end)
        if not_complete:
            self.stdout.write(
                f"note: not complete yet in the accounts' time zones, so not planned: the dates "
                f"{not_complete}"
            )
        problems = []
        if plan.failed_accounts:
            problems.append(
                f"{len(plan.failed_accounts)} account(s) could not be looked up and were not "
                f"synced: {', '.join(plan.failed_accounts)}"
            )
        if options["no_wait"]:
            if not workers:
                self.stdout.write(f"note: no worker is consuming queue {queue!r} right now")
            self.stdout.write(str(run.pk))
            if problems:
                raise CommandError("; ".join(problems), returncode=1)
            return
        finished = False
        try:
            run = self._wait(run, queue)
            finished = True
            # Dates of the range that another run was fetching were skipped by this plan: the
            # range is complete only once they are too (`backfill_ads && export_ads_csv`).
            elsewhere = self._wait_for_other_runs(run, customers)
            if elsewhere.done:
                unwritten, totals = self._write_their_files(run, elsewhere.done)
            else:
                unwritten, totals = [], _totals_unwritten(run)
            if elsewhere.runs:
                # The range was complete only then: the summary's time counts the wait, as it
                # did only when their files had to be written into another folder.
                services.run_finish_extend(run=run)
                run.refresh_from_db()
        except KeyboardInterrupt as exc:
            if self.stdout.isatty():
                self.stdout.write("")
            if finished:
                self._summary(run)
            raise CommandError(
                f"stopped waiting; run {run.pk} goes on in the workers (admin: Sync runs)",
                returncode=interrupted_status(exc),
            ) from None
        # After the restore of their files, which the run counts (csv rewritten, its time).
        self._summary(run)
        if run.failed:
            problems.append(f"{run.failed} date(s) failed")
        if elsewhere.failed:
            problems.append(f"{elsewhere.failed} date(s) fetched by another run failed")
        if unwritten or totals:
            # Not a failed date: the folder is what a retry needs mended, as when this run's
            # own folder cannot be written (and the next run there writes these files).
            status = 1 if problems else CANT_CREATE
            if unwritten:
                problems.append(
                    f"{len(unwritten)} day file(s) fetched by another run could not be written "
                    f"into {run.output_dir}, first: {unwritten[0]}"
                )
            if totals:
                problems.append(totals)
            raise CommandError("; ".join(problems), returncode=status)
        if problems:
            raise CommandError("; ".join(problems), returncode=1)
        if run.deferred or elsewhere.deferred or elsewhere.in_flight or not_complete:
            # Nothing failed, but the range is not complete yet: a script must not go on as if
            # it were.
            parts = []
            if not_complete:
                parts.append(
                    f"up to --end {end}, the dates {not_complete} are not complete yet in the "
                    "accounts' time zones, and were not fetched"
                )
            deferred = run.deferred + elsewhere.deferred
            if deferred:
                parts.append(f"{deferred} date(s) deferred to a later run, not fetched yet")
            if elsewhere.in_flight:
                parts.append(
                    f"{elsewhere.in_flight} date(s) still in flight in run(s) "
                    f"{', '.join(map(str, elsewhere.runs))}, which made no progress for "
                    f"{OTHER_RUNS_STALL_S:.0f} s (admin: Sync runs)"
                )
            raise CommandError("; ".join(parts), returncode=4)

    def _wait_for_other_runs(self, run: SyncRun, customers: list[str]) -> _Elsewhere:
        """Wait while other runs settle this range's dates they hold; what became of them."""
        if run.range_start is None or run.range_end is None:
            return _Elsewhere()
        days = SyncDay.objects.filter(
            customer_id__in=customers, date__range=(run.range_start, run.range_end)
        )
        in_flight = (SyncDay.State.PENDING, SyncDay.State.RUNNING)
        held = set(
            days.filter(state__in=in_flight)
            .exclude(run_id=run.pk)
            .values_list("customer_id", "date", "run_id")
        )
        if not held:
            return _Elsewhere()
        runs = sorted({run_id for _, _, run_id in held if run_id is not None})
        self.stdout.write(
            f"waiting for {len(held)} date(s) of this range that run(s) "
            f"{', '.join(map(str, runs))} are fetching"
        )
        keys = {(customer_id, day) for customer_id, day, _ in held}

        def poll() -> tuple[dict[tuple[str, dt.date], str], int | None]:
            states = {
                (c, d): state
                for c, d, state in days.filter(date__in={d for _, d in keys}).values_list(
                    "customer_id", "date", "state"
                )
                if (c, d) in keys
            }
            # Progress is any day those runs settle: ours may wait in the queue behind theirs.
            settled = SyncRun.objects.filter(pk__in=runs).aggregate(
                n=Sum(F("done") + F("failed") + F("deferred"))
            )["n"]
            return states, settled

        last: tuple[object, float] = (None, time.monotonic())
        last_line = last_check = time.monotonic()
        lost = _LostTasks(self, celery_app.conf.task_default_queue)
        while True:
            polled = self._read(poll)
            if polled is None:
                continue
            states, settled = polled
            unsettled = sum(1 for state in states.values() if state in in_flight)
            now = time.monotonic()
            if (unsettled, settled) != last[0]:
                last = ((unsettled, settled), now)
                lost.progress()
            elif now - last[1] > STALL_CHECK_S and now - last_check > STALL_CHECK_S:
                last_check = now
                if lost.check(runs):
                    last = (last[0], now)  # the days sent again may take as long as any
            if now - last_line >= PLAIN_EVERY_S:
                self.stdout.write(
                    f"  {unsettled} of them still in flight; those runs last settled a day "
                    f"{now - last[1]:.0f} s ago"
                )
                last_line = now
            if not unsettled or now - last[1] > OTHER_RUNS_STALL_S:
                done = tuple(
                    sorted(k for k, state in states.items() if state == SyncDay.State.DONE)
                )
                failed = sum(1 for state in states.values() if state == SyncDay.State.FAILED)
                deferred = sum(1 for state in states.values() if state == SyncDay.State.DEFERRED)
                self.stdout.write(
                    f"  of those: {len(keys) - unsettled - failed - deferred} done, {failed} "
                    f"failed, {deferred} deferred, {unsettled} still in flight"
                )
                return _Elsewhere(
                    runs=runs, done=done, failed=failed, deferred=deferred, in_flight=unsettled
                )
            time.sleep(POLL_S * 5)

    def _write_their_files(
        self, run: SyncRun, done: tuple[tuple[str, dt.date], ...]
    ) -> tuple[list[str], str]:
        """The day files of the dates other runs fetched for this range, written from the
        database into this run's folder where they wrote theirs elsewhere, and this folder's
        totals file rebuilt: the one this run wrote as it finished was without them. The run
        is read again (the run no longer says its totals file is unwritten once it is); the
        errors of the day files that could not be written are returned, and why the totals
        file could not be ("" if it was)."""
        gone = selectors.done_days_needing_csv_of(days=done, output_dir=run.output_dir)
        written, errors = services.run_csv_restore(run=run, days=gone, after_finish=True)
        if gone:
            self.stdout.write(
                f"  {written} of their {len(gone)} day file(s) written into {run.output_dir} from "
                "the database (the other run wrote them into its own folder)"
            )
        totals = ""
        try:
            services.run_totals_rebuild(run=run)
        except OSError as exc:
            totals = f"the totals file in {run.output_dir} could not be rebuilt: {exc}"
        run.refresh_from_db()
        return errors, totals

    def _read(self, read: Callable[[], _T]) -> _T | None:
        """What `read` reads; None, after a pause, while PostgreSQL is unreachable (restarting):
        the runs go on in the workers (a day is retried until it can be recorded), so the waits
        wait for the database rather than crash. Said once per outage."""
        try:
            value = read()
        except (OperationalError, InterfaceError) as exc:
            connection.close()
            if not self._database_down:
                self.stderr.write(f"\nthe database is unreachable ({exc}); still waiting")
            self._database_down = True
            time.sleep(POLL_S * 5)
            return None
        self._database_down = False
        return value

    def _wait(self, run: SyncRun, queue: str) -> SyncRun:
        tty = self.stdout.isatty()
        t0 = time.monotonic()
        last_plain = 0.0
        last_progress = (-1, t0)
        lost = _LostTasks(self, queue)
        unconsumed = 0  # stall checks in a row that found no worker consuming the queue

        def refreshed() -> SyncRun:
            run.refresh_from_db()
            return run

        while True:
            if self._read(refreshed) is None:
                continue
            now = time.monotonic()
            settled = run.settled
            if settled != last_progress[0]:
                last_progress = (settled, now)
                lost.progress()
            line = self._progress_line(run, now - t0)
            if tty:
                self.stdout.write("\r" + line, ending="")
                self.stdout.flush()
            elif now - last_plain >= PLAIN_EVERY_S or run.finished_at:
                self.stdout.write(line)
                last_plain = now
            if run.finished_at:
                if tty:
                    self.stdout.write("")
                return run
            if now - last_progress[1] > STALL_CHECK_S:
                consumers = broker.consumed(queue)
                if consumers is None:
                    # The broker restarts, or is away: the workers reconnect when it is back
                    # (a few seconds to a minute later), and their tasks with them.
                    if not self._broker_down:
                        self.stderr.write("\nthe broker is unreachable; still waiting")
                    self._broker_down = True
                    unconsumed = 0
                elif not consumers:
                    self._broker_down = False
                    # Twice in a row: a worker reconnecting to a broker that came back is not
                    # counted until it has redeclared its queue.
                    unconsumed += 1
                    if unconsumed >= 2:
                        if tty:
                            self.stdout.write("")
                        raise CommandError(
                            f"no Celery worker is consuming queue {queue!r} any more; run "
                            f"{run.pk} stays planned and resumes when a worker starts",
                            returncode=2,
                        )
                else:
                    self._broker_down = False
                    unconsumed = 0
                    lost.check([run.pk])
                last_progress = (settled, now)
            time.sleep(POLL_S)

    @staticmethod
    def _progress_line(run: SyncRun, elapsed: float) -> str:
        planned = max(run.planned, 1)
        width = 30
        filled = int(width * run.settled / planned) if run.planned else width
        rate = run.settled / elapsed if elapsed > 0 else 0.0
        remaining = run.planned - run.settled
        if not remaining:  # done, or nothing to fetch: a run of 0 dates has no rate
            eta = _duration(0)
        elif rate > 0:
            eta = _duration(remaining / rate)
        else:
            eta = "?"
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {run.settled}/{run.planned} "
            f"done {run.done} failed {run.failed} deferred {run.deferred} | rows {run.rows} | "
            f"{rate:.1f} dates/s | ETA {eta}"
        )

    def _summary(self, run: SyncRun) -> None:
        latency = selectors.run_latency(run_id=run.pk)

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f} ms"

        lines = [
            f"Summary of run {run.pk} ({run.trigger}), {run.range_start} .. {run.range_end}",
            f"  dates planned    {run.planned}",
            f"  fetched          {run.done}",
            f"  skipped          {run.skipped} (already done, or in flight in another run)",
            f"  csv rewritten    {run.csv_rewritten} (from the database, no API call)",
            f"  failed           {run.failed}",
            f"  deferred         {run.deferred}",
            f"  rows written     {run.rows}",
            f"  API calls        {run.api_calls}",
            f"  elapsed          {run.elapsed_s or 0:.1f} s",
            f"  per-date latency p50 {ms(latency.p50_ms)}, p95 {ms(latency.p95_ms)}",
        ]
        notes = "\n".join(note for note in (run.notes, _totals_unwritten(run)) if note)
        if notes:
            lines.append(f"  notes            {notes}")
        failures = selectors.run_failures(run_id=run.pk)
        if failures:
            lines.append(
                "failed dates (the next gap detection retries those of GOOGLE_ADS_CUSTOMER_IDS "
                "within ADS_SYNC_HISTORY_DAYS; backfill_ads retries any):"
            )
            lines.extend(f"  {f.customer_id} {f.date}: {f.last_error}" for f in failures[:20])
            if len(failures) > 20:
                lines.append(f"  ... and {len(failures) - 20} more (admin: Sync days, failed)")
        if run.deferred:
            lines.append(
                "deferred dates wait for the daily quota (the next gap detection fetches those of "
                "GOOGLE_ADS_CUSTOMER_IDS within ADS_SYNC_HISTORY_DAYS; backfill_ads fetches any), "
                "or were taken over by a newer run, which fetches them"
            )
        self.stdout.write("\n".join(lines))
