"""What the two unmet products targets would take: `make bench` (or run this file alone).

Issue #5 asks for the uncached search at 0.25x the floor and the 80/20 mix at 0.8x. This
measures, beside the floor and in the same run, what bounds each. Every round runs wrk against
the cached server (`bench/products_api.py`'s setup) for the floor, hot detail and PUT only, then
two loops in this process, with the server idle:

- The search's PostgreSQL work. `selectors.product_search` sends the statements the view sends
  for `name=steel&min_price=100&max_price=200`, and the PostgreSQL processes' CPU (`/proc`) is
  divided by the searches. Two cores cannot answer more searches per second than they can run
  that work, whatever the Python side costs: cores / (PostgreSQL CPU per search) is the most
  the uncached search can reach, printed as a ratio to the floor.
- The write's round trips. What every acknowledged write must send, from raw psycopg and
  redis-py with no framework: the token query of `inventory_project/authentication.py`, the
  `UPDATE ... RETURNING` of `services.product_update`, the cache's invalidation script and the
  PING that fences it. The script bumps counters of its own: bumping the real ones this fast
  would send the idle servers' near caches pushes faster than they drain them, and they would
  start over empty. Its CPU (this process, PostgreSQL, Redis) sits beside the API's PUT
  (gunicorn, PostgreSQL, Redis during wrk's PUT-only run) and beside the most a PUT may cost
  for the mix to reach 0.8x: from the floor and hot-detail rates, if each request costs what
  it costs alone, 0.8 x floor = 1 / (0.8 / hot + 0.2 / put) gives the PUT rate needed, and the
  cores give its CPU.

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
CORES = os.cpu_count() or 1
MIX_TARGET, PUT_SHARE = 0.8, 0.2
GROUPS: dict[str, Callable[[str], bool]] = {
    "gunicorn": lambda cmd: "bin/gunicorn" in cmd,
    "PostgreSQL": lambda cmd: cmd.startswith("postgres"),
    "Redis": lambda cmd: cmd.startswith("redis-server"),
}


def cpu_seconds() -> dict[str, float]:
    """User + system CPU of every process in each group, from /proc."""
    ticks = dict.fromkeys(GROUPS, 0)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        for group, matches in GROUPS.items():
            if matches(cmd):
                ticks[group] += int(fields[11]) + int(fields[12])
    hz = os.sysconf("SC_CLK_TCK")
    return {group: n / hz for group, n in ticks.items()}


def per_op(before: dict[str, float], after: dict[str, float], ops: float) -> dict[str, float]:
    return {group: (after[group] - before[group]) / ops * 1000 for group in GROUPS}


def timed_loop(step: Callable[[], object], count: int) -> tuple[float, dict[str, float]]:
    """(this process's CPU ms per step, each group's CPU ms per step)."""
    for _ in range(count // 10):
        step()  # prepared statements, warm caches
    before, mine = cpu_seconds(), time.process_time()
    for _ in range(count):
        step()
    own = (time.process_time() - mine) / count * 1000
    return own, per_op(before, cpu_seconds(), count)


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def search_step() -> Callable[[], object]:
    from products import selectors

    filters = selectors.ProductFilters(
        name="steel", min_price=Decimal("100"), max_price=Decimal("200")
    )
    return lambda: selectors.product_search(filters=filters, page=1, limit=20)


def write_step(token: str) -> Callable[[], object]:
    """The round trips of one acknowledged write, nothing else."""
    import psycopg
    import redis

    from inventory_project import authentication
    from products import cache
    from products.models import Product

    columns = ", ".join(str(field.column) for field in Product._meta.concrete_fields)
    update = (
        f"UPDATE {Product._meta.db_table} SET price = %s, stock_level = %s, updated_at = now()"  # noqa: S608
        f" WHERE id = %s RETURNING {columns}"
    )
    database = psycopg.connect(
        f"postgresql://postgres@127.0.0.1:5432/{api.DB_NAME}", autocommit=True, prepare_threshold=5
    )
    client = redis.Redis(host="127.0.0.1", port=6379)
    invalidate = client.register_script(cache._INVALIDATE)
    rng = random.Random(5)  # noqa: S311 - which product to write, not a secret

    def step() -> None:
        # Products outside the hot set: the next round's hot detail must find its cache warm.
        product_id = rng.randint(api.ROWS // 2, api.ROWS // 2 + api.HOT_SET)
        database.execute(authentication._sql(), [token]).fetchone()
        price = Decimal(rng.randint(100, 50_000)) / 100
        database.execute(update, [price, rng.randint(0, 500), product_id]).fetchone()
        keys = [cache._key(f"bounds:ver:{product_id}"), cache._key("bounds:gen")]
        invalidate(keys=keys, args=[cache.COUNTER_TTL_S])
        client.ping()

    return step


def fmt(cpu: dict[str, float], own: float | None = None) -> str:
    parts = [f"{own:.2f} this process"] if own is not None else []
    parts += [f"{value:.2f} {group}" for group, value in cpu.items() if value >= 0.005]
    return f"{(own or 0) + sum(cpu.values()):.2f} ms ({', '.join(parts)})"


def measure_round(
    token: str, seconds: int, first: bool, search: Callable[[], object], write: Callable[[], object]
) -> dict[str, float | str]:
    plans = {
        "floor": ("get.lua", "/healthz", {}),
        "hot": ("detail.lua", "/", {"ID_MAX": str(api.HOT_SET)}),
        "put": ("mix.lua", "/", {"ID_MAX": str(api.HOT_SET), "TOKEN": token, "PUT_RATIO": "1"}),
    }
    rates: dict[str, float] = {}
    put_cpu: dict[str, float] = {}
    for name, (script, path, extra) in plans.items():
        if first:
            api.wrk(name, script, path, 2, extra)
        before = cpu_seconds()
        result = api.wrk(name, script, path, seconds, extra)
        rates[name] = result.rps
        if name == "put":
            put_cpu = per_op(before, cpu_seconds(), result.rps * seconds)
    search_own, search_cpu = timed_loop(search, 1500)
    write_own, write_cpu = timed_loop(write, 3000)
    floor, hot = rates["floor"], rates["hot"]
    # 0.8 x floor = 1 / (0.8 / hot + 0.2 / put), each request costing what it costs alone.
    spare = 1 / (MIX_TARGET * floor) - (1 - PUT_SHARE) / hot
    put_needed = PUT_SHARE / spare if spare > 0 else float("inf")
    search_max = CORES / (search_cpu["PostgreSQL"] / 1000)
    print(
        f"  floor {floor:,.0f} req/s, hot {hot:,.0f} ({hot / floor:.3f}x), PUT {rates['put']:,.0f}"
        f" ({rates['put'] / floor:.3f}x, {fmt(put_cpu)}); search PostgreSQL"
        f" {search_cpu['PostgreSQL']:.2f} ms -> at most {search_max / floor:.3f}x; PUT needed"
        f" {put_needed:,.0f} req/s; write round trips {fmt(write_cpu, write_own)}",
        flush=True,
    )
    return {
        "floor": floor,
        "hot": hot / floor,
        "put": rates["put"] / floor,
        "put_cpu": sum(put_cpu.values()),
        "put_cpu_text": fmt(put_cpu),
        "search_pg": search_cpu["PostgreSQL"],
        "search_py": search_own,
        "search_max": search_max / floor,
        "put_needed": put_needed / floor,
        "put_budget": CORES / put_needed * 1000,
        "write_cpu": write_own + sum(write_cpu.values()),
        "write_cpu_text": fmt(write_cpu, write_own),
    }


def render(rounds: list[dict[str, float | str]]) -> str:
    def median(key: str) -> float:
        return statistics.median(float(r[key]) for r in rounds)

    def at_median(key: str, text_key: str) -> str:
        ordered = sorted(rounds, key=lambda r: float(r[key]))
        return str(ordered[len(ordered) // 2][text_key])

    rows = [
        ("floor: bare Django view", f"{median('floor'):,.0f} req/s", ""),
        ("detail, 10k hot set", f"{median('hot'):.3f}x", "wrk, cached server"),
        ("PUT only, hot set", f"{median('put'):.3f}x", at_median("put_cpu", "put_cpu_text")),
        (
            "search: PostgreSQL CPU per search",
            f"{median('search_pg'):.2f} ms",
            f"`selectors.product_search` in-process ({median('search_py'):.2f} ms of Python)",
        ),
        (
            "search uncached: the most it can reach",
            f"**{median('search_max'):.3f}x**",
            f"{CORES} cores / PostgreSQL's CPU per search, against a target of 0.25x",
        ),
        (
            "mix at 0.8x: the PUT rate it needs",
            f"{median('put_needed'):.3f}x" if median("put_budget") else "unreachable",
            f"at most {median('put_budget'):.2f} ms of CPU per PUT on {CORES} cores",
        ),
        (
            "a write's round trips, no framework",
            f"{median('write_cpu'):.2f} ms",
            at_median("write_cpu", "write_cpu_text"),
        ),
    ]
    lines = ["| measure | value | how |", "| --- | ---: | --- |"]
    lines += [f"| {name} | {value} | {how} |" for name, value, how in rows]
    return "\n".join(
        [
            BEGIN,
            "### Products: what the unmet targets would take",
            "",
            f"Command: `make bench` (`bench/products_bounds.py`), {len(rounds)} rounds, medians;"
            " CPU from `/proc` (user + system) of the gunicorn, PostgreSQL and Redis processes.",
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
    args = parser.parse_args()
    api.ensure_wrk()
    env = api.base_env(cache_enabled=True)
    token = api.prepare_database(env)
    django_setup(env)
    search, write = search_step(), write_step(token)
    rounds = []
    with api.Server(env):
        api.warm_hot_set()
        for n in range(args.rounds):
            rounds.append(measure_round(token, args.seconds, n == 0, search, write))
    table = render(rounds)
    print(table)
    if not args.no_docs:
        write_section(table, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
