#!/usr/bin/env bash
# cluster/galera.sh: a three-node MariaDB Galera cluster plus HAProxy on
# this machine, for tests and benchmarks. Run it as root.
#
# Usage:
#   cluster/galera.sh up        start everything (idempotent: an up cluster
#                               is left alone, missing pieces are started);
#                               prints the DSN export lines on stdout
#   cluster/galera.sh down      stop nodes and HAProxy, remove the base dir
#   cluster/galera.sh kill N    SIGKILL node N (1-3)
#   cluster/galera.sh start N   restart node N; it rejoins by IST (or SST)
#   cluster/galera.sh status    each node's state and cluster size, HAProxy
#   cluster/galera.sh env       the DSN export lines: eval "$(... env)"
#
# Ports, all on 127.0.0.1 (environment overrides in brackets):
#   4401 4402 4403   node client ports       [GALERA_CLIENT_PORTS]
#   4571 4572 4573   Galera replication      [GALERA_GMCAST_PORTS]
#   4581 4582 4583   IST receive             [GALERA_IST_PORTS]
#   4591 4592 4593   SST receive (rsync)     [GALERA_SST_PORTS]
#   4400             HAProxy single writer   [GALERA_SINGLE_PORT]
#   4410             HAProxy multi writer    [GALERA_MULTI_PORT]
#   4420             HAProxy stats (HTTP)    [GALERA_STATS_PORT]
# Everything lives under GALERA_BASE (default /var/tmp/usersvc-galera):
# per node a generated my.cnf, data dir, socket, pid file and error log;
# the HAProxy config, log and check script. Root has no password over TCP
# on every node and through HAProxy:
#   CLUSTER_DSN=root@tcp(127.0.0.1:4410)/          multi writer (leastconn)
#   CLUSTER_WRITER_DSN=root@tcp(127.0.0.1:4400)/   single writer
#   CLUSTER_NODES=root@tcp(127.0.0.1:4401)/,...    the nodes themselves
# Multi writer caveats: other nodes apply a commit a moment after it
# returns, so a read on another node can miss it (GALERA_SYNC_WAIT=15 sets
# wsrep_sync_wait for causal reads), a new connection naming a database
# just created through another connection can land on a node that does not
# have it yet, and concurrent writes to the same rows on different nodes
# fail certification (deadlock error 1213). The package's test suite passes
# through the single writer (TEST_DB_DSN=$CLUSTER_WRITER_DSN), not 4410.
#
# Design:
# - The machine's own MariaDB (127.0.0.1:3306, /run/mysqld, /var/lib/mysql)
#   is never touched: each node runs /usr/sbin/mariadbd with
#   --defaults-file=<its generated my.cnf> (so /etc/mysql is not read) and
#   every client call here is --no-defaults over TCP to a cluster port.
# - Nodes run as the mysql user (mariadbd --user=mysql); the base dir is
#   world-traversable so mysql and the SST scripts can reach it.
# - Node 1 is bootstrapped (--wsrep-new-cluster) from mariadb-install-db;
#   nodes 2 and 3 start, one after the other, with empty data dirs and take
#   an rsync SST.
#   `start N` after `kill N` first runs mariadbd --wsrep-recover to find the
#   node's last committed position, so it rejoins by IST, not a full SST.
#   It returns once the node is Synced and HAProxy routes to it again:
#   about 5 s, or 10-15 s right after a kill, while the survivors still
#   wait to evict the killed incarnation.
# - HAProxy must drop a node that is up but not Synced (a donor, a joiner,
#   a node cut off from the primary component), which an open port does not
#   show. It uses HAProxy's external-check: every second, per server, it runs
#   $GALERA_BASE/check.sh, which succeeds only when the node answers
#   SHOW STATUS LIKE 'wsrep_local_state' with 4 (Synced). So there is no
#   separate check agent to start, stop or lose; HAProxy forks the check
#   (that is why the global section says insecure-fork-wanted), runs in the
#   foreground under setsid and logs to $GALERA_BASE/haproxy.log.
#   inter 1s fall 2 rise 2: a node is out within about 2-3 s.
#   Single writer (4400): node1, with node2 and node3 as backups (the first
#   healthy backup takes over); when node1 returns, backup sessions are cut so
#   there is again one writer. Multi writer (4410): leastconn over all three.
#   Sessions on a node marked down are cut so clients reconnect elsewhere.
# - Galera's failure detection is shortened (evs.suspect_timeout PT3S,
#   inactive_timeout PT6S; defaults 5 s and 15 s), so a node that stops
#   answering without closing its sockets is evicted sooner.
# - Missing packages come from apt (galera-4 rsync mariadb-backup haproxy;
#   the server binaries of mariadb-server are expected). Debian bookworm has
#   HAProxy 2.6; its package enables the system haproxy service with the
#   stock config, which binds none of these ports and is left alone.
set -euo pipefail

BASE=${GALERA_BASE:-/var/tmp/usersvc-galera}
read -r -a CLIENT_PORTS <<<"${GALERA_CLIENT_PORTS:-4401 4402 4403}"
read -r -a GMCAST_PORTS <<<"${GALERA_GMCAST_PORTS:-4571 4572 4573}"
read -r -a IST_PORTS <<<"${GALERA_IST_PORTS:-4581 4582 4583}"
read -r -a SST_PORTS <<<"${GALERA_SST_PORTS:-4591 4592 4593}"
SINGLE_PORT=${GALERA_SINGLE_PORT:-4400}
MULTI_PORT=${GALERA_MULTI_PORT:-4410}
STATS_PORT=${GALERA_STATS_PORT:-4420}
TIMEOUT=${GALERA_TIMEOUT:-60} # seconds to wait for a node to be Synced
SYNC_WAIT=${GALERA_SYNC_WAIT:-0} # wsrep_sync_wait on every node
HOST=127.0.0.1
NODES=(1 2 3)
MARIADBD=/usr/sbin/mariadbd
PROVIDER=/usr/lib/galera/libgalera_smm.so
MARKER=$BASE/.usersvc-galera # down removes BASE only when this exists

log() { echo "galera: $*" >&2; }
die() { log "$*"; exit 1; }

# --- setup ------------------------------------------------------------------

# ensure_packages: install from apt whatever the cluster needs and lacks.
ensure_packages() {
  local missing=()
  [ -e "$PROVIDER" ] || missing+=(galera-4)
  command -v rsync >/dev/null || missing+=(rsync)
  command -v mariabackup >/dev/null || missing+=(mariadb-backup)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v ss >/dev/null || missing+=(iproute2) # the SST script uses ss
  [ -x "$MARIADBD" ] && command -v wsrep_sst_rsync >/dev/null || missing+=(mariadb-server)
  command -v mariadb >/dev/null || missing+=(mariadb-client)
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q galera-4 rsync mariadb-backup haproxy "${missing[@]}" >&2
  [ -e "$PROVIDER" ] || die "no Galera provider at $PROVIDER after installing galera-4"
}

# check_config: refuse settings that could reach the machine's own server.
check_config() {
  ((EUID == 0)) || die "run as root"
  local p all=("${CLIENT_PORTS[@]}" "${GMCAST_PORTS[@]}" "${IST_PORTS[@]}" "${SST_PORTS[@]}"
    "$SINGLE_PORT" "$MULTI_PORT" "$STATS_PORT")
  ((${#CLIENT_PORTS[@]} == 3 && ${#GMCAST_PORTS[@]} == 3 && ${#IST_PORTS[@]} == 3 && ${#SST_PORTS[@]} == 3)) ||
    die "each GALERA_*_PORTS needs three ports"
  for p in "${all[@]}"; do
    [[ $p =~ ^[0-9]+$ ]] || die "bad port: $p"
    ((p != 3306)) || die "port 3306 belongs to the machine's own MariaDB"
  done
  [[ $SYNC_WAIT =~ ^[0-9]+$ ]] || die "bad GALERA_SYNC_WAIT: $SYNC_WAIT"
  [ "$(printf '%s\n' "${all[@]}" | sort | uniq -d)" = "" ] || die "ports must differ: ${all[*]}"
  case $BASE in
    /* ) ;;
    * ) die "GALERA_BASE must be an absolute path" ;;
  esac
  case ${BASE%/} in
    "" | /var/lib/mysql* | /run/mysqld* | /var/run/mysqld* | /etc* | /usr* | /var | /var/tmp | /tmp )
      die "refusing GALERA_BASE=$BASE" ;;
  esac
}

port_busy() { ss -Hltn "sport = :$1" | grep -q .; }

# --- nodes ------------------------------------------------------------------

ndir() { echo "$BASE/node$1"; }
cport() { echo "${CLIENT_PORTS[$1 - 1]}"; }

# sql N ARGS...: the mariadb client on node N, as root over TCP.
sql() {
  local n=$1
  shift
  mariadb --no-defaults --protocol=tcp -h "$HOST" -P "$(cport "$n")" -u root \
    --connect-timeout=2 -N -B "$@"
}

# status_var N NAME: a global status value of node N, or nothing.
status_var() { sql "$1" -e "SHOW GLOBAL STATUS LIKE '$2'" 2>/dev/null | cut -f2 || true; }

# alive PID: the process exists and is not a zombie (whoever adopted a
# detached process may be slow to reap it, or never do).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# node_pid N: the pid of node N's mariadbd if it is running.
node_pid() {
  local f pid
  f=$(ndir "$1")/mariadbd.pid
  [ -s "$f" ] || return 1
  pid=$(<"$f")
  alive "$pid" && grep -q mariadbd "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

write_cnf() {
  local n=$1 d i peers=() addrs
  d=$(ndir "$n")
  for i in "${NODES[@]}"; do peers+=("$HOST:${GMCAST_PORTS[$i - 1]}"); done
  addrs=$(IFS=,; echo "${peers[*]}")
  cat >"$d/my.cnf" <<EOF
# Generated by cluster/galera.sh for node $n; mariadbd reads only this file.
[mariadbd]
user=mysql
datadir=$d/data
socket=$d/mysqld.sock
pid-file=$d/mysqld.pid
log-error=$d/error.log
tmpdir=$d/tmp
bind-address=$HOST
port=$(cport "$n")
skip-name-resolve
max_connections=500
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
innodb_buffer_pool_size=64M
innodb_log_file_size=48M
wsrep_sync_wait=$SYNC_WAIT

wsrep_on=ON
wsrep_provider=$PROVIDER
wsrep_cluster_name=usersvc-galera
wsrep_cluster_address=gcomm://$addrs
wsrep_node_name=node$n
wsrep_node_address=$HOST:${GMCAST_PORTS[$n - 1]}
wsrep_node_incoming_address=$HOST:$(cport "$n")
wsrep_sst_method=rsync
wsrep_sst_receive_address=$HOST:${SST_PORTS[$n - 1]}
wsrep_provider_options="base_host=$HOST;base_port=${GMCAST_PORTS[$n - 1]};gmcast.listen_addr=tcp://$HOST:${GMCAST_PORTS[$n - 1]};ist.recv_addr=$HOST:${IST_PORTS[$n - 1]};gcache.size=64M;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S"
EOF
}

# prepare_node N: its directory, config and (empty) data dir.
prepare_node() {
  local d
  d=$(ndir "$1")
  mkdir -p "$d/data" "$d/tmp"
  write_cnf "$1"
  chown -R mysql:mysql "$d"
  chmod 755 "$d"
}

# spawn PIDFILE LOG COMMAND ARGS...: run COMMAND detached in its own
# session (so it outlives this script and its terminal), its pid in PIDFILE.
# $! is COMMAND itself: setsid execs it (a background job in a script is
# not a process group leader), and mariadbd keeps its pid when it drops to
# mysql. Fails if COMMAND is gone before it has even been exec'd.
spawn() {
  local pidfile=$1 logfile=$2 name pid i
  shift 2
  name=$(basename "$1")
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pidfile"
  for ((i = 0; i < 100; i++)); do
    grep -q "$name" "/proc/$pid/comm" 2>/dev/null && return 0
    alive "$pid" || return 1
    sleep 0.05
  done
  return 1
}

# launch N ARGS...: start node N's mariadbd. (Its own pid file, mysqld.pid,
# appears only after SST, so the script keeps mariadbd.pid.)
launch() {
  local n=$1 d
  shift
  d=$(ndir "$n")
  spawn "$d/mariadbd.pid" "$d/stdout.log" "$MARIADBD" --defaults-file="$d/my.cnf" "$@" ||
    { tail_logs "$n"; die "node $n did not start"; }
}

# wait_synced N [SIZE]: until node N is Synced (and, with SIZE, sees a
# cluster of SIZE); on timeout or death, the tail of its log and failure.
wait_synced() {
  local n=$1 size=${2:-} deadline=$((SECONDS + TIMEOUT)) state cs
  while :; do
    node_pid "$n" >/dev/null || { tail_logs "$n"; die "node $n died"; }
    state=$(status_var "$n" wsrep_local_state)
    if [ "$state" = 4 ]; then
      [ -z "$size" ] && return 0
      cs=$(status_var "$n" wsrep_cluster_size)
      [ "$cs" = "$size" ] && return 0
    fi
    if ((SECONDS >= deadline)); then
      tail_logs "$n"
      die "node $n not Synced${size:+ in a cluster of $size} after ${TIMEOUT}s (state ${state:-none})"
    fi
    sleep 0.5
  done
}

tail_logs() {
  local n
  for n in "$@"; do
    echo "--- node $n: $(ndir "$n")/error.log" >&2
    tail -n 30 "$(ndir "$n")/error.log" >&2 2>/dev/null || true
  done
}

# recovered_position N: after a crash, mariadbd --wsrep-recover reads the
# last committed uuid:seqno from InnoDB; given to the restart, it lets the
# node ask for IST instead of a full SST.
recovered_position() {
  local d pos
  d=$(ndir "$1")
  # Only after a crash: a clean stop leaves the position in grastate.dat,
  # and a node that never started has nothing to recover.
  grep -q '^seqno: *-1' "$d/data/grastate.dat" 2>/dev/null || return 0
  "$MARIADBD" --defaults-file="$d/my.cnf" --wsrep-recover --log-error="$d/recover.log" >/dev/null 2>&1 || return 0
  pos=$(sed -n 's/.*WSREP: Recovered position: *//p' "$d/recover.log" | tail -n 1)
  cat "$d/recover.log" >>"$d/error.log"
  rm -f "$d/recover.log"
  [[ $pos =~ ^[0-9a-f-]{36}:[0-9]+$ ]] && [[ ${pos##*:} != -1 ]] && echo "$pos"
  return 0
}

# start_node N: start a stopped node. It joins the running nodes, or, when
# none is running, bootstraps a new primary component from its own data.
start_node() {
  local n=$1 d others=0 i pos args=()
  d=$(ndir "$n")
  [ -f "$d/my.cnf" ] || die "node $n has no config under $BASE; run up first"
  if node_pid "$n" >/dev/null; then log "node $n is already running"; return 0; fi
  port_busy "$(cport "$n")" && die "port $(cport "$n") is in use by something else"
  for i in "${NODES[@]}"; do
    [ "$i" != "$n" ] && node_pid "$i" >/dev/null && others=$((others + 1))
  done
  pos=$(recovered_position "$n")
  [ -n "$pos" ] && args+=(--wsrep_start_position="$pos")
  if ((others == 0)); then
    log "no other node is running: node $n bootstraps the cluster${pos:+ from $pos}"
    [ -f "$d/data/grastate.dat" ] && sed -i 's/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/' "$d/data/grastate.dat"
    args+=(--wsrep-new-cluster)
  else
    log "starting node $n${pos:+ from $pos}"
  fi
  launch "$n" "${args[@]}"
  wait_synced "$n"
  log "node $n Synced (cluster size $(status_var "$n" wsrep_cluster_size))"
  # Return once both HAProxy backends route to it again (rise 2: about 2 s;
  # each backend checks on its own).
  if haproxy_pid >/dev/null; then
    local deadline=$((SECONDS + 10))
    until haproxy_csv 2>/dev/null | awk -F, -v s="node$n" '$1 ~ /^galera_/ && $2 == s {n++; if ($18 == "UP") up++} END {exit !(n == 2 && up == 2)}'; do
      ((SECONDS < deadline)) || { log "haproxy has not taken node $n back"; return 1; }
      sleep 0.2
    done
    log "haproxy routes to node $n again"
  fi
}

kill_node() {
  local n=$1 pid
  pid=$(node_pid "$n") || { log "node $n is not running"; return 0; }
  kill -KILL "$pid"
  while alive "$pid"; do sleep 0.1; done
  log "node $n (pid $pid) killed"
}

# stop_pidfile FILE NAME: SIGTERM the process in FILE, SIGKILL after 30 s.
stop_pidfile() {
  local f=$1 name=$2 pid i
  [ -s "$f" ] || return 0
  pid=$(<"$f")
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    alive "$pid" || { log "$name stopped"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  log "$name killed after 30 s"
}

# --- haproxy ----------------------------------------------------------------

write_haproxy() {
  cat >"$BASE/check.sh" <<EOF
#!/bin/sh
# HAProxy external check: exit 0 only when the server at \$3:\$4 is a
# Synced Galera node (wsrep_local_state = 4).
state=\$(mariadb --no-defaults --protocol=tcp -h "\$3" -P "\$4" -u root \\
  --connect-timeout=1 -N -B -e "SHOW GLOBAL STATUS LIKE 'wsrep_local_state'" 2>/dev/null | cut -f2)
[ "\$state" = 4 ]
EOF
  chmod 755 "$BASE/check.sh"
  local chk="check inter 1s fall 2 rise 2 on-marked-down shutdown-sessions"
  cat >"$BASE/haproxy.cfg" <<EOF
# Generated by cluster/galera.sh.
global
  maxconn 4000
  # Server state changes are written to stderr (-db): haproxy.log.
  external-check
  insecure-fork-wanted

defaults
  mode tcp
  option tcpka
  option redispatch # a failed connect is retried on another server
  retries 2
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  timeout check 2s
  option external-check
  external-check path "/usr/bin:/bin:/usr/sbin:/sbin"
  external-check command $BASE/check.sh

# One writer: node1, else the first healthy backup.
listen galera_single
  bind $HOST:$SINGLE_PORT
  server node1 $HOST:$(cport 1) $chk on-marked-up shutdown-backup-sessions
  server node2 $HOST:$(cport 2) $chk backup
  server node3 $HOST:$(cport 3) $chk backup

# Every Synced node.
listen galera_multi
  bind $HOST:$MULTI_PORT
  balance leastconn
  server node1 $HOST:$(cport 1) $chk
  server node2 $HOST:$(cport 2) $chk
  server node3 $HOST:$(cport 3) $chk

listen stats
  bind $HOST:$STATS_PORT
  mode http
  stats enable
  stats uri /
  stats refresh 2s
EOF
}

haproxy_pid() {
  local pid
  [ -s "$BASE/haproxy.pid" ] || return 1
  pid=$(<"$BASE/haproxy.pid")
  alive "$pid" && grep -q haproxy "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

start_haproxy() {
  if haproxy_pid >/dev/null; then log "haproxy already running"; return 0; fi
  local p
  for p in "$SINGLE_PORT" "$MULTI_PORT" "$STATS_PORT"; do
    port_busy "$p" && die "port $p is in use by something else"
  done
  write_haproxy
  haproxy -c -q -f "$BASE/haproxy.cfg" || die "bad $BASE/haproxy.cfg"
  spawn "$BASE/haproxy.pid" "$BASE/haproxy.log" "$(command -v haproxy)" -db -f "$BASE/haproxy.cfg" ||
    { tail -n 20 "$BASE/haproxy.log" >&2; die "haproxy did not start"; }
  # Up once every frontend listens and the checks have seen the nodes.
  local deadline=$((SECONDS + 15))
  while :; do
    haproxy_pid >/dev/null || { tail -n 20 "$BASE/haproxy.log" >&2; die "haproxy died"; }
    if port_busy "$SINGLE_PORT" && port_busy "$MULTI_PORT" && [ "$(haproxy_up_count galera_multi)" = 3 ]; then
      break
    fi
    ((SECONDS < deadline)) || { tail -n 20 "$BASE/haproxy.log" >&2; die "haproxy does not see three healthy nodes"; }
    sleep 0.2
  done
  log "haproxy up: single writer $HOST:$SINGLE_PORT, multi writer $HOST:$MULTI_PORT, stats http://$HOST:$STATS_PORT/"
}

# haproxy_csv: the stats page as CSV, fetched with bash alone.
haproxy_csv() {
  local line
  exec 3<>"/dev/tcp/$HOST/$STATS_PORT" || return 1
  printf 'GET /;csv HTTP/1.0\r\nHost: %s\r\n\r\n' "$HOST" >&3
  # Skip the headers, then print the body.
  while IFS= read -r line <&3; do [ "${line%$'\r'}" = "" ] && break; done
  cat <&3
  exec 3<&-
}

# haproxy_up_count BACKEND: how many of its servers HAProxy has UP.
haproxy_up_count() {
  haproxy_csv 2>/dev/null | awk -F, -v b="$1" '$1 == b && $2 ~ /^node/ && $18 == "UP" {n++} END {print n + 0}'
}

# --- commands ---------------------------------------------------------------

env_lines() {
  local n nodes=()
  for n in "${NODES[@]}"; do nodes+=("root@tcp($HOST:$(cport "$n"))/"); done
  echo "export CLUSTER_DSN='root@tcp($HOST:$MULTI_PORT)/'"
  echo "export CLUSTER_WRITER_DSN='root@tcp($HOST:$SINGLE_PORT)/'"
  echo "export CLUSTER_NODES='$(IFS=,; echo "${nodes[*]}")'"
}

cmd_up() {
  local t0=$SECONDS n running=0
  ensure_packages
  for n in "${NODES[@]}"; do node_pid "$n" >/dev/null && running=$((running + 1)); done
  if ((running == 3)); then
    log "already up"
  elif ((running > 0)); then
    log "$running of 3 nodes running; starting the others"
    for n in "${NODES[@]}"; do node_pid "$n" >/dev/null || start_node "$n"; done
  else
    fresh_cluster
  fi
  for n in "${NODES[@]}"; do wait_synced "$n" 3; done
  start_haproxy
  log "up in $((SECONDS - t0)) s"
  env_lines
}

# fresh_cluster: new data dirs; bootstrap node 1, then join 2 and 3.
fresh_cluster() {
  local n p
  for n in "${NODES[@]}"; do
    for p in "$(cport "$n")" "${GMCAST_PORTS[$n - 1]}" "${IST_PORTS[$n - 1]}" "${SST_PORTS[$n - 1]}"; do
      port_busy "$p" && die "port $p is in use by something else"
    done
  done
  if [ -e "$BASE" ]; then
    [ -e "$MARKER" ] || die "$BASE exists and was not made by this script; remove it or set GALERA_BASE"
    log "removing stale $BASE"
    rm -rf "$BASE"
  fi
  mkdir -p "$BASE"
  chmod 755 "$BASE"
  touch "$MARKER"
  runuser -u mysql -- test -x "$BASE" ||
    die "the mysql user cannot reach $BASE (a parent directory is not world-searchable); set GALERA_BASE elsewhere"
  for n in "${NODES[@]}"; do prepare_node "$n"; done

  log "initialising node 1"
  # Root with no password from localhost, 127.0.0.1 and ::1.
  mariadb-install-db --no-defaults --user=mysql --datadir="$(ndir 1)/data" \
    --auth-root-authentication-method=normal --skip-test-db --tmpdir="$(ndir 1)/tmp" \
    >"$(ndir 1)/install.log" 2>&1 || { cat "$(ndir 1)/install.log" >&2; die "mariadb-install-db failed"; }
  log "bootstrapping node 1"
  launch 1 --wsrep-new-cluster
  wait_synced 1
  # One at a time: two nodes joining at once can make the group fall back
  # to a non-primary view for seconds while it re-forms.
  for n in 2 3; do
    log "joining node $n (rsync SST)"
    launch "$n"
    wait_synced "$n"
  done
}

cmd_down() {
  local n
  [ -d "$BASE" ] || { log "nothing at $BASE"; return 0; }
  [ -e "$MARKER" ] || die "$BASE was not made by this script; not touching it"
  stop_pidfile "$BASE/haproxy.pid" haproxy
  for n in "${NODES[@]}"; do stop_pidfile "$(ndir "$n")/mariadbd.pid" "node $n" & done
  wait
  # An SST interrupted by the stop can leave its rsync daemon behind.
  for n in "${NODES[@]}"; do stop_pidfile "$(ndir "$n")/data/rsync_sst.pid" "node $n rsync"; done
  rm -rf "$BASE"
  log "down; removed $BASE"
}

cmd_status() {
  local n pid state size cstatus rc=0
  for n in "${NODES[@]}"; do
    if pid=$(node_pid "$n"); then
      state=$(status_var "$n" wsrep_local_state_comment)
      size=$(status_var "$n" wsrep_cluster_size)
      cstatus=$(status_var "$n" wsrep_cluster_status)
      printf 'node%s  %s:%s  pid %-7s %-10s cluster_size=%s %s\n' "$n" "$HOST" "$(cport "$n")" "$pid" \
        "${state:-no-answer}" "${size:-?}" "${cstatus:-}"
      [ "$state" = Synced ] || rc=1
    else
      printf 'node%s  %s:%s  down\n' "$n" "$HOST" "$(cport "$n")"
      rc=1
    fi
  done
  if pid=$(haproxy_pid); then
    printf 'haproxy pid %s up: single writer %s:%s, multi writer %s:%s\n' "$pid" "$HOST" "$SINGLE_PORT" "$HOST" "$MULTI_PORT"
    haproxy_csv 2>/dev/null | awk -F, '$1 ~ /^galera_/ && $2 ~ /^node/ {
      printf "  %-14s %s %-5s%s\n", $1, $2, $18, ($21 == "1" ? " (backup)" : "") }'
  else
    echo "haproxy down"
    rc=1
  fi
  return "$rc"
}

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

node_arg() {
  [[ ${1:-} =~ ^[123]$ ]] || die "node must be 1, 2 or 3"
}

main() {
  local cmd=${1:-}
  check_config
  case $cmd in
    up) cmd_up ;;
    down) cmd_down ;;
    kill) node_arg "${2:-}"; kill_node "$2" ;;
    start) node_arg "${2:-}"; ensure_packages; start_node "$2" ;;
    status) cmd_status ;;
    env) env_lines ;;
    *) usage ;;
  esac
}

main "$@"
