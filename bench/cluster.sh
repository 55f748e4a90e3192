#!/usr/bin/env bash
# The service on a Galera cluster against the service on one server,
# measured side by side in one run: GET, list (first page), update (PUT
# full_name) and create, each as req/s and p99, through HAProxy in
# single-writer and in multi-writer mode, and on the machine's own server;
# plus the cost of causal reads (wsrep_sync_wait=1) on a raw point select.
#
#   eval "$(cluster/galera.sh up)"; bench/cluster.sh [USERS] [DURATION]
#
# Needs wrk and a MySQL or MariaDB client. Each target gets a database of
# its own, created and dropped by this script.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-10000}
DURATION=${2:-10s}
COST=${BCRYPT_COST:-10}
: "${CLUSTER_NODES:?run eval \"\$(cluster/galera.sh up)\" first}"
node1=${CLUSTER_NODES%%,*}
node1_port=$(sed -E 's/.*:([0-9]+)\).*/\1/' <<<"$node1")
single_port=$(sed -E 's/.*:([0-9]+)\).*/\1/' <<<"$CLUSTER_WRITER_DSN")
multi_port=$(sed -E 's/.*:([0-9]+)\).*/\1/' <<<"$CLUSTER_DSN")
source bench/lib.sh

build
results=()
# wait_replicated: until every node holds the seeded users.
wait_replicated() {
  local port
  for port in $(sed -E 's/[^,]*:([0-9]+)\)[^,]*/\1/g; s/,/ /g' <<<"$CLUSTER_NODES"); do
    for _ in $(seq 1 100); do
      [ "$(DB_PORT=$port sql -N "$DB_NAME" -e 'SELECT COUNT(*) FROM users' 2>/dev/null)" = "$USERS" ] && break
      sleep 0.2
    done
  done
}
# measure TARGET SEED_PORT SERVICE_DB_PORT: seed through SEED_PORT, serve
# through SERVICE_DB_PORT, run the scenarios, stop the service.
measure() {
  local target=$1 seed_port=$2 service_port=$3
  DB_NAME=usersvc_bench_$RANDOM$RANDOM
  DB_PORT=$seed_port
  seed_users "$COST"
  [ "$seed_port" != "$service_port" ] && wait_replicated
  DB_PORT=$service_port
  start_service "$COST"
  run_wrk "warm_$target" get.lua >/dev/null
  local get list update create
  get=$(run_wrk "get_$target" get.lua)
  list=$(run_wrk "list_$target" list_first.lua)
  update=$(run_wrk "update_$target" update.lua)
  create=$(run_wrk "create_$target" create.lua "http://127.0.0.1:$PORT" 8)
  results+=("$target|$get|$list|$update|$create")
  kill "$SERVICE"; wait "$SERVICE" 2>/dev/null || true
  DB_PORT=$seed_port
  sql -e "DROP DATABASE IF EXISTS $DB_NAME"
  created_db=""
}
measure "one server" "${BENCH_DB_PORT:-3306}" "${BENCH_DB_PORT:-3306}"
measure "Galera, HAProxy single writer" "$node1_port" "$single_port"
measure "Galera, HAProxy multi writer" "$node1_port" "$multi_port"

# The cost of causal reads, on the raw point select through HAProxy.
DB_NAME=usersvc_bench_$RANDOM$RANDOM
DB_PORT=$node1_port
seed_users "$COST"
wait_replicated
dsn="$DB_USER:$DB_PASSWORD@tcp($DB_HOST:$multi_port)/$DB_NAME"
read -r plain_qps plain_p99 < <("$WORK/ceilings" select -dsn "$dsn" -conns "$CONNS" -pool 20 -duration "$DURATION" -max-id "$USERS")
read -r causal_qps causal_p99 < <("$WORK/ceilings" select -dsn "$dsn" -conns "$CONNS" -pool 20 -duration "$DURATION" -max-id "$USERS" \
  -prefix "SET STATEMENT wsrep_sync_wait=1 FOR ")

echo
echo "users: $USERS   duration: $DURATION per scenario   connections: $CONNS   bcrypt cost: $COST   machine: $(nproc) cores"
echo
echo "| target | GET req/s (p99 ms) | list req/s (p99) | update req/s (p99) | create req/s (p99) |"
echo "|---|---:|---:|---:|---:|"
for row in "${results[@]}"; do
  IFS='|' read -r target get list update create <<<"$row"
  cell() { read -r rps p99 err <<<"$1"; printf '%s (%s)%s' "$rps" "$p99" "$([ "$err" != 0 ] && echo ", $err errors")"; }
  echo "| $target | $(cell "$get") | $(cell "$list") | $(cell "$update") | $(cell "$create") |"
done
echo
echo "| raw point select through HAProxy multi writer | q/s | p99 ms |"
echo "|---|---:|---:|"
echo "| plain | $plain_qps | $plain_p99 |"
echo "| causal (wsrep_sync_wait=1) | $causal_qps | $causal_p99 |"
