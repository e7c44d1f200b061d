#!/usr/bin/env bash
# manage.py with .env's settings, as `make run`'s processes see them: the README's commands.
# `.venv/bin/python manage.py` alone reads only the shell's environment, so with a .env that
# names another database (or port, queue, cache prefix) it works on the wrong one.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/dotenv.sh
exec .venv/bin/python manage.py "$@"
