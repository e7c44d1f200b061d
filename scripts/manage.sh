#!/usr/bin/env bash
# manage.py with .env's settings, as `make run`'s processes see them: the README's commands.
# `.venv/bin/python manage.py` alone reads only the shell's environment, so with a .env that
# names another database (or port, queue, cache prefix) it works on the wrong one.
# Relative paths in the arguments (--out, --output-dir) stay relative to where it is run.
set -euo pipefail
root="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
pushd "$root" >/dev/null
source scripts/dotenv.sh
popd >/dev/null
exec "$root/.venv/bin/python" "$root/manage.py" "$@"
