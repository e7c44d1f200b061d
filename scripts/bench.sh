#!/usr/bin/env bash
# Runs every benchmark the issues ask for; each rewrites its own section of docs/benchmarks.md
# (between its markers; the prose around them is written by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
benches=(bench/[!_]*.py)
if [ ${#benches[@]} -eq 0 ]; then
  echo "no benchmarks yet"
  exit 0
fi
for b in "${benches[@]}"; do
  echo "== $b"
  .venv/bin/python "$b"
done
