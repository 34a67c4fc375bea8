#!/usr/bin/env bash
# Runs a throw-away highly available PostgreSQL on 127.0.0.1 for the failover tests, the
# benchmarks and failover drills: three etcd members, three Patroni nodes (PostgreSQL with
# pg_partman, streaming replication, pg_rewind) and HAProxy in front, which routes a write
# port to the leader and a read port to the replicas by asking each node's Patroni REST API
# (GET /primary, GET /replica). The same tools, from Debian's packages, as a production
# deployment; scripts/install-deps.sh installs them.
#
#   scripts/ha.sh start [--dir DIR] [--sync]
#                       start the cluster on free ports and wait until the leader takes
#                       writes through HAProxy and both replicas stream; --sync turns on
#                       Patroni's synchronous_mode (a commit waits for one replica's flush)
#   scripts/ha.sh stop [--dir DIR]      stop everything and delete DIR; fine to run twice
#   scripts/ha.sh status [--dir DIR]    the members as Patroni sees them (patronictl list)
#   scripts/ha.sh leader [--dir DIR]    the leader's name (node1, node2 or node3)
#   scripts/ha.sh kill-leader postgres|node [--dir DIR]
#                       the drill: SIGKILL the leader's PostgreSQL (its Patroni stays and
#                       hands over at once), or the whole node (Patroni and PostgreSQL: the
#                       leader key expires after the TTL); prints the killed node's name
#   scripts/ha.sh start-node NAME [--dir DIR]   start a killed node's Patroni again (it
#                       rejoins as a replica, rewound with pg_rewind when needed)
#   scripts/ha.sh switchover [--dir DIR]        a planned switchover to a replica
#
# The last line `start` prints on stdout is
#
#   PM_DATABASE_URL=postgres://…@127.0.0.1:WRITE/payments PM_DATABASE_REPLICA_URL=…:READ/payments
#
# and DIR/env holds the same two lines, sourceable. The database `payments` is made at start;
# the URLs use the superuser (pg_partman's extension needs it for `pmctl migrate`).
#
# DIR (default ${TMPDIR:-/tmp}/pm-ha) holds etcdN/ and nodeN/ (patroni.yml, data/, logs,
# pid), haproxy.cfg, ports and the generated passwords (secrets, mode 600). When run as root,
# DIR is handed to the `postgres` user, which runs etcd, Patroni and PostgreSQL (PostgreSQL
# refuses root); HAProxy runs as the caller. One DIR is one cluster.
#
# Failure detection is tuned for a lab, not a WAN: TTL 10 s, loop_wait 1 s, retry_timeout
# 3 s, primary_start_timeout 0 (a leader whose PostgreSQL dies hands over immediately rather
# than restarting in place), HAProxy checks every 500 ms and closes the sessions of a server
# it marks down, so clients see their connections break instead of hanging.
#
# Environment: PM_HA_DIR (the default DIR), PM_HA_START_TIMEOUT (seconds, default 90).
set -euo pipefail

say() { echo "ha.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

cmd=${1:-}
[ $# -gt 0 ] && shift
dir=${PM_HA_DIR:-${TMPDIR:-/tmp}/pm-ha}
sync=false
arg=
while [ $# -gt 0 ]; do
    case $1 in
    --dir)
        dir=$2
        shift 2
        ;;
    --sync)
        sync=true
        shift
        ;;
    -*) die "unknown option $1" ;;
    *)
        [ -z "$arg" ] || die "unexpected argument $1"
        arg=$1
        shift
        ;;
    esac
done
start_timeout=${PM_HA_START_TIMEOUT:-90}
nodes=(node1 node2 node3)

# etcd, Patroni and PostgreSQL run as `postgres` when we are root.
as_server=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no postgres user (install PostgreSQL: scripts/install-deps.sh)"
    as_server=(setpriv "--reuid=$(id -u postgres)" "--regid=$(id -g postgres)" --init-groups)
fi

pg_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$bin" ] && [ -x "$bin/postgres" ] || die "no PostgreSQL server binaries (scripts/install-deps.sh)"
    echo "$bin"
}

need_tools() {
    local tool
    for tool in etcd etcdctl patroni patronictl curl; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/install-deps.sh)"
    done
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || die "haproxy is missing (scripts/install-deps.sh)"
}

haproxy_bin() { command -v haproxy 2>/dev/null || echo /usr/sbin/haproxy; }

free_ports() {
    # Binding port 0 lets the kernel choose ports nobody holds; all sockets stay open until
    # all are chosen, so they differ.
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

password() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }

# Runs a program detached (its own session, so a caller's Ctrl+C or process-group kill does
# not reach it), as the server user, logging to $1; writes its pid to $2.
launch() {
    local log=$1 pidfile=$2
    shift 2
    setsid "${as_server[@]}" "$@" >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

load_ports() {
    [ -f "$dir/ports" ] || die "no cluster in $dir (scripts/ha.sh start --dir $dir)"
    # shellcheck disable=SC1091
    . "$dir/ports"
}

node_index() {
    case $1 in
    node1) echo 0 ;;
    node2) echo 1 ;;
    node3) echo 2 ;;
    *) die "no node $1 (node1, node2, node3)" ;;
    esac
}

rest_port() {
    local -a rest
    read -r -a rest <<<"$REST_PORTS"
    echo "${rest[$(node_index "$1")]}"
}

# The HTTP status of GET path on a node's Patroni REST API (000 when it does not answer).
rest_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$(rest_port "$1")$2" || true
}

wait_for() {
    local what=$1 deadline=$((SECONDS + start_timeout))
    shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || die "timed out after ${start_timeout}s waiting for $what (logs in $dir)"
        sleep 0.3
    done
}

leader() {
    local node
    for node in "${nodes[@]}"; do
        if [ "$(rest_status "$node" /primary)" = 200 ]; then
            echo "$node"
            return 0
        fi
    done
    return 1
}

replicas_streaming() {
    local node count=0
    for node in "${nodes[@]}"; do
        [ "$(rest_status "$node" /replica)" = 200 ] && count=$((count + 1))
    done
    [ $count -eq 2 ]
}

node1_leads() { [ "$(rest_status node1 /primary)" = 200 ]; }

has_sync_standby() {
    local node
    for node in "${nodes[@]}"; do
        [ "$(rest_status "$node" /sync)" = 200 ] && return 0
    done
    return 1
}

etcd_healthy() {
    ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" --dial-timeout=1s --command-timeout=2s \
        endpoint health >/dev/null 2>&1
}

psql_write() {
    local bin
    bin=$(pg_bin)
    PGPASSWORD=$SUPERUSER_PASSWORD PGCONNECT_TIMEOUT=3 "$bin/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$WRITE_PORT" -U postgres "$@"
}

# HAProxy's view of the backends as "primary:UP replicas:UP replicas:UP …" (one word per
# server that is up), from its stats socket. Servers count as up until their first checks
# ran, so a fresh HAProxy is only trusted once this shows one primary and both replicas.
haproxy_up() {
    python3 - "$dir/haproxy.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
ups = []
for line in data.decode().splitlines():
    f = line.split(",")
    if len(f) > 17 and f[1] not in ("FRONTEND", "BACKEND", "svname") and f[17] == "UP":
        ups.append(f[0])
print(" ".join(sorted(ups)))
PY
}

haproxy_settled() {
    [ "$(haproxy_up 2>/dev/null)" = "primary replicas replicas" ]
}

writes_through_haproxy() {
    [ "$(psql_write -d postgres -tAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]
}

write_patroni_config() {
    local name=$1 pg_port=$2 rest=$3 bin=$4
    local node_dir=$dir/$name
    cat >"$node_dir/patroni.yml" <<EOF
scope: payment-manager
namespace: /pm-ha/
name: $name

restapi:
  listen: 127.0.0.1:$rest
  connect_address: 127.0.0.1:$rest

etcd3:
  hosts: $ETCD_ENDPOINTS_HOSTS

bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    primary_start_timeout: 0
    synchronous_mode: $sync
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        max_connections: 200
        shared_preload_libraries: pg_stat_statements
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - data-checksums
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256

postgresql:
  listen: 127.0.0.1:$pg_port
  connect_address: 127.0.0.1:$pg_port
  data_dir: $node_dir/data
  bin_dir: $bin
  pgpass: $node_dir/pgpass
  authentication:
    superuser:
      username: postgres
      password: "$SUPERUSER_PASSWORD"
    replication:
      username: replicator
      password: "$REPLICATION_PASSWORD"
    rewind:
      username: postgres
      password: "$SUPERUSER_PASSWORD"
  parameters:
    unix_socket_directories: $node_dir
    log_destination: stderr
    logging_collector: "off"
EOF
}

write_haproxy_config() {
    local -a pg rest
    read -r -a pg <<<"$PG_PORTS"
    read -r -a rest <<<"$REST_PORTS"
    {
        cat <<EOF
global
    maxconn 2000
    pidfile $dir/haproxy.pid
    stats socket $dir/haproxy.sock mode 600 level user

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 2s
    # A server marked down has its sessions closed: clients get a broken connection at once
    # instead of talking to a demoted or dead node.
    default-server inter 500ms fastinter 250ms fall 2 rise 2 on-marked-down shutdown-sessions

listen primary
    bind 127.0.0.1:$WRITE_PORT
    option httpchk GET /primary
    http-check expect status 200
EOF
        for i in 0 1 2; do
            echo "    server ${nodes[$i]} 127.0.0.1:${pg[$i]} check port ${rest[$i]}"
        done
        cat <<EOF

listen replicas
    bind 127.0.0.1:$READ_PORT
    balance roundrobin
    option httpchk GET /replica
    http-check expect status 200
EOF
        for i in 0 1 2; do
            echo "    server ${nodes[$i]} 127.0.0.1:${pg[$i]} check port ${rest[$i]}"
        done
    } >"$dir/haproxy.cfg"
}

start_node() {
    local name=$1
    launch "$dir/$name/patroni.log" "$dir/$name/pid" patroni "$dir/$name/patroni.yml"
}

start() {
    need_tools
    local bin
    bin=$(pg_bin)
    if [ -f "$dir/env" ] && alive "$dir/haproxy.pid"; then
        say "already running in $dir"
        tail -n 1 "$dir/env.line"
        return 0
    fi
    stop_all quiet
    if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
        die "$dir is not empty and holds no cluster of ours: give another --dir"
    fi
    mkdir -p "$dir"
    local -a p
    read -r -a p <<<"$(free_ports 14)"
    SUPERUSER_PASSWORD=$(password)
    REPLICATION_PASSWORD=$(password)
    ETCD_CLIENT_PORTS="${p[0]} ${p[1]} ${p[2]}"
    ETCD_PEER_PORTS="${p[3]} ${p[4]} ${p[5]}"
    PG_PORTS="${p[6]} ${p[7]} ${p[8]}"
    REST_PORTS="${p[9]} ${p[10]} ${p[11]}"
    WRITE_PORT=${p[12]}
    READ_PORT=${p[13]}
    ETCD_ENDPOINTS="http://127.0.0.1:${p[0]},http://127.0.0.1:${p[1]},http://127.0.0.1:${p[2]}"
    ETCD_ENDPOINTS_HOSTS="127.0.0.1:${p[0]},127.0.0.1:${p[1]},127.0.0.1:${p[2]}"
    cat >"$dir/ports" <<EOF
ETCD_CLIENT_PORTS="$ETCD_CLIENT_PORTS"
ETCD_PEER_PORTS="$ETCD_PEER_PORTS"
PG_PORTS="$PG_PORTS"
REST_PORTS="$REST_PORTS"
WRITE_PORT=$WRITE_PORT
READ_PORT=$READ_PORT
ETCD_ENDPOINTS="$ETCD_ENDPOINTS"
SYNC=$sync
EOF
    (
        umask 077
        cat >"$dir/secrets" <<EOF
SUPERUSER_PASSWORD=$SUPERUSER_PASSWORD
REPLICATION_PASSWORD=$REPLICATION_PASSWORD
EOF
    )
    cat "$dir/secrets" >>"$dir/ports"
    chmod 600 "$dir/ports"

    local cluster="" i
    for i in 0 1 2; do
        cluster+="${cluster:+,}etcd$((i + 1))=http://127.0.0.1:${p[$((3 + i))]}"
    done
    for i in 0 1 2; do
        mkdir -p "$dir/etcd$((i + 1))" "$dir/${nodes[$i]}"
        write_patroni_config "${nodes[$i]}" "${p[$((6 + i))]}" "${p[$((9 + i))]}" "$bin"
    done
    write_haproxy_config
    [ ${#as_server[@]} -eq 0 ] || chown -R postgres:postgres "$dir"
    # The data directories must be private to their owner, or PostgreSQL refuses them.
    chmod 700 "$dir"

    for i in 0 1 2; do
        local name=etcd$((i + 1))
        launch "$dir/$name/etcd.log" "$dir/$name/pid" etcd --name "$name" \
            --data-dir "$dir/$name/data" \
            --listen-client-urls "http://127.0.0.1:${p[$i]}" \
            --advertise-client-urls "http://127.0.0.1:${p[$i]}" \
            --listen-peer-urls "http://127.0.0.1:${p[$((3 + i))]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${p[$((3 + i))]}" \
            --initial-cluster "$cluster" --initial-cluster-token payment-manager-ha \
            --initial-cluster-state new
    done
    wait_for "etcd" etcd_healthy
    say "etcd is up ($ETCD_ENDPOINTS)"

    # node1 bootstraps the cluster (initdb); the others then copy it with pg_basebackup.
    start_node node1
    wait_for "node1 to lead" node1_leads
    start_node node2
    start_node node3
    wait_for "both replicas to stream" replicas_streaming
    if [ "$sync" = true ]; then
        wait_for "a synchronous standby" has_sync_standby
    fi

    "$(haproxy_bin)" -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid" >>"$dir/haproxy.log" 2>&1
    wait_for "HAProxy to check every node" haproxy_settled
    wait_for "writes through HAProxy" writes_through_haproxy
    if [ "$(psql_write -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'payments'")" != 1 ]; then
        psql_write -d postgres -c 'CREATE DATABASE payments'
    fi

    local user=postgres:$SUPERUSER_PASSWORD
    cat >"$dir/env" <<EOF
PM_DATABASE_URL=postgres://$user@127.0.0.1:$WRITE_PORT/payments
PM_DATABASE_REPLICA_URL=postgres://$user@127.0.0.1:$READ_PORT/payments
EOF
    chmod 600 "$dir/env"
    tr '\n' ' ' <"$dir/env" | sed 's/ $/\n/' >"$dir/env.line"
    say "up: leader $(leader), writes on 127.0.0.1:$WRITE_PORT, reads on 127.0.0.1:$READ_PORT (synchronous_mode: $sync)"
    cat "$dir/env.line"
}

# SIGTERM, then SIGKILL after a grace period, for the pid in a pid file.
stop_pidfile() {
    local pidfile=$1 grace=${2:-20} pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + grace))
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

postmaster_pid() { [ -f "$dir/$1/data/postmaster.pid" ] && head -n 1 "$dir/$1/data/postmaster.pid"; }

stop_all() {
    # Only a directory of ours (its ports file says so) is stopped and deleted.
    [ -f "$dir/ports" ] || return 0
    stop_pidfile "$dir/haproxy.pid" 5
    local node pid
    # Patroni stops its PostgreSQL (fast shutdown) when it gets SIGTERM.
    for node in "${nodes[@]}"; do
        stop_pidfile "$dir/$node/pid" 20 &
    done
    wait
    for node in "${nodes[@]}"; do
        pid=$(postmaster_pid "$node" || true)
        [ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
    done
    for node in etcd1 etcd2 etcd3; do
        stop_pidfile "$dir/$node/pid" 10 &
    done
    wait
    rm -rf "$dir"
    [ "${1:-}" = quiet ] || say "stopped"
}

kill_leader() {
    local how=$1 name pid
    name=$(leader) || die "no leader right now"
    pid=$(postmaster_pid "$name") || die "no postmaster.pid for $name"
    case $how in
    postgres) kill -KILL "$pid" ;;
    node)
        kill -KILL "$(cat "$dir/$name/pid")" 2>/dev/null || true
        kill -KILL "$pid"
        rm -f "$dir/$name/pid"
        ;;
    *) die "kill-leader postgres|node, not '$how'" ;;
    esac
    say "killed $how of $name (postmaster $pid)"
    echo "$name"
}

case $cmd in
start) start ;;
stop) stop_all ;;
status)
    load_ports
    patronictl -c "$dir/node1/patroni.yml" list
    ;;
leader)
    load_ports
    leader || die "no leader right now"
    ;;
kill-leader)
    load_ports
    kill_leader "${arg:-}"
    ;;
start-node)
    load_ports
    [ -n "$arg" ] || die "start-node NAME"
    node_index "$arg" >/dev/null
    alive "$dir/$arg/pid" && die "$arg is running"
    start_node "$arg"
    say "started $arg"
    ;;
switchover)
    load_ports
    patronictl -c "$dir/node1/patroni.yml" switchover --force payment-manager
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
