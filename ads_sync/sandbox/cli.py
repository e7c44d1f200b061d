"""The sandbox's command line: `python -m ads_sync.sandbox` and `manage.py google_ads_sandbox`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from ads_sync.sandbox import data
from ads_sync.sandbox.server import Sandbox


class SandboxError(Exception):
    """What stops the sandbox from starting, in one line (a port in use, a bad folder)."""


def port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (1-65535): {value!r}")
    return number


def customer_ids(value: str) -> tuple[str, ...]:
    ids = tuple(c.strip().replace("-", "") for c in value.split(",") if c.strip())
    bad = [c for c in ids if not (len(c) == 10 and c.isascii() and c.isdigit())]
    if bad or not ids:
        raise argparse.ArgumentTypeError(f"customer ids are ten digits: {value!r}")
    return ids


def faults(value: str) -> dict[str, Any]:
    try:
        loaded = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise argparse.ArgumentTypeError("a JSON object of fault settings")
    return loaded


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--grpc-port",
        type=port,
        default=50051,
        help="the API's TLS gRPC port (default: %(default)s)",
    )
    parser.add_argument(
        "--oauth-port",
        type=port,
        default=8089,
        help="the OAuth token endpoint's and /_sandbox/*'s port (default: %(default)s)",
    )
    parser.add_argument(
        "--state-dir",
        default=".sandbox",
        help="where the self-signed certificate is kept (reused across restarts)",
    )
    parser.add_argument(
        "--customers",
        type=customer_ids,
        default=tuple(data.DEFAULT_CUSTOMERS),
        help="comma separated customer ids to advertise in the printed environment",
    )
    parser.add_argument("--calls-file", default="", help="also append every call here (JSONL)")
    parser.add_argument(
        "--faults", type=faults, default={}, help='initial faults as JSON, e.g. {"latency_s": 0.2}'
    )
    parser.add_argument(
        "--env-file", default="", help="also write the environment (KEY=VALUE lines) here"
    )
    parser.add_argument(
        "--env-only",
        action="store_true",
        help="create the certificate, print (and write) the environment, and exit",
    )


def run(options: dict[str, Any], out: Any = sys.stdout) -> int:
    """Serve until stopped; raises SandboxError for what stops it from starting."""
    try:
        sandbox = Sandbox(
            host=options["host"],
            grpc_port=options["grpc_port"],
            oauth_port=options["oauth_port"],
            state_dir=Path(options["state_dir"]),
            customers=tuple(options["customers"]),
            calls_file=Path(options["calls_file"]) if options["calls_file"] else None,
        )
        sandbox.state.configure(options["faults"])
        # `NAME=""`: an empty value that scripts/dotenv.sh sets (a bare `NAME=` sets nothing).
        lines = [f"{key}={value}" if value else f'{key}=""' for key, value in sandbox.env().items()]
        if options["env_file"]:
            Path(options["env_file"]).write_text("".join(f"{line}\n" for line in lines))
        if options["env_only"]:
            out.write("".join(f"{line}\n" for line in lines))
            return 0
        sandbox.start()
    except ValueError as exc:  # a fault setting
        raise SandboxError(f"--faults: {exc}") from exc
    except (OSError, RuntimeError) as exc:  # a folder, a file, a port (gRPC: RuntimeError)
        raise SandboxError(str(exc)) from exc
    out.write("Google Ads sandbox is up. Point the app at it with:\n\n")
    for line in lines:
        out.write(f"  export {line}\n")
    out.write(f"\n  calls: http://{sandbox.host}:{sandbox.oauth_port}/_sandbox/calls\n")
    out.flush()
    signal.signal(signal.SIGTERM, lambda *_: sandbox.stop())
    try:
        sandbox.wait()
    except KeyboardInterrupt:
        sandbox.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ads_sync.sandbox", description=__doc__)
    add_arguments(parser)
    try:
        return run(vars(parser.parse_args(argv)))
    except SandboxError as exc:
        parser.exit(1, f"{parser.prog}: {exc}\n")
