"""Products API benchmark: `make bench` (or `.venv/bin/python bench/products_api.py`).

Seeds 1,000,000 products into a database of its own, starts gunicorn under the production
settings (sending `X-Forwarded-Proto: https` as the TLS proxy would, rate limits off), and drives
it with wrk. A bare Django view returning constant JSON (`/healthz`), served by the same server
with the same settings in the same run, is the floor every figure is divided by. The run is
repeated with `PRODUCT_CACHE_ENABLED=false` for the uncached figures. A concurrent stale-read
check runs against the cached server; any stale read makes the script exit non-zero.

The table is printed and written into docs/benchmarks.md between markers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from _doc import write_section

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
WRK_DIR = Path(__file__).resolve().parent / "wrk"
BEGIN, END = "<!-- products-bench:begin -->", "<!-- products-bench:end -->"

DB_NAME = "inventory_bench"
PORT = 18510
ROWS = 1_000_000
HOT_SET = 10_000
CONNECTIONS = 64  # wrk's


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    ratio: float = 1.0  # to the floor of the same round; the median over rounds in the table
    requests: int = 0


# --rate-limits: every request counted, as in production, at rates no run reaches.
RATE_LIMITS_ON = {
    "RATELIMIT_ENABLED": "true",
    "RATELIMIT_READS": "1000000000/m",
    "RATELIMIT_WRITES": "1000000000/m",
}


def base_env(cache_enabled: bool, *, rate_limits: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    # Each worker takes at most its share of wrk's connections (plus its threads, which gthread
    # keeps out of the keep-alive count), so every run spreads them over every worker. Uncapped,
    # a run's 64 new connections could all land on one worker: a floor run measured 817 req/s,
    # one worker busy and one idle, between runs at 1,950-2,400.
    workers = int(env.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
    threads = int(env.get("GUNICORN_THREADS") or 4)
    worker_connections = -(-CONNECTIONS // workers) + threads
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "inventory_project.settings.production",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
            "CACHE_KEY_PREFIX": "inv-bench",
            "RATELIMIT_ENABLED": "false",
            # wrk is the TLS proxy here: its X-Forwarded-Proto is read (a value from the shell
            # would make every request a redirect).
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
            "PRODUCT_CACHE_ENABLED": "true" if cache_enabled else "false",
            "PORT": str(PORT),
            "HOST": "127.0.0.1",
            "GUNICORN_ACCESSLOG": "",
            "LOG_LEVEL": "WARNING",
            "GUNICORN_WORKER_CONNECTIONS": str(worker_connections),
            **(RATE_LIMITS_ON if rate_limits else {}),
        }
    )
    return env


def manage(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run(  # noqa: S603
        [PY, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def prepare_database(env: dict[str, str]) -> str:
    """Create, migrate and seed the bench database (reused across runs); return a write token."""
    manage("ensure_database", env=env)
    manage("migrate", "--noinput", env=env)
    count = int(
        manage(
            "shell",
            "--no-imports",
            "-c",
            "from products.models import Product; print(Product.objects.count())",
            env=env,
        ).strip()
    )
    if count != ROWS:
        started = time.monotonic()
        manage("seed_products", "--count", str(ROWS), env=env)
        print(f"seeded {ROWS:,} products in {time.monotonic() - started:.1f}s", flush=True)
    manage("collectstatic", "--noinput", env=env)
    token = manage(
        "shell",
        "--no-imports",
        "-c",
        (
            "from django.contrib.auth.models import User, Permission;"
            "from rest_framework.authtoken.models import Token;"
            "u, _ = User.objects.get_or_create(username='bench');"
            "u.user_permissions.set(Permission.objects.filter(content_type__app_label='products'));"
            "print(Token.objects.get_or_create(user=u)[0].key)"
        ),
        env=env,
    ).strip()
    return token


class Server:
    def __init__(self, env: dict[str, str], app: str = "inventory_project.wsgi") -> None:
        """gunicorn serving `app` (a WSGI module of the project or of bench/) with `env`."""
        self.env = env
        self.app = app
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(  # noqa: S603
            [
                str(ROOT / ".venv" / "bin" / "gunicorn"),
                self.app,
                "--config",
                "inventory_project/gunicorn.conf.py",
                "--pythonpath",
                str(Path(__file__).resolve().parent),
            ],
            cwd=ROOT,
            env=self.env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, _ = http_get("/healthz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not come up")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=30)


def http_get(path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        conn.request("GET", path, headers={"X-Forwarded-Proto": "https"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def ensure_wrk() -> None:
    if shutil.which("wrk") is None:
        # A fresh machine or container has no package lists yet: "Unable to locate package".
        subprocess.run(["apt-get", "update", "-qq"], check=True)  # noqa: S607
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)  # noqa: S607


def wrk(name: str, script: str, path: str, seconds: int, extra_env: dict[str, str]) -> Result:
    env = dict(os.environ, WRK_LUA_DIR=str(WRK_DIR), **extra_env)
    url = f"http://127.0.0.1:{PORT}{path}"
    # A 10 s timeout (wrk's default is 2 s), so slow scenarios show their latency, not errors.
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    cmd += ["-s", str(WRK_DIR / script), url]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout  # noqa: S603
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    data = json.loads(line.removeprefix("WRK_JSON "))
    return Result(
        name=name,
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"],
        requests=data["requests"],
    )


def scenarios(token: str, seconds: int, rounds: int, cached: bool, only: list[str]) -> list[Result]:
    """Run every scenario `rounds` times, interleaved, each round with its own floor.

    The machine is shared and its speed drifts by tens of percent within minutes: a figure is
    the median over rounds, and its ratio the median of the per-round ratios to the floor
    measured minutes, not a whole run, before it.
    """
    suffix = "" if cached else " (uncached)"
    hot = {"ID_MAX": str(HOT_SET)}
    plan = [
        ("floor: bare Django view", "get.lua", "/healthz", {}),
        ("detail, random ids", "detail.lua", "/", {"ID_MAX": str(ROWS)}),
        ("detail, 10k hot set", "detail.lua", "/", hot),
        ("list page 1", "get.lua", "/api/products?page=1&limit=20", {}),
        ("list page 45,000", "get.lua", "/api/products?page=45000&limit=20", {}),
        ("keyset page at 900,000", "get.lua", "/api/products?after_id=900000&limit=20", {}),
        (
            "search steel 100-200",
            "get.lua",
            "/api/products/search?name=steel&min_price=100&max_price=200",
            {},
        ),
        ("80% GET / 20% PUT, hot set", "mix.lua", "/", {**hot, "TOKEN": token}),
        # Not a target: what one write costs, which bounds the mix above.
        ("PUT only, hot set", "mix.lua", "/", {**hot, "TOKEN": token, "PUT_RATIO": "1"}),
    ]
    if only:  # the floor always runs: every figure is a ratio to it
        plan = plan[:1] + [step for step in plan[1:] if any(part in step[0] for part in only)]
    if cached:
        warm_hot_set()
    runs: dict[str, list[tuple[Result, float]]] = {name: [] for name, *_ in plan}
    for round_ in range(rounds):
        floor = 0.0
        for name, script, path, extra in plan:
            if round_ == 0:  # fills caches and connection pools: measure steady state
                wrk(name, script, path, 2, extra)
            result = wrk(name + suffix, script, path, seconds, extra)
            floor = floor or result.rps
            runs[name].append((result, result.rps / floor))
            print(
                f"  [{round_ + 1}/{rounds}] {result.name:<42} {result.rps:>9.0f} req/s"
                f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                f"  errors {result.errors}  x{result.rps / floor:.3f}",
                flush=True,
            )
    return [_median(name + suffix, runs[name]) for name, *_ in plan]


def _median(name: str, runs: list[tuple[Result, float]]) -> Result:
    return Result(
        name=name,
        rps=statistics.median(r.rps for r, _ in runs),
        p50_ms=statistics.median(r.p50_ms for r, _ in runs),
        p99_ms=statistics.median(r.p99_ms for r, _ in runs),
        errors=sum(r.errors for r, _ in runs),
        ratio=statistics.median(ratio for _, ratio in runs),
    )


def warm_hot_set(passes: int = 3) -> None:
    """Read every product of the hot set a few times, so its figures measure a warm cache.

    Each gunicorn process keeps its own near cache, and which process answers a connection is
    up to the kernel: a few passes over many connections reach every process with every id.
    """

    def read(start: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        for _ in range(passes):
            for pid in range(start, HOT_SET + 1, 16):
                conn.request("GET", f"/api/products/{pid}", headers={"X-Forwarded-Proto": "https"})
                conn.getresponse().read()
            conn.close()  # the next pass may land on another process

    threads = [threading.Thread(target=read, args=(n,)) for n in range(1, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def stale_read_check(token: str, seconds: float) -> tuple[int, int, int]:
    """Readers hammer a few products while one writer per product raises its stock level.

    Every PUT writes a strictly larger stock level, so a GET that *starts* after a PUT's 2xx and
    returns a smaller stock level than that PUT wrote is a stale read. Returns
    (writes, reads, stale reads).
    """
    ids = list(range(1, 9))
    acked: dict[int, list[tuple[float, int]]] = {pid: [] for pid in ids}
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    counts = {"writes": 0, "reads": 0, "stale": 0}
    base = 1_000_000 + int(time.time()) % 1_000_000 * 1000

    def writer(pid: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        level = base
        while time.monotonic() < stop:
            level += 1
            body = json.dumps({"price": "10.00", "stock_level": level})
            conn.request(
                "PUT",
                f"/api/products/{pid}",
                body=body,
                headers={
                    "X-Forwarded-Proto": "https",
                    "Content-Type": "application/json",
                    "Authorization": f"Token {token}",
                },
            )
            response = conn.getresponse()
            response.read()
            if 200 <= response.status < 300:
                with lock:
                    acked[pid].append((time.monotonic(), level))
                    counts["writes"] += 1
            time.sleep(0.01)

    def reader(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        i = offset
        while time.monotonic() < stop:
            pid = ids[i % len(ids)]
            i += 1
            started = time.monotonic()
            conn.request("GET", f"/api/products/{pid}", headers={"X-Forwarded-Proto": "https"})
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                continue
            level = json.loads(payload)["stock_level"]
            with lock:
                counts["reads"] += 1
                newest_acked = max((lvl for at, lvl in acked[pid] if at < started), default=None)
                if newest_acked is not None and level < newest_acked:
                    counts["stale"] += 1

    threads = [threading.Thread(target=writer, args=(pid,)) for pid in ids]
    threads += [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts["writes"], counts["reads"], counts["stale"]


# Issue #5's targets, as ratios to the floor: (scenario, minimum, how it reads in the table).
TARGETS = {
    "detail, 10k hot set": (1.5, ">= 1.5"),
    "list page 1": (1.5, ">= 1.5"),
    "80% GET / 20% PUT, hot set": (0.8, ">= 0.8"),
    "list page 45,000 (uncached)": (0.05, ">= 0.05"),
    "search steel 100-200 (uncached)": (0.25, ">= 0.25"),
}
KEYSET, LIST_1 = "keyset page at 900,000 (uncached)", "list page 1 (uncached)"


def _target(result: Result, by_name: dict[str, Result]) -> str:
    if result.name == KEYSET and LIST_1 in by_name:
        minimum, text = by_name[LIST_1].ratio / 2, "within 2x of list page 1"
    elif result.name in TARGETS:
        minimum, text = TARGETS[result.name]
    else:
        return ""
    return f"{text}: {'met' if result.ratio >= minimum else '**not met**'}"


def render(
    cached: list[Result],
    uncached: list[Result],
    stale: tuple[int, int, int],
    rounds: int,
    *,
    rate_limits: bool = False,
) -> str:
    rows = [
        "| scenario | req/s | p50 ms | p99 ms | errors | x floor | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    by_name = {r.name: r for r in cached + uncached}
    for r in cached + uncached:
        rows.append(
            f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} "
            f"| {r.ratio:.3f} | {'' if rate_limits else _target(r, by_name)} |"
        )
    writes, reads, stale_reads = stale
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python " + (
        platform.python_version()
    )
    return "\n".join(
        [
            BEGIN,
            "## Products API",
            "",
            f"Machine: {machine}. Command: `make bench` (`bench/products_api.py`).",
            f"{ROWS:,} products; gunicorn with `inventory_project/gunicorn.conf.py` under the "
            "production settings, "
            + ("rate limits on (rates no run reaches)" if rate_limits else "rate limits off")
            + f"; wrk -t1 -c{CONNECTIONS} on the same machine, "
            "each gunicorn worker taking at most its share of the connections (plus its threads: "
            "`GUNICORN_WORKER_CONNECTIONS`), so that no run leaves a worker idle. "
            "The floor is a bare Django view returning constant JSON (`/healthz`) on the same "
            f"server. Every scenario ran {rounds} times, interleaved, each round starting with "
            "its own floor: req/s and latencies are medians over the rounds, `x floor` the "
            "median of the per-round ratios. The uncached rows (`PRODUCT_CACHE_ENABLED=false`) "
            "come from a second server with its own floors.",
            "",
            *rows,
            "",
            f"Stale-read check: {writes:,} acknowledged writes, {reads:,} reads, "
            f"**{stale_reads} stale reads**.",
            END,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every scenario")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only scenarios whose name contains this (repeatable); docs are not written",
    )
    parser.add_argument("--cached-only", action="store_true", help="skip the uncached server")
    parser.add_argument(
        "--rate-limits",
        action="store_true",
        help="count every request as production does, at rates no run reaches (what counting "
        "costs); docs are not written",
    )
    args = parser.parse_args()
    ensure_wrk()
    token = prepare_database(base_env(cache_enabled=True))
    print("cached server:", flush=True)
    with Server(base_env(cache_enabled=True, rate_limits=args.rate_limits)):
        cached = scenarios(token, args.seconds, args.rounds, cached=True, only=args.only)
        stale = stale_read_check(token, seconds=15)
        print(f"  stale-read check: writes={stale[0]} reads={stale[1]} stale={stale[2]}")
    uncached: list[Result] = []
    if not args.cached_only:
        print("uncached server:", flush=True)
        with Server(base_env(cache_enabled=False, rate_limits=args.rate_limits)):
            uncached = scenarios(token, args.seconds, args.rounds, cached=False, only=args.only)

    table = render(cached, uncached, stale, args.rounds, rate_limits=args.rate_limits)
    print(table)
    if not args.only and not args.cached_only and not args.rate_limits:
        write_section(table, BEGIN, END)
    return 1 if stale[2] else 0


if __name__ == "__main__":
    sys.exit(main())
