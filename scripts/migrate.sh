#!/usr/bin/env bash
# `make migrate`, and `make run` once its ports are checked: start the services if they are
# down, create the database if it is missing, migrate. Reads .env as every step of `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/dotenv.sh
scripts/ensure_services.sh
.venv/bin/python manage.py ensure_database
.venv/bin/python manage.py migrate --noinput
