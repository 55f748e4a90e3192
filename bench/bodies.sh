#!/usr/bin/env bash
# Memory under many large bodies: starts the service (auth on, access
# logs on) and sends CONNS concurrent 1 MiB bodies to the sign-in route
# and to the (sign-up) create route, sampling the service's resident size
# before, at its peak and 10 s after:
#
#   bench/bodies.sh [CONNS]        e.g. bench/bodies.sh 1000
#
# Needs a MySQL or MariaDB server as for bench/run.sh. It creates and
# drops its own database (usersvc_bodies_<random>).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-1000}
PORT=${BENCH_PORT:-18090}
DB_HOST=${BENCH_DB_HOST:-127.0.0.1}
DB_PORT=${BENCH_DB_PORT:-3306}
DB_USER=${BENCH_DB_USER:-root}
DB_PASSWORD=${BENCH_DB_PASSWORD:-}
DB_NAME=usersvc_bodies_$RANDOM$RANDOM
WORK=$(mktemp -d)
CLIENT=$(command -v mariadb || command -v mysql) || { echo "a mysql or mariadb client is needed" >&2; exit 1; }
sql() { MYSQL_PWD="$DB_PASSWORD" "$CLIENT" --protocol=tcp -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" "$@"; }
service=""
cleanup() {
  [ -n "$service" ] && kill "$service" 2>/dev/null && wait "$service" 2>/dev/null
  sql -e "DROP DATABASE IF EXISTS $DB_NAME" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

go build -o "$WORK/usersvc" .
go build -o "$WORK/bodies" ./bench/bodies
sql -e "CREATE DATABASE $DB_NAME CHARACTER SET utf8mb4"
# Every connection comes from 127.0.0.1: lift the per-client cap so that
# all of them send their bodies, as many clients would.
HTTP_ADDR="127.0.0.1:$PORT" MANAGEMENT_ADDR=127.0.0.1:$((PORT + 1)) DB_HOST="$DB_HOST" DB_PORT="$DB_PORT" DB_USER="$DB_USER" \
  DB_PASSWORD="$DB_PASSWORD" DB_NAME="$DB_NAME" ALLOW_SIGNUP=true ENV_FILE=/nonexistent MAX_CONNECTIONS_PER_CLIENT=1024 \
  "$WORK/usersvc" >"$WORK/service.log" 2>&1 &
service=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 0.1
done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$service/status"; }
peak=0
sample() { while kill -0 "$1" 2>/dev/null; do r=$(rss); ((r > peak)) && peak=$r; sleep 0.05; done; }

before=$(rss)
for route in /api/v1/auth/token /api/v1/users; do
  "$WORK/bodies" -url "http://127.0.0.1:$PORT$route" -conns "$CONNS" -size $((1 << 20)) >"$WORK/out" &
  load=$!
  sample "$load"
  wait "$load"
  echo "$route: $(cat "$WORK/out")"
done
sleep 30
after=$(rss)
curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E "^go_memstats_(heap|stack|sys)|^go_goroutines|^process_resident" >&2 || true
printf 'resident memory (MiB): before %d, peak %d, 30 s after %d\n' $((before / 1024)) $((peak / 1024)) $((after / 1024))
