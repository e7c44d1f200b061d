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


def add_arguments(parser: Any) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=50051)
    parser.add_argument("--oauth-port", type=int, default=8089)
    parser.add_argument(
        "--state-dir",
        default=".sandbox",
        help="where the self-signed certificate is kept (reused across restarts)",
    )
    parser.add_argument(
        "--customers",
        default=",".join(data.DEFAULT_CUSTOMERS),
        help="comma separated customer ids to advertise in the printed environment",
    )
    parser.add_argument("--calls-file", default="", help="also append every call here (JSONL)")
    parser.add_argument(
        "--faults", default="", help='initial faults as JSON, e.g. {"latency_s": 0.2}'
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
    sandbox = Sandbox(
        host=options["host"],
        grpc_port=options["grpc_port"],
        oauth_port=options["oauth_port"],
        state_dir=Path(options["state_dir"]),
        customers=tuple(c.strip() for c in options["customers"].split(",") if c.strip()),
        calls_file=Path(options["calls_file"]) if options["calls_file"] else None,
    )
    lines = [f"{key}={value}" for key, value in sandbox.env().items()]
    if options["env_file"]:
        Path(options["env_file"]).write_text("".join(f"{line}\n" for line in lines))
    if options["env_only"]:
        out.write("".join(f"{line}\n" for line in lines))
        return 0
    if options["faults"]:
        sandbox.state.configure(json.loads(options["faults"]))
    sandbox.start()
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
    return run(vars(parser.parse_args(argv)))
