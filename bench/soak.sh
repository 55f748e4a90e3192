#!/usr/bin/env bash
# Soak test: the real binary under a mixed workload for a long time.
#
#   bench/soak.sh [DURATION] [USERS] [DB_NAME]     e.g. bench/soak.sh 10m 100000
#
# Seeds USERS users (default 100000), starts the service as deployed, and
# drives bench/lua/mixed.lua with wrk (32 connections) for DURATION
# (default 10m): 80% reads by id, 10% first pages, 5% deep pages by
# cursor, 4.5% updates and 0.5% creates. It reports requests per second,
# latency percentiles, errors, and the service's resident memory after
# the warm-up, every minute, and at the end. Creates use bcrypt cost 4:
# the soak is about leaks and errors over time, bench/run.sh about bcrypt.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10m}
USERS=${2:-100000}
DB_NAME=${3:-}
CONNS=32
source bench/lib.sh

build
seed_users 4
start_service 4

echo "== warming up" >&2
DURATION=10s run_wrk warmup mixed.lua >/dev/null
rss_before=$(rss_kib)
warmup_lines=$(wc -l <"$WORK/service.log")

echo "== soaking for $DURATION" >&2
wrk -t 2 -c "$CONNS" -d "$DURATION" --timeout 10s --latency -s "$LUA_DIR/mixed.lua" "http://127.0.0.1:$PORT" >"$WORK/soak.txt" 2>&1 &
soak=$!
samples=()
while kill -0 "$soak" 2>/dev/null; do
  samples+=("$(rss_kib)")
  for _ in $(seq 1 60); do kill -0 "$soak" 2>/dev/null && sleep 1; done
done
wait "$soak"
rss_after=$(rss_kib)
metrics=$(curl -sf "http://127.0.0.1:$PORT/metrics")
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo
echo "soak: $DURATION, $CONNS connections, $USERS users; $(nproc) cores; database $(sql -N -e 'SELECT VERSION()')"
echo
sed -n '/Latency Distribution/,/^Requests\/sec/p' "$WORK/soak.txt"
grep -E 'Non-2xx' "$WORK/soak.txt" || true
echo
echo "errors (non-2xx and socket): $(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/,""); n+=$4+$6+$8+$10} END {print n+0}' "$WORK/soak.txt")"
soak_log=$(tail -n +"$((warmup_lines + 1))" "$WORK/service.log")
echo "5xx logged by the service during the soak: $(grep -c '"status":5' <<<"$soak_log" || true)"
grep '"status":5' <<<"$soak_log" | head -n 5 || true
echo "warnings and errors logged during the soak: $(grep -c '"level":"\(WARN\|ERROR\)"' <<<"$soak_log" || true)"
grep '"level":"\(WARN\|ERROR\)"' <<<"$soak_log" | head -n 5 || true
echo -n "resident memory, MiB: after warm-up $(mib "$rss_before"); each minute:"
for s in "${samples[@]}"; do echo -n " $(mib "$s")"; done
echo "; at the end $(mib "$rss_after")"
echo "database pool at the end: $(echo "$metrics" | grep -E '^usersvc_db_(open|in_use|idle)_connections|^usersvc_db_wait_count_total' | tr '\n' ' ')"
