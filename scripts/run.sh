#!/usr/bin/env bash
# `make run`: prepare the database once, then web, worker and beat under one process manager.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-inventory_project.settings.local}"
PORT="${PORT:-8000}"
export PORT

.venv/bin/python manage.py collectstatic --noinput --verbosity 0
.venv/bin/python manage.py bootstrap_demo

cat <<MSG

  API       http://127.0.0.1:${PORT}/api/products
  API docs  http://127.0.0.1:${PORT}/api/docs/
  Admin     http://127.0.0.1:${PORT}/admin/
  Health    http://127.0.0.1:${PORT}/readyz

  Ctrl-C stops everything.

MSG
exec .venv/bin/honcho start -f Procfile
