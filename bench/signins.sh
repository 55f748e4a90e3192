#!/usr/bin/env bash
# Sign-ins under a crowd (issue 21): starts the service at BCRYPT_COST
# (10 unless set) behind a trusted proxy (127.0.0.1), floods the sign-in
# route from FLOODERS addresses (64) for DURATION (20s), and signs in
# honestly 10 times meanwhile, each from a fresh address:
#
#   bench/signins.sh            e.g. BCRYPT_COST=12 FLOODERS=128 bench/signins.sh
#
# Needs a MySQL or MariaDB server as for bench/run.sh. It creates and
# drops its own database (usersvc_signins_<random>).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${BENCH_PORT:-18092}
DB_HOST=${BENCH_DB_HOST:-127.0.0.1}
DB_PORT=${BENCH_DB_PORT:-3306}
DB_USER=${BENCH_DB_USER:-root}
DB_PASSWORD=${BENCH_DB_PASSWORD:-}
DB_NAME=usersvc_signins_$RANDOM$RANDOM
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

go build -o "$WORK/usersvc" .
go build -o "$WORK/signins" ./bench/signins
sql -e "CREATE DATABASE $DB_NAME CHARACTER SET utf8mb4"
: >"$WORK/empty.env"
password="bench honest password"
HTTP_ADDR="127.0.0.1:$PORT" MANAGEMENT_ADDR=127.0.0.1:$((PORT + 1)) DB_HOST="$DB_HOST" DB_PORT="$DB_PORT" DB_USER="$DB_USER" \
  DB_PASSWORD="$DB_PASSWORD" DB_NAME="$DB_NAME" ENV_FILE="$WORK/empty.env" LOG_LEVEL=warn \
  BCRYPT_COST="${BCRYPT_COST:-10}" TRUSTED_PROXIES=127.0.0.1 \
  ADMIN_USERNAME=honest ADMIN_EMAIL=honest@example.com ADMIN_PASSWORD="$password" \
  "$WORK/usersvc" >"$WORK/service.log" 2>&1 &
service=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$WORK/service.log" >&2; exit 1; }
"$WORK/signins" -url "http://127.0.0.1:$PORT" -flooders "${FLOODERS:-64}" -duration "${DURATION:-20s}" \
  -user honest -password "$password"
curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E "^usersvc_bcrypt" || true
