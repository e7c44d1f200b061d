#!/usr/bin/env bash
# `make run`: check its ports, prepare the database once, then web, worker, beat, the cache
# listener and (without Google Ads credentials, and with DEBUG on) the API sandbox under one
# process manager.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every step reads .env as the processes do (they get these exported values): the database it
# prepares and the URLs it prints are the ones web uses.
source scripts/dotenv.sh
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-inventory_project.settings.local}"
PORT="${PORT:-8000}"
export PORT
# A local run has DEBUG on (its error pages show settings): listen on loopback unless told.
export HOST="${HOST:-127.0.0.1}"
export ADS_SANDBOX_GRPC_PORT="${ADS_SANDBOX_GRPC_PORT:-50051}"
export ADS_SANDBOX_OAUTH_PORT="${ADS_SANDBOX_OAUTH_PORT:-8089}"

# The local sandbox API stands in for Google Ads only when none of its credentials is set and
# the settings have DEBUG on: it took over whenever the refresh token was missing, and the
# sandbox's rows landed in the database of a deployment's settings and credentials. Some set
# and others not is a mistake: stop before anything starts. GOOGLE_ADS_DEVELOPER_TOKEN is not
# required: Google sunset developer tokens (the API ignores one, and issues none to a new
# project), but one set alone counts as some set.
credentials=(GOOGLE_ADS_CLIENT_ID GOOGLE_ADS_CLIENT_SECRET GOOGLE_ADS_REFRESH_TOKEN
  GOOGLE_ADS_CUSTOMER_IDS)
missing=()
for name in "${credentials[@]}"; do
  [[ -n "${!name:-}" ]] || missing+=("$name")
done
given=$(( ${#credentials[@]} - ${#missing[@]} ))
[[ -z "${GOOGLE_ADS_DEVELOPER_TOKEN:-}" ]] || given=$(( given + 1 ))
sandbox=false
if (( ${#missing[@]} > 0 && given > 0 )); then
  printf -v named '%s, ' "${missing[@]}"
  echo "make run: Google Ads credentials incomplete: set ${named%, } too (in .env or the" \
    "environment), or none of them for the local sandbox API." >&2
  exit 1
fi
# Demo data and the sandbox are for a development database, which is one whose settings have
# DEBUG on (local's, unless DEBUG=false): Django says, whatever the module is named. A module
# that cannot be loaded stops here, before anything is migrated; any answer but True is off.
debug=$(.venv/bin/python manage.py shell --no-imports -c \
  "from django.conf import settings; print(settings.DEBUG is True)")
if [[ "$debug" == True ]]; then debug=true; else debug=false; fi
if (( ${#missing[@]} > 0 )) && $debug; then
  sandbox=true
fi

# Before anything is migrated, queued or started: a port in use (this checkout's `make run`
# already running, or another's) would stop every process halfway through start-up, and a second
# checkout whose .env still names the first one's database would migrate it first.
ports=("PORT=${PORT}")
if $sandbox; then
  ports+=("ADS_SANDBOX_GRPC_PORT=${ADS_SANDBOX_GRPC_PORT}" "ADS_SANDBOX_OAUTH_PORT=${ADS_SANDBOX_OAUTH_PORT}")
fi
for setting in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/${setting#*=}") 2>/dev/null; then
    echo "make run: port ${setting#*=} (${setting%%=*}) is in use: is a make run already" \
      "running? Stop it, or give this checkout other ports in .env (see .env.example)." >&2
    exit 1
  fi
done

scripts/migrate.sh
.venv/bin/python manage.py collectstatic --noinput --verbosity 0
if $debug; then
  .venv/bin/python manage.py bootstrap_demo
else
  # bootstrap_demo creates them too; without them beat has nothing to run (no gap detection).
  .venv/bin/python manage.py ensure_periodic_tasks
  echo "make run: DEBUG is off in ${DJANGO_SETTINGS_MODULE}: no demo products and no demo admin user."
fi

cat <<MSG

  API       http://127.0.0.1:${PORT}/api/products
  API docs  http://127.0.0.1:${PORT}/api/docs/
  Admin     http://127.0.0.1:${PORT}/admin/
  Health    http://127.0.0.1:${PORT}/readyz

  Ctrl-C stops everything.

MSG
# Catch up now rather than at the next 03:00 UTC beat: the worker picks this up once it starts,
# and gap detection plans only the days still missing.
.venv/bin/python manage.py shell --no-imports -c \
  "from ads_sync.tasks import detect_gaps; detect_gaps.delay(trigger='beat')"
echo "  Google Ads: gap detection queued; progress in the admin (Sync runs) and" \
  "${ADS_SYNC_OUTPUT_DIR:-./output}"
# No Google Ads credentials (in .env or the environment), and DEBUG on: run
# the local sandbox API and point web/worker/beat at it (.sandbox/env is read after .env, so it
# wins).
processes=(web worker beat listener)
if $sandbox; then
  .venv/bin/python manage.py google_ads_sandbox --state-dir .sandbox --env-only \
    --grpc-port "${ADS_SANDBOX_GRPC_PORT}" --oauth-port "${ADS_SANDBOX_OAUTH_PORT}" \
    --env-file .sandbox/env >/dev/null
  dotenv_export .sandbox/env
  echo "  Google Ads: no credentials set, using the local sandbox API (.sandbox/env)"
  # The sandbox has no Google quota to protect: backfill two years in about a minute.
  export ADS_SYNC_MAX_QPS="${ADS_SYNC_MAX_QPS:-25}"
  echo
  processes+=(sandbox)
elif (( ${#missing[@]} > 0 )); then
  echo "  Google Ads: no credentials set, and no sandbox with DEBUG off: nothing is synced"
  echo
fi
# The processes get the values exported above: honcho would read .env again with its own parser
# (scripts/dotenv.sh says what it changed), so it is given no file.
exec .venv/bin/honcho start -f Procfile -e /dev/null "${processes[@]}"
