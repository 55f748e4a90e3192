# Shared by bench/run.sh and bench/soak.sh: settings, the database client,
# building, seeding, starting the service, and running wrk. Source it
# after setting USERS and DB_NAME; it cleans up on exit, dropping the
# database only if it created it. It changes the server's settings only
# when asked: BENCH_BUFFER_POOL=1 raises innodb_buffer_pool_size to 1 GiB
# for the run (and restores it).

DB_HOST=${BENCH_DB_HOST:-127.0.0.1}
DB_PORT=${BENCH_DB_PORT:-3306}
DB_USER=${BENCH_DB_USER:-root}
DB_PASSWORD=${BENCH_DB_PASSWORD:-}
DB_NAME=${DB_NAME:-usersvc_bench_$RANDOM$RANDOM}
created_db=""
PORT=${BENCH_PORT:-18080}
CONNS=${CONNS:-64}
WORK=$(mktemp -d)
export LUA_DIR="$PWD/bench/lua" USERS

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
CLIENT=$(command -v mariadb || command -v mysql) || { echo "a mysql or mariadb client is needed" >&2; exit 1; }
sql() { MYSQL_PWD="$DB_PASSWORD" "$CLIENT" --protocol=tcp -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" "$@"; }

pids=()
buffer_pool_before=""
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$buffer_pool_before" ]; then
    sql -e "SET GLOBAL innodb_buffer_pool_size = $buffer_pool_before" || true
  fi
  if [ -n "$created_db" ]; then
    sql -e "DROP DATABASE IF EXISTS $created_db" || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# warm_buffer_pool: give the server a buffer pool of at least 1 GiB for
# the run (restored on exit) and read the users table into it. A server
# sized for its data holds the table in memory; without this, 1,000,000
# users (360 MiB) do not fit the default 128 MiB, and random deep pages
# would measure the disk, not the pagination.
warm_buffer_pool() {
  local size
  size=$(sql -N -e 'SELECT @@innodb_buffer_pool_size')
  if [ "${BENCH_BUFFER_POOL:-0}" = 1 ] && ((size < 1073741824)); then
    buffer_pool_before=$size
    sql -e 'SET GLOBAL innodb_buffer_pool_size = 1073741824'
    sleep 2 # the resize runs in the background
  fi
  sql "$DB_NAME" -e 'SELECT COUNT(*), MAX(full_name) FROM users FORCE INDEX (PRIMARY)' >/dev/null
}

# build: the service and the ceilings tool into $WORK.
build() {
  echo "== building" >&2
  go build -o "$WORK/usersvc" .
  go build -o "$WORK/ceilings" ./bench/ceilings
}

# seed_users COST: a new database DB_NAME with USERS users, all with the
# password "bench password" hashed once at COST, in one INSERT ... SELECT,
# with the ids 1 to USERS the scenarios draw from (on Galera, ids left to
# auto-increment would step by the number of nodes).
# A database of that name that exists already is left alone: the run stops.
seed_users() {
  local cost=$1
  echo "== seeding $USERS users" >&2
  local hash digits from="" expr="" place=1 t
  hash=$("$WORK/ceilings" hash -cost "$cost" -password "bench password")
  digits="(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
  if ! sql -e "CREATE DATABASE $DB_NAME CHARACTER SET utf8mb4"; then
    echo "database $DB_NAME exists or cannot be created; name a new one" >&2
    exit 1
  fi
  created_db=$DB_NAME
  sql "$DB_NAME" < schema.sql
  # n runs over 0 .. 10^k - 1 for the fewest k digit tables that reach USERS.
  while ((place < USERS)); do
    t="d$place"
    from+="${from:+, }$digits $t"
    expr+="${expr:+ + }$place*$t.d"
    place=$((place * 10))
  done
  sql "$DB_NAME" -e "
    INSERT INTO users (id, username, email, password_hash, full_name)
    SELECT n, CONCAT('bench', n), CONCAT('bench', n, '@example.com'), '$hash', CONCAT('Bench User ', n) FROM
      (SELECT $expr + 1 AS n FROM $from WHERE $expr < $USERS) AS nums;
    INSERT INTO user_counts (slot, n) SELECT 0, COUNT(*) FROM users;
    ANALYZE TABLE users;" >/dev/null
}

# start_service COST: the service on PORT as deployed (auth and access
# logs on), with the admin benchadmin; sets SERVICE and exports TOKEN.
start_service() {
  local cost=$1
  echo "== starting the service" >&2
  HTTP_ADDR="127.0.0.1:$PORT" DB_HOST="$DB_HOST" DB_PORT="$DB_PORT" DB_USER="$DB_USER" DB_PASSWORD="$DB_PASSWORD" \
    DB_NAME="$DB_NAME" BCRYPT_COST="$cost" BCRYPT_COST_UNBOUNDED=true ENV_FILE=/dev/null \
    ADMIN_USERNAME=benchadmin ADMIN_EMAIL=benchadmin@example.com ADMIN_PASSWORD="bench admin password" \
    "$WORK/usersvc" >"$WORK/service.log" 2>&1 &
  SERVICE=$!
  pids+=("$SERVICE")
  for _ in $(seq 1 100); do
    grep -q '"bootstrap admin created"' "$WORK/service.log" && break
    sleep 0.1
  done
  TOKEN=$(curl -sf -X POST "http://127.0.0.1:$PORT/api/v1/auth/token" -H 'Content-Type: application/json' \
    -d '{"username":"benchadmin","password":"bench admin password"}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  export TOKEN
}

# run_wrk NAME SCRIPT [URL] [CONNS]: prints "rps p99_ms errors" and keeps wrk's output.
run_wrk() {
  local name=$1 script=$2 url=${3:-http://127.0.0.1:$PORT} conns=${4:-$CONNS}
  wrk -t 2 -c "$conns" -d "$DURATION" --timeout 10s --latency -s "$LUA_DIR/$script" "$url" >"$WORK/$name.txt" 2>&1
  local rps p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/$name.txt")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$WORK/$name.txt")
  errors=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/,""); n+=$4+$6+$8+$10} END {print n+0}' "$WORK/$name.txt")
  echo "$rps $p99 $errors"
}

# sample_rss PID: the service's largest resident size, in KiB, while PID
# runs, kept in rss_max_kib.
rss_max_kib=0
sample_rss() {
  while kill -0 "$1" 2>/dev/null; do
    local rss
    rss=$(rss_kib)
    ((rss > rss_max_kib)) && rss_max_kib=$rss
    sleep 0.2
  done
}

# rss_kib: the service's resident size now, in KiB.
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVICE/status"; }
