#!/usr/bin/env bash
# Load test of the users service against its ceilings, measured side by
# side in one run on this machine:
#
#   bench/run.sh [USERS] [DURATION] [DB_NAME]     e.g. bench/run.sh 1000000 10s
#
# It builds the service and bench/ceilings, seeds USERS users (default
# 10000) into a new database (DB_NAME, default usersvc_bench_<random>,
# dropped at the end; an existing one is never touched) with one INSERT ... SELECT and one
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
DB_NAME=${3:-}
COST=${BCRYPT_COST:-12}
BARE_PORT=$((${BENCH_PORT:-18080} + 1))
HTTPSELECT_PORT=$((${BENCH_PORT:-18080} + 2))
source bench/lib.sh

build
seed_users "$COST"
warm_buffer_pool
start_service "$COST"
"$WORK/ceilings" http -addr "127.0.0.1:$BARE_PORT" &
pids+=("$!")
"$WORK/ceilings" httpselect -addr "127.0.0.1:$HTTPSELECT_PORT" -dsn "$DB_USER:$DB_PASSWORD@tcp($DB_HOST:$DB_PORT)/$DB_NAME" -pool 20 &
pids+=("$!")

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
# Deep pages by number can keep the database busy up to DB_TIMEOUT after
# wrk stops, which would cloud any scenario run after them: a pause.
read -r page_rps page_p99 page_err < <(run_wrk list_page list_page.lua)
sleep "${DB_TIMEOUT_PAUSE:-5}"
# Writes last, on the seeded rows: the raw one-field UPDATE first, then
# PUT full_name through the service, then deletes (which remove users).
read -r update_ceiling update_ceiling_p99 < <("$WORK/ceilings" update -dsn "$DB_USER:$DB_PASSWORD@tcp($DB_HOST:$DB_PORT)/$DB_NAME" \
  -conns "$CONNS" -pool 20 -duration "$DURATION" -max-id "$USERS")
read -r update_rps update_p99 update_err < <(run_wrk update update.lua)
read -r delete_rps delete_p99 delete_err < <(run_wrk delete delete.lua)
delete_ok=$(awk -v r="$delete_rps" -v e="$delete_err" -v d="${DURATION%s}" 'BEGIN { printf "%.0f", r - e / d }')

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
| ceiling: raw one-field UPDATE by id, autocommit (database/sql) | $update_ceiling | $update_ceiling_p99 | 0 | | |
| PUT /api/v1/users/{id}, full_name | $update_rps | $update_p99 | $update_err | $(ratio "$update_rps" "$update_ceiling") of raw UPDATE | >= 0.4 |
| DELETE /api/v1/users/{id} (204s only) | $delete_ok | $delete_p99 | $delete_err 404s | $(ratio "$delete_ok" "$update_ceiling") of raw UPDATE | >= 0.3 |
| service RSS during the GET load | $rss_mib MiB | | | | < 64 MiB |
TABLE
