#!/usr/bin/env bash
# Runs every benchmark the issues ask for; each appends its table to docs/benchmarks.md.
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
