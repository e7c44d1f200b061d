"""What the two unmet products targets would take: `make bench` (or run this file alone).

Issue #5 asks for the uncached search at 0.25x the floor and the 80/20 mix at 0.8x. This
measures, beside the floor and in the same run, what bounds each. Every round runs wrk against
the cached server (`bench/products_api.py`'s setup, serving `bench/_bare.py`, which hands every
request but its own paths to the app) for the floor, the mix's reads (`mix.lua` with no PUT),
PUT only and the mix; then PUT only and the mix again, with each PUT sent to `bench/_bare.py`'s
write (the app's token query, service, invalidation and write-through, with no framework around
them); then two loops in this process, with the server idle:

- The search's PostgreSQL work. `selectors.product_search` sends the statement the view sends
  for `name=steel&min_price=100&max_price=200` (repeated, planned once: kept as the server's
  connections keep it), and the CPU of the PostgreSQL backend serving it (`/proc`, that one
  process) is divided by the searches. Two cores cannot answer more
  searches per second than they can run that work, whatever the Python side costs:
  cores / (PostgreSQL CPU per search) is the most the uncached search can reach, printed as a
  ratio to the floor.
- The write's round trips. What every acknowledged write sends, from raw psycopg and the
  app's redis-py client, with no framework around them: the token query of
  `inventory_project/authentication.py`, the `UPDATE ... RETURNING` of
  `services.product_update`, the cache's invalidation script and the
  PING that fences it. Counted: this process, the PostgreSQL backend serving it, Redis. The
  script bumps counters of its own: bumping the real ones this fast would send the idle
  servers' near caches pushes faster than they drain them, and they would start over empty; so
  the pushes a real write sends are not counted. The products written (outside the hot set)
  are invalidated for real once every round is done.

A last phase measures the search's ceiling by experiment rather than by arithmetic. A second
server, cache off, serves `bench/_bare.py`, whose two search paths answer the search from the
app's own selector with no framework around it (no query serializer, throttle, links, ETag or
headers), and the same page from a generic plan of a statement whose keys were computed once
in Python, which the app cannot send (the app's own statement is kept too, with PostgreSQL's
keys folded into its plan). Each
round runs wrk on the floor, the API's search and both paths, one after the other.

The wrk rates beside the floor's are shown as the median of their per-round ratios to their
round's floor.

The mix's budget: if each request costs what it costs alone, 0.8 x floor = 1 / (0.8 / reads +
0.2 / puts) gives the PUT rate the mix needs, and cores / that rate the share of the cores one
PUT may take (wrk's part included, as in every rate here). The API's PUT is shown the same way
(cores / its rate), with the CPU of the server's processes during its run beside it.

The table is printed and written into docs/benchmarks.md between markers.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import products_api as api
from _doc import write_section

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- products-bounds:begin -->", "<!-- products-bounds:end -->"
CORES = len(os.sched_getaffinity(0))
MIX_TARGET, PUT_SHARE = 0.8, 0.2
GROUPS: dict[str, Callable[[str], bool]] = {
    "gunicorn": lambda cmd: "bin/gunicorn" in cmd,
    "PostgreSQL": lambda cmd: cmd.startswith("postgres"),
    "Redis": lambda cmd: cmd.startswith("redis-server"),
}
# /proc/<pid>/stat after the command name: state is field 0, utime 11, stime 12, starttime 19.
UTIME, STIME, STARTTIME = 11, 12, 19

Snapshot = dict[int, tuple[str, str, int]]  # pid -> (start time, group, CPU ticks)


def snapshot() -> Snapshot:
    """Each grouped process's CPU (user + system), from /proc."""
    found: Snapshot = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        for group, matches in GROUPS.items():
            if matches(cmd):
                ticks = int(fields[UTIME]) + int(fields[STIME])
                found[int(pid)] = (fields[STARTTIME], group, ticks)
    return found


def cpu_ms(
    before: Snapshot, after: Snapshot, ops: float, only_pids: set[int] | None = None
) -> dict[str, float]:
    """CPU ms per operation by group, process by process (a process that ended is missed).

    With `only_pids`, PostgreSQL counts just those backends: the one serving this process.
    """
    used = dict.fromkeys(GROUPS, 0)
    for pid, (started, group, ticks) in after.items():
        if group == "PostgreSQL" and only_pids is not None and pid not in only_pids:
            continue
        then = before.get(pid)
        used[group] += ticks - (then[2] if then is not None and then[0] == started else 0)
    hz = os.sysconf("SC_CLK_TCK")
    return {group: n / hz / ops * 1000 for group, n in used.items()}


def timed_loop(
    step: Callable[[], object], count: int, backend: int
) -> tuple[float, dict[str, float]]:
    """(this process's CPU ms per step, each group's CPU ms per step)."""
    for _ in range(count // 10):
        step()  # prepared statements, warm caches
    before, mine = snapshot(), time.process_time()
    for _ in range(count):
        step()
    own = (time.process_time() - mine) / count * 1000
    return own, cpu_ms(before, snapshot(), count, only_pids={backend})


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


class Search:
    def __init__(self) -> None:
        from django.db import connection

        from products import selectors

        filters = selectors.ProductFilters(
            name="steel", min_price=Decimal("100"), max_price=Decimal("200")
        )
        self.step = lambda: selectors.product_search(filters=filters, page=1, limit=20)
        self.connection = connection

    def backend(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return int(cursor.fetchone()[0])


class Write:
    """The round trips of one acknowledged write, nothing else."""

    def __init__(self, token: str) -> None:
        import psycopg

        from inventory_project import authentication
        from products import cache
        from products.models import Product

        columns = ", ".join(str(field.column) for field in Product._meta.concrete_fields)
        update = (
            f"UPDATE {Product._meta.db_table} SET price = %s, stock_level = %s,"  # noqa: S608
            f" updated_at = now() WHERE id = %s RETURNING {columns}"
        )
        # The bench's own database and the app's Redis client and script, as the server has them.
        self.database = psycopg.connect(
            os.environ["DATABASE_URL"], autocommit=True, prepare_threshold=5
        )
        client = cache._redis()
        invalidate = cache._script("invalidate", cache._INVALIDATE)
        rng = random.Random(5)  # noqa: S311 - which product to write, not a secret
        self.written: set[int] = set()

        def step() -> None:
            # Products outside the hot set: the next round's reads must find their cache warm.
            product_id = rng.randint(api.ROWS // 2, api.ROWS // 2 + api.HOT_SET)
            self.database.execute(authentication._sql(), [token]).fetchone()
            price = Decimal(rng.randint(100, 50_000)) / 100
            self.database.execute(update, [price, rng.randint(0, 500), product_id]).fetchone()
            keys = [cache._key(f"bounds:ver:{product_id}"), cache._key("bounds:gen")]
            invalidate(keys=keys, args=[cache.COUNTER_TTL_S])
            client.ping()
            self.written.add(product_id)

        self.step = step
        self.invalidate_written = lambda: cache.invalidate(sorted(self.written))

    def backend(self) -> int:
        row = self.database.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return int(row[0])


def measure_round(
    token: str, seconds: int, first: bool, search: Search, write: Write
) -> dict[str, float]:
    hot = {"ID_MAX": str(api.HOT_SET), "TOKEN": token}
    bare = {**hot, "PUT_PATH": BARE_PUT}
    plans = {
        "floor": ("get.lua", "/healthz", {}),
        "reads": ("mix.lua", "/", {**hot, "PUT_RATIO": "0"}),
        "put": ("mix.lua", "/", {**hot, "PUT_RATIO": "1"}),
        "mix": ("mix.lua", "/", hot),
        "bare_put": ("mix.lua", "/", {**bare, "PUT_RATIO": "1"}),
        "bare_mix": ("mix.lua", "/", bare),
    }
    rates: dict[str, float] = {}
    put_cpu: dict[str, float] = {}
    for name, (script, path, extra) in plans.items():
        if first:
            api.wrk(name, script, path, 2, extra)
        before = snapshot()
        result = api.wrk(name, script, path, seconds, extra)
        if result.errors:
            raise RuntimeError(f"{name}: {result.errors} errors or non-2xx answers")
        rates[name] = result.rps
        if name == "put":
            put_cpu = cpu_ms(before, snapshot(), result.requests)
    time.sleep(1)  # the PUTs' checkpoint and WAL work is not the loops'
    search_own, search_cpu = timed_loop(search.step, 1500, search.backend())
    write_own, write_cpu = timed_loop(write.step, 3000, write.backend())
    print(
        f"  floor {rates['floor']:,.0f} req/s, reads {rates['reads']:,.0f}, PUT"
        f" {rates['put']:,.0f} ({sum(put_cpu.values()):.2f} ms CPU), mix {rates['mix']:,.0f};"
        f" no framework: PUT {rates['bare_put']:,.0f}, mix {rates['bare_mix']:,.0f};"
        " search: PostgreSQL"
        f" {search_cpu['PostgreSQL']:.2f} ms; write round trips"
        f" {write_own + sum(write_cpu.values()):.2f} ms",
        flush=True,
    )
    return {
        "floor": rates["floor"],
        "reads": rates["reads"],
        "put": rates["put"],
        **{
            f"{name}_ratio": rates[name] / rates["floor"]
            for name in ("mix", "bare_put", "bare_mix")
        },
        **{f"put_{group}": value for group, value in put_cpu.items()},
        "search_pg": search_cpu["PostgreSQL"],
        "search_py": search_own,
        "write_py": write_own,
        **{f"write_{group}": value for group, value in write_cpu.items()},
    }


BARE_PUT = "/bare/products/"  # bench/_bare.py's PUT_PREFIX (importing it sets up the app)
SEARCH = "name=steel&min_price=100&max_price=200"
CEILING_PLANS = {
    "search": f"/api/products/search/?{SEARCH}",
    "bare": f"/bare/search?{SEARCH}",
    "kept": "/bare/search-kept",
}


def ceiling_round(seconds: int, first: bool) -> dict[str, float]:
    """The floor, the API's search and the two bench-only searches, as ratios to the floor."""
    rates: dict[str, float] = {}
    for name, path in {"floor": "/healthz", **CEILING_PLANS}.items():
        if first:
            api.wrk(name, "get.lua", path, 2, {})
        result = api.wrk(name, "get.lua", path, seconds, {})
        if result.errors:
            raise RuntimeError(f"{name}: {result.errors} errors or non-2xx answers")
        rates[name] = result.rps
    print(
        f"  floor {rates['floor']:,.0f} req/s; search: API {rates['search']:,.0f}, no framework"
        f" {rates['bare']:,.0f}, generic plan {rates['kept']:,.0f}",
        flush=True,
    )
    return {name: rates[name] / rates["floor"] for name in CEILING_PLANS}


def render(rounds: list[dict[str, float]], ceiling: list[dict[str, float]]) -> str:
    """Medians of what was measured; every derived figure is computed from those medians."""
    m = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    floor = m["floor"]
    search_max = CORES / (m["search_pg"] / 1000) / floor if m["search_pg"] > 0 else float("inf")
    # 0.8 x floor = 1 / (0.8 / reads + 0.2 / puts), each request costing what it costs alone.
    spare = 1 / (MIX_TARGET * floor) - (1 - PUT_SHARE) / m["reads"]
    if spare > 0:
        needed = PUT_SHARE / spare
        mix = (f"{needed / floor:.3f}x", f"at most {CORES / needed * 1000:.2f} ms of the cores")
    else:
        mix = ("unreachable", "even with PUTs costing nothing")
    put_cpu = {group: m[f"put_{group}"] for group in GROUPS}
    write_cpu = {"this process": m["write_py"], **{g: m[f"write_{g}"] for g in GROUPS}}

    def parts(cpu: dict[str, float]) -> str:
        shown = [f"{value:.2f} {name}" for name, value in cpu.items() if value >= 0.005]
        return f"{sum(cpu.values()):.2f} ms of CPU ({', '.join(shown)})"

    rows = [
        ("floor: bare Django view", f"{floor:,.0f} req/s", ""),
        ("reads of the mix (`mix.lua`, no PUT)", f"{m['reads'] / floor:.3f}x", ""),
        (
            "PUT only, hot set",
            f"{m['put'] / floor:.3f}x",
            f"{CORES / m['put'] * 1000:.2f} ms of the cores per PUT; {parts(put_cpu)}",
        ),
        (
            "search: PostgreSQL CPU per search",
            f"{m['search_pg']:.2f} ms",
            f"its backend, `selectors.product_search` in-process ({m['search_py']:.2f} ms of"
            " Python)",
        ),
        (
            "search uncached: the most it can reach",
            f"**{search_max:.3f}x**",
            f"{CORES} cores / PostgreSQL's CPU per search; the target is 0.25x",
        ),
        ("mix at 0.8x: the PUT rate it needs", *mix),
        ("80/20 mix, the API", f"{m['mix_ratio']:.3f}x", ""),
        (
            "PUT: the app's service, no framework around it",
            f"{m['bare_put_ratio']:.3f}x",
            "`PUT /bare/products/<id>`: token query, service, invalidation, write-through",
        ),
        (
            "80/20 mix with those PUTs",
            f"**{m['bare_mix_ratio']:.3f}x**",
            "the same reads through the app; what a write path in Python reached here",
        ),
        (
            "a write's round trips, no framework",
            f"{sum(write_cpu.values()):.2f} ms",
            parts(write_cpu),
        ),
    ]
    if ceiling:
        c = {key: statistics.median(r[key] for r in ceiling) for key in CEILING_PLANS}
        rows += [
            ("search uncached, the API (the ceiling's server)", f"{c['search']:.3f}x", ""),
            (
                "search: the app's selector, no framework around it",
                f"**{c['bare']:.3f}x**",
                "`/bare/search`: the app's statement (its plan kept), rows as Products, JSON",
            ),
            (
                "search: a generic plan, keys computed once (not the app)",
                f"{c['kept']:.3f}x",
                "`/bare/search-kept`: one generic plan, the keys from Python",
            ),
        ]
    lines = ["| measure | value | how |", "| --- | ---: | --- |"]
    lines += [f"| {name} | {value} | {how} |" for name, value, how in rows]
    return "\n".join(
        [
            BEGIN,
            "### Products: what the unmet targets would take",
            "",
            f"Command: `make bench` (`bench/products_bounds.py`), {len(rounds)} rounds: medians of"
            " each measurement, and figures derived from those medians. CPU from `/proc` (user +"
            " system); the docstring says which processes each figure counts.",
            "",
            *lines,
            END,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the search's ceiling")
    args = parser.parse_args()
    api.ensure_wrk()
    env = api.base_env(cache_enabled=True)
    token = api.prepare_database(env)
    django_setup(env)
    search, write = Search(), Write(token)
    rounds = []
    try:
        with api.Server(env, app="_bare:application"):
            api.warm_hot_set()
            for n in range(args.rounds):
                rounds.append(measure_round(token, args.seconds, n == 0, search, write))
    finally:
        write.invalidate_written()  # the loop wrote them with counters of its own
    ceiling = []
    if not args.no_ceiling:
        print("search ceiling (cache off, bench/_bare.py):", flush=True)
        with api.Server(api.base_env(cache_enabled=False), app="_bare:application"):
            for n in range(args.rounds):
                ceiling.append(ceiling_round(args.seconds, n == 0))
    table = render(rounds, ceiling)
    print(table)
    if not args.no_docs:
        write_section(table, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
