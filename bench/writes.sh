#!/usr/bin/env bash
# The write path, measured side by side in one run on this machine:
#
#   bench/writes.sh [USERS] [DURATION] [DB_NAME]    e.g. bench/writes.sh 100000 10s
#
# 1. Throughput, 64 connections, USERS users (default 100000), auth, access
#    logs and events on, each scenario twice, interleaved, so that a noisy
#    moment hits both sides: the raw one-field UPDATE by id on the
#    service's own table (the ceiling), PUT of full_name (the fast path),
#    and PUT of full_name with is_active sent as stored (the same change,
#    through the locking path).
# 2. Feed latency at 150 changes a second through one replica: from a
#    write's 200 to the first feed page that holds its event
#    (ceilings feedlag).
# 3. Two replicas on one database; writes at 150 a second through the
#    first, and wrk writing through the second, which is frozen (SIGSTOP)
#    for 8 s three times: the first's write latency and the feed's lag.
#
# Needs wrk and a MySQL or MariaDB client (bench/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${1:-100000}
DURATION=${2:-10s}
DB_NAME=${3:-}
COST=${BCRYPT_COST:-12}
source bench/lib.sh
DSN="$DB_USER:$DB_PASSWORD@tcp($DB_HOST:$DB_PORT)/$DB_NAME"
SECOND_PORT=$((PORT + 3))

build
seed_users "$COST"
warm_buffer_pool
start_service "$COST"

# start_second: another replica of the service on SECOND_PORT, on the same
# database, without a management listener (the first has 127.0.0.1:9090).
start_second() {
  HTTP_ADDR="127.0.0.1:$SECOND_PORT" MANAGEMENT_ADDR=off DB_HOST="$DB_HOST" DB_PORT="$DB_PORT" DB_USER="$DB_USER" \
    DB_PASSWORD="$DB_PASSWORD" DB_NAME="$DB_NAME" BCRYPT_COST="$COST" BCRYPT_COST_UNBOUNDED=true ENV_FILE=/dev/null \
    ADMIN_USERNAME=benchadmin ADMIN_EMAIL=benchadmin@example.com ADMIN_PASSWORD="bench admin password" \
    "$WORK/usersvc" >"$WORK/second.log" 2>&1 &
  SECOND=$!
  pids+=("$SECOND")
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$SECOND_PORT/health" >/dev/null && return
    sleep 0.1
  done
  echo "the second replica did not start" >&2
  exit 1
}

echo "== warming up" >&2
run_wrk warmup update.lua >/dev/null

echo "== throughput" >&2
declare -a ceiling fast locking fast_p99 locking_p99
for round in 1 2; do
  read -r c _ < <("$WORK/ceilings" update -dsn "$DSN" -conns "$CONNS" -pool 20 -duration "$DURATION" -max-id "$USERS")
  read -r f fp _ < <(run_wrk "fast$round" update.lua)
  read -r l lp _ < <(run_wrk "locking$round" update_locking.lua)
  ceiling+=("$c") fast+=("$f") locking+=("$l") fast_p99+=("$fp") locking_p99+=("$lp")
done

echo "== feed latency, one replica, 150 changes/s" >&2
read -r lag1 < <("$WORK/ceilings" feedlag -url "http://127.0.0.1:$PORT" -token "$TOKEN" -rate 150 -duration 20s -max-id "$USERS")

echo "== two replicas, the second frozen three times" >&2
start_second
(wrk -t 1 -c 8 -d 40s --timeout 20s -s "$LUA_DIR/update.lua" "http://127.0.0.1:$SECOND_PORT" >"$WORK/second_wrk.txt" 2>&1) &
second_wrk=$!
freezer() {
  sleep 4
  for _ in 1 2 3; do
    kill -STOP "$SECOND"
    sleep 8
    kill -CONT "$SECOND"
    sleep 3
  done
}
freezer &
freezing=$!
read -r lag2 < <("$WORK/ceilings" feedlag -url "http://127.0.0.1:$PORT" -token "$TOKEN" -rate 150 -duration 36s -max-id "$USERS")
wait "$freezing" "$second_wrk"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
read -r w1 f1 wp1 l50 l99 lmax miss1 <<<"$lag1"
read -r w2 f2 wp2 m50 m99 mmax miss2 <<<"$lag2"
sequencer_warnings=$(grep -c '"sequence events failed' "$WORK/service.log" || true)

cat <<TABLE

users: $USERS   duration: $DURATION per scenario   connections: $CONNS
machine: $(nproc) cores, $(uname -r); database: $(sql -N -e 'SELECT VERSION()')

| scenario | round 1 req/s | round 2 req/s | p99 ms (1, 2) | ratio to the raw UPDATE of its round |
|---|---:|---:|---|---|
| raw one-field UPDATE by id, autocommit | ${ceiling[0]} | ${ceiling[1]} | | |
| PUT full_name, fast path | ${fast[0]} | ${fast[1]} | ${fast_p99[0]}, ${fast_p99[1]} | $(ratio "${fast[0]}" "${ceiling[0]}"), $(ratio "${fast[1]}" "${ceiling[1]}") |
| PUT full_name + is_active as stored, locking path | ${locking[0]} | ${locking[1]} | ${locking_p99[0]}, ${locking_p99[1]} | $(ratio "${locking[0]}" "${ceiling[0]}"), $(ratio "${locking[1]}" "${ceiling[1]}") |

fast path / locking path: $(ratio "${fast[0]}" "${locking[0]}"), $(ratio "${fast[1]}" "${locking[1]}")

| feed at 150 changes/s | writes ok | failed | write p99 ms | lag p50 ms | lag p99 ms | lag max ms | never seen |
|---|---:|---:|---:|---:|---:|---:|---:|
| one replica | $w1 | $f1 | $wp1 | $l50 | $l99 | $lmax | $miss1 |
| two replicas, the other frozen 3 x 8 s | $w2 | $f2 | $wp2 | $m50 | $m99 | $mmax | $miss2 |

sequencer warnings logged by the healthy replica: $sequencer_warnings
TABLE
