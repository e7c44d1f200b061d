#!/usr/bin/env bash
# Start PostgreSQL, Redis and RabbitMQ on loopback if they are installed here and not running.
# Services pointed elsewhere (DATABASE_URL, REDIS_URL, CELERY_BROKER_URL: another host or port)
# are left to their owners. `make migrate` and `make run` read .env first; `make test` does not.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when the URL names the instance this script can start: this machine, the default port.
# The URL goes to python in its environment, not its arguments: it may hold a password, and every
# user of the machine can read a process's arguments (ps, /proc/<pid>/cmdline).
is_local_default() {
  local url=$1 port=$2 endpoint
  endpoint=$(SERVICE_URL="$url" python3 -c 'import os, sys, urllib.parse as u
p = u.urlsplit(os.environ["SERVICE_URL"])
print(p.hostname or "127.0.0.1", p.port or sys.argv[1])' "$port" 2>/dev/null) || return 1
  case "$endpoint" in
    "127.0.0.1 $port" | "localhost $port" | "::1 $port") return 0 ;;
    *) return 1 ;;
  esac
}

wait_port() {
  local port=$1 name=$2 seconds=$3
  for _ in $(seq "$seconds"); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "$name did not come up on 127.0.0.1:$port within ${seconds}s" >&2
  return 1
}

hint="or start the stack's services with: docker compose -f docker/compose.yaml up -d postgres redis rabbitmq"

if is_local_default "${DATABASE_URL:-postgres://127.0.0.1:5432}" 5432 && ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    wait_port 5432 PostgreSQL 30
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432: apt-get install postgresql, $hint" >&2
    exit 1
  fi
fi

if is_local_default "${REDIS_URL:-redis://127.0.0.1:6379}" 6379 && ! port_open 6379; then
  if command -v redis-server >/dev/null; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    wait_port 6379 Redis 15
  else
    echo "Redis is not running on 127.0.0.1:6379: apt-get install redis-server, $hint" >&2
    exit 1
  fi
fi

if is_local_default "${CELERY_BROKER_URL:-amqp://127.0.0.1:5672}" 5672 && ! port_open 5672; then
  if command -v rabbitmq-server >/dev/null; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached
    wait_port 5672 RabbitMQ 90
  else
    echo "RabbitMQ is not running on 127.0.0.1:5672: apt-get install rabbitmq-server, $hint" >&2
    exit 1
  fi
fi
