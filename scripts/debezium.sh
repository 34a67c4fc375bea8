#!/usr/bin/env bash
# Runs Debezium as the second outbox relay: a Kafka Connect standalone worker with Debezium's
# PostgreSQL connector reads the `outbox` table's inserts from the write-ahead log (logical
# replication, pgoutput) and its outbox event router publishes each event's payload to the
# domain-events topic, keyed by aggregate id with the event id in the `pm-event-id` header —
# the same messages `pmctl outbox-relay` sends. The jars come from Maven Central once
# (scripts/debezium/pom.xml names the versions) into a cache outside the checkout. Needs Java
# 17+, Maven and psql, which scripts/install-deps.sh installs, a running Kafka
# (scripts/kafka.sh) and a PostgreSQL with `wal_level = logical`.
#
#   scripts/debezium.sh fetch          download the jars into the cache, unless already there
#   scripts/debezium.sh start --database-url URL --brokers LIST [--topic NAME] [--slot NAME]
#                             [--publication NAME] [--dir DIR] [--heap SIZE]
#                                      start a worker and wait until its connector streams
#   scripts/debezium.sh stop [--dir DIR] [--drop-slot]
#                                      stop the worker (its offsets are flushed) and delete
#                                      DIR; --drop-slot also drops the replication slot and
#                                      the publication. Fine to run twice.
#   scripts/debezium.sh kill [--dir DIR]   SIGKILL the worker and keep DIR (fault tests);
#                                      `start --dir DIR` then resumes it
#   scripts/debezium.sh status [--dir DIR] the connector's state; exits 1 unless it runs
#
# start's options: URL is a postgres:// URL of the database holding the outbox, as a user with
# the REPLICATION attribute (or a superuser) that owns the outbox table (to create the
# publication). LIST is the brokers' bootstrap list. NAME defaults: topic `domain-events`
# (the full name: add the service's PM_KAFKA_TOPIC_PREFIX), slot `pm_outbox`, publication
# `pm_outbox`. SIZE is the worker's heap (default 384m).
#
# The publication covers `public.outbox` with `publish_via_partition_root = true` (the outbox
# is partitioned by day; without it the changes would come under each partition's name) and
# publishes inserts only. The slot is created by the connector on its first start and holds
# the position in the WAL: a worker restarted after a crash, or started afresh after `stop`,
# resumes where the slot stands, so every committed event is published at least once. Events
# committed before the slot first existed are not in its stream (snapshot.mode=no_data): start
# Debezium before the services take traffic, or drain the outbox with `pmctl outbox-relay`
# first. A slot nobody reads keeps WAL on the server: `stop --drop-slot` when Debezium is
# retired. Debezium never marks events published; prune the outbox by age
# (`pmctl partition-maintain --outbox-published-by debezium`).
#
# The last line `start` prints on stdout is `PM_DEBEZIUM_REST=http://127.0.0.1:PORT` (the
# worker's REST API); nothing else goes to stdout. DIR (default ${TMPDIR:-/tmp}/pm-debezium)
# holds worker.properties and connector.properties (mode 600: they hold the password),
# offsets (the worker's source offsets), connect.log, stdout.log and pid.
#
# Environment: PM_DEBEZIUM_HOME (the cache; default ~/.cache/payment-manager/debezium-VERSION),
# PM_DEBEZIUM_DIR (the default DIR), PM_DEBEZIUM_START_TIMEOUT (seconds, default 120),
# PM_DEBEZIUM_STOP_TIMEOUT (seconds, default 30), JAVA_HOME.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom=$here/debezium/pom.xml
log4j=$here/debezium/log4j2.properties
version=$(sed -n 's:.*<debezium.version>\(.*\)</debezium.version>.*:\1:p' "$pom")
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
home=${PM_DEBEZIUM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/payment-manager/debezium-$version-kafka-$kafka_version}
libs=$home/libs
java=${JAVA_HOME:+$JAVA_HOME/bin/}java
connector=pm-outbox

say() { echo "debezium.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# --- the jar cache -------------------------------------------------------------------------

pom_sum() { sha256sum "$pom" | cut -d' ' -f1; }

fetch() {
    if [ "$(cat "$libs/.complete" 2>/dev/null)" = "$(pom_sum)" ]; then
        return
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found: run scripts/install-deps.sh (or apt-get install maven)"
    mkdir -p "$home"
    exec 9>"$home/.fetch.lock"
    flock 9
    if [ "$(cat "$libs/.complete" 2>/dev/null)" != "$(pom_sum)" ]; then
        say "downloading Debezium $version and Kafka Connect $kafka_version from Maven Central into $libs (once)"
        local tmp=$home/libs.partial
        rm -rf "$tmp"
        if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$tmp" 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^$/d' >&2; then
            rm -rf "$tmp"
            die "maven could not resolve the Debezium $version jars (its error is above)"
        fi
        pom_sum >"$tmp/.complete"
        rm -rf "$libs"
        mv "$tmp" "$libs"
    fi
    exec 9>&-
}

need_tools() {
    command -v "$java" >/dev/null 2>&1 || die "java not found: run scripts/install-deps.sh"
    local major
    major=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
    [ "${major:-0}" -ge 17 ] || die "Debezium $version needs Java 17 or newer; $java is ${major:-unknown}"
    command -v psql >/dev/null 2>&1 || die "psql not found: run scripts/install-deps.sh"
    command -v curl >/dev/null 2>&1 || die "curl not found: run scripts/install-deps.sh"
}

# --- the worker directory ------------------------------------------------------------------

set_dir() { dir=$(realpath -m -- "$1"); }
set_dir "${PM_DEBEZIUM_DIR:-${TMPDIR:-/tmp}/pm-debezium}"

ours() { [ -e "$dir/.pm-debezium" ]; }

lock_dir() {
    mkdir -p "$dir"
    exec 8<"$dir"
    flock 8
}

# The worker's pid when it runs; the command line is checked too, so that a pid the system
# has since given to another process is neither taken for the worker nor killed.
worker_pid() {
    local pid
    pid=$(cat "$dir/pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null \
        | grep -F "$dir/worker.properties" >/dev/null && echo "$pid"
}

rest_url() { echo "http://127.0.0.1:$(sed -n 's/^listeners=http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$dir/worker.properties")"; }

# A setting of the saved connector configuration.
setting() { sed -n "s/^$1=//p" "$dir/connector.properties"; }

# libpq's connection string of the saved configuration, for psql.
conninfo() {
    printf "host=%s port=%s user=%s dbname=%s sslmode=%s" "$(setting database.hostname)" \
        "$(setting database.port)" "$(setting database.user)" "$(setting database.dbname)" \
        "$(setting database.sslmode)"
}

sql() {
    PGPASSWORD=$(setting database.password) PGCONNECT_TIMEOUT=10 \
        psql "$(conninfo)" -X -q -v ON_ERROR_STOP=1 -At -c "$1"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

percent_decode() { printf '%b' "${1//%/\\x}"; }

# Writes the worker's and the connector's configuration from start's options.
write_config() {
    local url=$1 brokers=$2 topic=$3 slot=$4 publication=$5
    local re='^postgres(ql)?://([^:@/]*)(:([^@/]*))?@([^:/?]+|\[[^]]*\])(:([0-9]+))?/([^?]+)(\?(.*))?$'
    [[ $url =~ $re ]] || die "--database-url: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...], got something else"
    local user password host port database query sslmode=prefer
    user=$(percent_decode "${BASH_REMATCH[2]}")
    password=$(percent_decode "${BASH_REMATCH[4]}")
    host=${BASH_REMATCH[5]}
    host=${host#[}
    host=${host%]}
    port=${BASH_REMATCH[7]:-5432}
    database=$(percent_decode "${BASH_REMATCH[8]}")
    query=${BASH_REMATCH[10]}
    if [[ $query =~ (^|&)sslmode=([a-z-]+) ]]; then sslmode=${BASH_REMATCH[2]}; fi
    [[ $slot =~ ^[a-z0-9_]{1,63}$ ]] || die "--slot: lower-case letters, digits and _ only (a replication slot name), got $slot"
    [[ $publication =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "--publication: a plain lower-case identifier, got $publication"
    [[ $topic =~ ^[A-Za-z0-9._-]{1,249}$ ]] || die "--topic: not a Kafka topic name: $topic"

    umask 077
    cat >"$dir/worker.properties" <<EOF
bootstrap.servers=$brokers
listeners=http://127.0.0.1:$(free_port)
# The connector hands over strings (the aggregate id, the payload's JSON text): written as
# they are, so the value is the very JSON the outbox holds.
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
offset.storage.file.filename=$dir/offsets
# Offsets (and so the slot's confirmed position) advance at most this often; after a crash
# the events since the last flush are published again.
offset.flush.interval.ms=1000
plugin.discovery=service_load
EOF
    cat >"$dir/connector.properties" <<EOF
name=$connector
connector.class=io.debezium.connector.postgresql.PostgresConnector
tasks.max=1
plugin.name=pgoutput
database.hostname=$host
database.port=$port
database.user=$user
database.password=$password
database.dbname=$database
database.sslmode=$sslmode
topic.prefix=pm-outbox
table.include.list=public.outbox
publication.name=$publication
publication.autocreate.mode=disabled
slot.name=$slot
snapshot.mode=no_data
# How long the connector waits for more changes before it hands a batch to Connect; the
# default (500 ms) adds up to that much lag to a quiet outbox.
poll.interval.ms=50
max.batch.size=4096
max.queue.size=16384
# Lets the slot advance while the outbox is quiet but other tables write WAL.
heartbeat.interval.ms=10000
topic.creation.default.partitions=-1
topic.creation.default.replication.factor=-1
transforms=outbox
transforms.outbox.type=io.debezium.transforms.outbox.EventRouter
transforms.outbox.table.field.event.id=event_id
transforms.outbox.table.field.event.key=aggregate_id
transforms.outbox.table.field.event.payload=payload
transforms.outbox.table.fields.additional.placement=event_id:header:pm-event-id
transforms.outbox.route.by.field=aggregate_type
transforms.outbox.route.topic.replacement=$topic
transforms.outbox.table.expand.json.payload=false
EOF
}

# Checks the server can stream, and creates the publication unless it exists.
prepare_database() {
    local level
    level=$(sql "SHOW wal_level") || die "cannot reach the database (the error is above)"
    [ "$level" = logical ] || die "the server runs with wal_level=$level; logical decoding needs wal_level=logical (and a restart)"
    local publication
    publication=$(setting publication.name)
    sql "DO \$\$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '$publication') THEN
             CREATE PUBLICATION $publication FOR TABLE public.outbox
               WITH (publish = 'insert', publish_via_partition_root = true);
           END IF;
         END \$\$" >/dev/null || die "could not create the publication $publication (the error is above)"
}

launch() {
    rm -f "$dir/pid"
    # As kafka.sh's nodes: setsid so the worker outlives the caller, the inner shell writes its
    # pid and becomes java, the lock and the caller's streams are not inherited.
    # shellcheck disable=SC2016 # $$ and "$@" belong to the inner shell
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$dir/pid" \
        "$java" "-Xmx$heap" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$log4j" -Dpm.debezium.log="$dir/connect.log" \
        -cp "$libs/*" org.apache.kafka.connect.cli.ConnectStandalone \
        "$dir/worker.properties" "$dir/connector.properties" \
        </dev/null >>"$dir/stdout.log" 2>&1 8<&- 9>&- &
    disown
    for _ in $(seq 50); do
        [ -s "$dir/pid" ] && return
        sleep 0.1
    done
    die "the worker did not start (see $dir/stdout.log)"
}

show_logs() {
    for f in connect.log stdout.log; do
        [ -s "$dir/$f" ] || continue
        echo "----- tail of $dir/$f -----" >&2
        tail -n 40 "$dir/$f" | cut -c 1-400 >&2
    done
}

# The connector's and its task's states, e.g. "RUNNING RUNNING"; empty while the REST API
# does not answer.
states() {
    curl -fsS --max-time 5 "$(rest_url)/connectors/$connector/status" 2>/dev/null \
        | python3 -c '
import json, sys
s = json.load(sys.stdin)
tasks = s.get("tasks") or [{"state": "NONE"}]
print(s["connector"]["state"], tasks[0]["state"])
for t in tasks:
    if t.get("trace"):
        print(t["trace"].splitlines()[0], file=sys.stderr)'
}

# Waits until the task runs and its slot is being read: only then is every event committed
# from now on in the stream.
wait_ready() {
    local deadline=$((SECONDS + ${PM_DEBEZIUM_START_TIMEOUT:-120})) state slot
    slot=$(setting slot.name)
    while :; do
        worker_pid >/dev/null || {
            show_logs
            die "the worker exited while starting"
        }
        state=$(states 2>"$dir/task-error" || true)
        case $state in
        *FAILED*)
            show_logs
            die "the connector failed: $(cat "$dir/task-error")"
            ;;
        "RUNNING RUNNING")
            [ "$(sql "SELECT active FROM pg_replication_slots WHERE slot_name = '$slot'" 2>/dev/null)" = t ] && return
            ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_logs
            die "the connector did not start streaming within ${PM_DEBEZIUM_START_TIMEOUT:-120}s (state: ${state:-no answer})"
        fi
        sleep 0.5
    done
}

stop_worker() {
    local signal=$1 pid deadline
    pid=$(worker_pid) || return 0
    kill -s "$signal" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + ${PM_DEBEZIUM_STOP_TIMEOUT:-30}))
    while worker_pid >/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "the worker still runs after ${PM_DEBEZIUM_STOP_TIMEOUT:-30}s; killing it"
            kill -s KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.2
    done
}

# --- commands ------------------------------------------------------------------------------

start() {
    local url='' brokers='' topic=domain-events slot=pm_outbox publication=pm_outbox
    heap=384m
    while [ $# -gt 0 ]; do
        case $1 in
        --database-url) url=$2; shift 2 ;;
        --brokers) brokers=$2; shift 2 ;;
        --topic) topic=$2; shift 2 ;;
        --slot) slot=$2; shift 2 ;;
        --publication) publication=$2; shift 2 ;;
        --dir) set_dir "$2"; shift 2 ;;
        --heap) heap=$2; shift 2 ;;
        *) die "start: unknown argument $1" ;;
        esac
    done
    need_tools
    fetch
    lock_dir
    if ! ours; then
        [ -z "$(ls -A "$dir")" ] || die "$dir is not empty and was not made by debezium.sh"
        [ -n "$url" ] || die "start: --database-url is required"
        [ -n "$brokers" ] || die "start: --brokers is required"
        touch "$dir/.pm-debezium"
        write_config "$url" "$brokers" "$topic" "$slot" "$publication"
    elif worker_pid >/dev/null; then
        echo "PM_DEBEZIUM_REST=$(rest_url)"
        return
    else
        # A worker that crashed or was killed: start it again with its files, so it resumes
        # from its offsets (and the slot).
        [ -z "$url$brokers" ] || say "$dir already has a configuration; starting it as it is"
        say "resuming the worker in $dir"
    fi
    prepare_database
    launch
    if ! wait_ready; then
        stop_worker KILL
        exit 1
    fi
    say "streaming the outbox of $(setting database.dbname) to $(setting transforms.outbox.route.topic.replacement)"
    echo "PM_DEBEZIUM_REST=$(rest_url)"
}

stop() {
    local drop=''
    while [ $# -gt 0 ]; do
        case $1 in
        --dir) set_dir "$2"; shift 2 ;;
        --drop-slot) drop=yes; shift ;;
        *) die "stop: unknown argument $1" ;;
        esac
    done
    [ -d "$dir" ] || return 0
    rmdir "$dir" 2>/dev/null && return 0
    ours || die "$dir was not made by debezium.sh; not deleting it"
    lock_dir
    stop_worker TERM
    pkill -KILL -f -- "$dir/worker.properties" 2>/dev/null || true
    if [ -n "$drop" ] && [ -f "$dir/connector.properties" ]; then
        local slot publication
        slot=$(setting slot.name) publication=$(setting publication.name)
        sql "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$slot'" >/dev/null \
            || say "could not drop the slot $slot (the error is above)"
        sql "DROP PUBLICATION IF EXISTS $publication" || say "could not drop the publication $publication"
    fi
    rm -rf "$dir"
    say "stopped; $dir deleted"
}

kill_worker() {
    while [ $# -gt 0 ]; do
        case $1 in
        --dir) set_dir "$2"; shift 2 ;;
        *) die "kill: unknown argument $1" ;;
        esac
    done
    ours || die "no worker in $dir"
    local pid
    pid=$(worker_pid) || die "the worker in $dir is not running"
    kill -s KILL "$pid"
    while worker_pid >/dev/null; do sleep 0.1; done
    say "killed the worker ($pid); start --dir $dir resumes it"
}

status() {
    while [ $# -gt 0 ]; do
        case $1 in
        --dir) set_dir "$2"; shift 2 ;;
        *) die "status: unknown argument $1" ;;
        esac
    done
    ours || die "no worker in $dir"
    local pid state
    pid=$(worker_pid) || die "the worker in $dir is not running"
    state=$(states) || true
    echo "worker $pid, $(rest_url): connector and task ${state:-not answering}"
    [ "$state" = "RUNNING RUNNING" ]
}

command=${1:-}
shift || true
case $command in
fetch) fetch ;;
start) start "$@" ;;
stop) stop "$@" ;;
kill) kill_worker "$@" ;;
status) status "$@" ;;
*) die "usage: scripts/debezium.sh fetch | start --database-url URL --brokers LIST [...] | stop [--dir DIR] [--drop-slot] | kill [--dir DIR] | status [--dir DIR]" ;;
esac
