#!/usr/bin/env bash
# Load test of the users service against its ceilings, measured side by
# side in one run on this machine:
#
#   bench/run.sh [USERS] [DURATION]      e.g. bench/run.sh 1000000 10s
#
# It builds the service and bench/ceilings, seeds USERS users (default
# 10000) into the database usersvc_bench with one INSERT ... SELECT and one
# precomputed hash, starts the service as deployed (authentication on,
# access logs on), and drives each scenario with wrk at 64 connections for
# DURATION (default 10s). It prints one table, each figure with its ratio
# to the ceiling it is judged against.
#
# Needs wrk (apt-get install -y wrk) and a MySQL or MariaDB client; the
# server is BENCH_DB_HOST:BENCH_DB_PORT as BENCH_DB_USER (default
# 127.0.0.1:3306, root, no password).
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${1:-10000}
DURATION=${2:-10s}
CONNS=64
DB_HOST=${BENCH_DB_HOST:-127.0.0.1}
DB_PORT=${BENCH_DB_PORT:-3306}
DB_USER=${BENCH_DB_USER:-root}
DB_PASSWORD=${BENCH_DB_PASSWORD:-}
DB_NAME=usersvc_bench
PORT=${BENCH_PORT:-18080}
BARE_PORT=$((PORT + 1))
COST=${BCRYPT_COST:-12}
WORK=$(mktemp -d)
export LUA_DIR="$PWD/bench/lua" USERS

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
CLIENT=$(command -v mariadb || command -v mysql) || { echo "a mysql or mariadb client is needed" >&2; exit 1; }
sql() { MYSQL_PWD="$DB_PASSWORD" "$CLIENT" --protocol=tcp -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" "$@"; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building" >&2
go build -o "$WORK/usersvc" .
go build -o "$WORK/ceilings" ./bench/ceilings

echo "== seeding $USERS users" >&2
HASH=$("$WORK/ceilings" hash -cost "$COST" -password "bench password")
DIGITS="(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
sql -e "DROP DATABASE IF EXISTS $DB_NAME; CREATE DATABASE $DB_NAME CHARACTER SET utf8mb4"
sql "$DB_NAME" < schema.sql
# n runs over 0 .. 10^k - 1 for the fewest k digit tables that reach USERS.
from="" expr="" place=1
while ((place < USERS)); do
  t="d$place"
  from+="${from:+, }$DIGITS $t"
  expr+="${expr:+ + }$place*$t.d"
  place=$((place * 10))
done
sql "$DB_NAME" -e "
  INSERT INTO users (username, email, password_hash, full_name)
  SELECT CONCAT('bench', n), CONCAT('bench', n, '@example.com'), '$HASH', CONCAT('Bench User ', n) FROM
    (SELECT $expr + 1 AS n FROM $from WHERE $expr < $USERS) AS nums;
  INSERT INTO user_counts (slot, n) SELECT 0, COUNT(*) FROM users;
  ANALYZE TABLE users;" >/dev/null

echo "== starting the service" >&2
HTTP_ADDR="127.0.0.1:$PORT" DB_HOST="$DB_HOST" DB_PORT="$DB_PORT" DB_USER="$DB_USER" DB_PASSWORD="$DB_PASSWORD" \
  DB_NAME="$DB_NAME" BCRYPT_COST="$COST" ENV_FILE=/nonexistent \
  ADMIN_USERNAME=benchadmin ADMIN_EMAIL=benchadmin@example.com ADMIN_PASSWORD="bench admin password" \
  "$WORK/usersvc" >"$WORK/service.log" 2>&1 &
SERVICE=$!
pids+=("$SERVICE")
"$WORK/ceilings" http -addr "127.0.0.1:$BARE_PORT" &
pids+=("$!")
HTTPSELECT_PORT=$((PORT + 2))
"$WORK/ceilings" httpselect -addr "127.0.0.1:$HTTPSELECT_PORT" -dsn "$DB_USER:$DB_PASSWORD@tcp($DB_HOST:$DB_PORT)/$DB_NAME" -pool 20 &
pids+=("$!")
for _ in $(seq 1 100); do
  grep -q '"bootstrap admin created"' "$WORK/service.log" && break
  sleep 0.1
done
TOKEN=$(curl -sf -X POST "http://127.0.0.1:$PORT/api/v1/auth/token" -H 'Content-Type: application/json' \
  -d '{"username":"benchadmin","password":"bench admin password"}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
export TOKEN

# run_wrk NAME SCRIPT [URL] [CONNS]: prints "rps p99_ms errors" and keeps wrk's output.
run_wrk() {
  local name=$1 script=$2 url=${3:-http://127.0.0.1:$PORT} conns=${4:-$CONNS}
  wrk -t 2 -c "$conns" -d "$DURATION" --latency -s "$LUA_DIR/$script" "$url" >"$WORK/$name.txt" 2>&1
  local rps p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/$name.txt")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$WORK/$name.txt")
  errors=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/,""); n+=$4+$6+$8+$10} END {print n+0}' "$WORK/$name.txt")
  echo "$rps $p99 $errors"
}

rss_max_kib=0
sample_rss() { # sample the service's resident size while $1 runs
  while kill -0 "$1" 2>/dev/null; do
    local rss
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVICE/status")
    ((rss > rss_max_kib)) && rss_max_kib=$rss
    sleep 0.2
  done
}

echo "== warming up" >&2
run_wrk warmup get.lua >/dev/null

echo "== ceilings" >&2
read -r select_qps select_p99 < <("$WORK/ceilings" select -dsn "$DB_USER:$DB_PASSWORD@tcp($DB_HOST:$DB_PORT)/$DB_NAME" \
  -conns "$CONNS" -pool 20 -duration "$DURATION" -max-id "$USERS")
read -r bare_rps bare_p99 bare_err < <(run_wrk bare get.lua "http://127.0.0.1:$BARE_PORT")
read -r hs_rps hs_p99 hs_err < <(run_wrk httpselect get.lua "http://127.0.0.1:$HTTPSELECT_PORT")
bcrypt_rate=$("$WORK/ceilings" bcrypt -cost "$COST" -duration "$DURATION")

echo "== scenarios" >&2
get_out="$WORK/get.out"
(run_wrk get get.lua >"$get_out") &
get_pid=$!
sample_rss "$get_pid"
wait "$get_pid"
read -r get_rps get_p99 get_err <"$get_out"
read -r first_rps first_p99 first_err < <(run_wrk list_first list_first.lua)
read -r cursor_rps cursor_p99 cursor_err < <(run_wrk list_cursor list_cursor.lua)
# Creates from 8 connections: enough to keep every bcrypt worker busy
# without overflowing the bounded queue.
read -r create_rps create_p99 create_err < <(run_wrk create create.lua "http://127.0.0.1:$PORT" 8)
# Reads while creates saturate the CPU.
(run_wrk create_bg create.lua "http://127.0.0.1:$PORT" 8 >/dev/null) &
bg=$!
sleep 1
read -r mixed_rps mixed_p99 mixed_err < <(run_wrk get_during_creates get.lua)
wait "$bg"
# Last: deep pages by number can keep the database busy up to DB_TIMEOUT
# after wrk stops, which would cloud any scenario run after them.
read -r page_rps page_p99 page_err < <(run_wrk list_page list_page.lua)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
rss_mib=$(awk -v k="$rss_max_kib" 'BEGIN { printf "%.1f", k / 1024 }')

cat <<TABLE

users: $USERS   duration: $DURATION per scenario   connections: $CONNS   bcrypt cost: $COST
machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); database: $(sql -N -e 'SELECT VERSION()')

| scenario | req/s | p99 ms | errors | ratio | target |
|---|---:|---:|---:|---|---|
| ceiling: raw driver point select (database/sql) | $select_qps | $select_p99 | 0 | | |
| ceiling: bare net/http JSON handler | $bare_rps | $bare_p99 | $bare_err | | |
| reference: bare net/http over the same point select, no auth, no logs | $hs_rps | $hs_p99 | $hs_err | $(ratio "$hs_rps" "$select_qps") of raw select | |
| ceiling: bcrypt hashes/s on all cores | $bcrypt_rate | | | | |
| GET /api/v1/users/{id} | $get_rps | $get_p99 | $get_err | $(ratio "$get_rps" "$select_qps") of raw select, $(ratio "$get_rps" "$hs_rps") of the reference | >= 0.6 of raw select |
| list, first page with total | $first_rps | $first_p99 | $first_err | $(ratio "$first_rps" "$get_rps") of GET | >= 0.5 |
| list, random deep page by cursor | $cursor_rps | $cursor_p99 | $cursor_err | p99 $(ratio "$cursor_p99" "$first_p99") of first page | <= 1.5 |
| list, random deep page by number (OFFSET) | $page_rps | $page_p99 | $page_err | p99 $(ratio "$page_p99" "$first_p99") of first page | (documented as slow) |
| create (8 connections) | $create_rps | $create_p99 | $create_err | $(ratio "$create_rps" "$bcrypt_rate") of bcrypt | >= 0.9 |
| GET while creates run | $mixed_rps | $mixed_p99 | $mixed_err | p99 $(ratio "$mixed_p99" "$get_p99") of GET alone | <= 3 |
| service RSS during the GET load | $rss_mib MiB | | | | < 64 MiB |
TABLE
