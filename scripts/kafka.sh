#!/usr/bin/env bash
# Runs a throw-away Apache Kafka cluster on 127.0.0.1 for the tests, CI, the demo and the
# benchmarks: the real broker (KRaft, every node both broker and controller), so the Kafka
# pipeline is tested against what it runs against in production. The jars come from Maven
# Central once (scripts/kafka/pom.xml names the Kafka version) into a cache outside the
# checkout; after that a start needs no network. Needs Java 17+ and Maven, which
# scripts/install-deps.sh installs.
#
#   scripts/kafka.sh fetch             download the jars into the cache, unless already there
#   scripts/kafka.sh start [--nodes N] [--dir DIR] [--heap SIZE] [SASL_SSL OPTIONS]
#                                      start N nodes (1 or 3; default 1) on free ports and wait
#                                      until all N brokers are registered and unfenced
#   SASL_SSL OPTIONS (all together, or none):
#     --sasl-ssl                       each node also takes clients on a SASL_SSL listener
#                                      (TLS, then SCRAM-SHA-512) on a free port of its own
#     --tls-cert FILE --tls-key FILE   that listener's certificate chain (leaf first) and
#                                      unencrypted PKCS#8 key, PEM; copied into DIR
#     --scram-user NAME=PASSWORD       a SCRAM-SHA-512 user, created when the nodes are
#                                      formatted (repeatable; neither part may hold a comma)
#   scripts/kafka.sh stop [--dir DIR]  stop the nodes and delete DIR; fine to run twice
#   scripts/kafka.sh status [--dir DIR]    the nodes and brokers; exits 1 unless all nodes run
#   scripts/kafka.sh kill-node N [--dir DIR] [--signal KILL|TERM]     (fault tests)
#   scripts/kafka.sh start-node N [--dir DIR]  restart node N with its data and ports
#   scripts/kafka.sh tool CLASS [ARGS...]      run a Kafka command-line tool from the cache,
#                                      e.g. tool TopicCommand --bootstrap-server B --list
#
# The last line `start` prints on stdout is `PM_KAFKA_BROKERS=127.0.0.1:P1,...` (the
# PLAINTEXT listeners), so a caller can take it with
#
#   export "$(scripts/kafka.sh start --nodes 3 | tail -n 1)"
#
# With --sasl-ssl the line before it is `PM_KAFKA_SASL_SSL_BROKERS=127.0.0.1:S1,...`; nothing
# else goes to stdout. The PLAINTEXT listeners stay either way: the launcher's own readiness
# checks use them, and tests compare the two.
#
# DIR (default ${TMPDIR:-/tmp}/pm-kafka) holds node-N/ (server.properties, data/, server.log,
# stdout.log, pid) per node, `brokers` (the bootstrap list, written once the cluster is up),
# `cluster.env` (PM_KAFKA_* lines, sourceable) and, with --sasl-ssl, tls/broker.pem (key and
# chain). `start` on a DIR whose cluster is running prints its brokers again instead of
# starting a second one; a DIR whose nodes are all gone (a crash, a reboot) is wiped and
# started afresh. One DIR is one cluster: use another DIR to run several side by side.
#
# Environment: PM_KAFKA_HOME (the cache; default ~/.cache/payment-manager/kafka-VERSION),
# PM_KAFKA_DIR (the default DIR), PM_KAFKA_START_TIMEOUT (seconds, default 90),
# PM_KAFKA_STOP_TIMEOUT (seconds, default 30), JAVA_HOME.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom=$here/kafka/pom.xml
log4j=$here/kafka/log4j2.properties
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
home=${PM_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/payment-manager/kafka-$version}
libs=$home/libs
java=${JAVA_HOME:+$JAVA_HOME/bin/}java

say() { echo "kafka.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# --- the jar cache -------------------------------------------------------------------------

# The marker holds the pom's checksum, so a download cut short, or one made for an older
# pom (same Kafka version, other jars), is done again rather than used.
pom_sum() { sha256sum "$pom" | cut -d' ' -f1; }

fetch() {
    if [ "$(cat "$libs/.complete" 2>/dev/null)" = "$(pom_sum)" ]; then
        return
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found: run scripts/install-deps.sh (or apt-get install maven)"
    mkdir -p "$home"
    # Two test processes may fetch at once: the second waits, then finds the first one's copy.
    exec 9>"$home/.fetch.lock"
    flock 9
    if [ "$(cat "$libs/.complete" 2>/dev/null)" != "$(pom_sum)" ]; then
        say "downloading Apache Kafka $version from Maven Central into $libs (once)"
        local tmp=$home/libs.partial
        rm -rf "$tmp"
        # Maven writes its errors to stdout, which is reserved for the result, and colour codes
        # even in batch mode.
        if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$tmp" 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^$/d' >&2; then
            rm -rf "$tmp"
            die "maven could not resolve the Kafka $version jars (its error is above)"
        fi
        pom_sum >"$tmp/.complete"
        rm -rf "$libs"
        mv "$tmp" "$libs"
    fi
    exec 9>&-
}

# The command line of a Kafka tool (or the broker's StorageTool) from the cache, in the array
# `tool`, for run_tool or for `timeout`. A short-lived JVM: C1 only and the serial collector
# start quickest. Tools log warnings to DIR/tools.log when there is a DIR, otherwise nowhere:
# their own output and errors are what matter.
tool_cmd() {
    local class=$1 logs=/dev/null level=off
    case $class in
    *.*) ;;
    *) class=org.apache.kafka.tools.$class ;;
    esac
    if ours; then
        logs=$dir level=warn
    fi
    tool=("$java" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$log4j" -Dkafka.logs.dir="$logs" -Dpm.kafka.log=tools
        -Dpm.kafka.level="$level" -cp "$libs/*" "$class")
}

run_tool() {
    tool_cmd "$1"
    shift
    "${tool[@]}" "$@"
}

# Lists the unfenced brokers (ClusterTool list-endpoints: the Admin describeCluster call),
# with short client timeouts so that a poll fails fast instead of waiting the default 60 s.
list_brokers() {
    printf 'request.timeout.ms=3000\ndefault.api.timeout.ms=5000\n' >"$dir/admin.properties"
    tool_cmd ClusterTool
    timeout 20 "${tool[@]}" list-endpoints --bootstrap-server "$PM_KAFKA_BROKERS" --config "$dir/admin.properties"
}

need_java() {
    command -v "$java" >/dev/null 2>&1 || die "java not found: run scripts/install-deps.sh (Kafka $version needs Java 17+)"
    local major
    major=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
    [ "${major:-0}" -ge 17 ] || die "Kafka $version needs Java 17 or newer; $java is ${major:-unknown}"
}

# --- the cluster directory -----------------------------------------------------------------

# Commands that change a cluster hold a lock on its directory, so that two test processes
# starting the same DIR get one cluster. The lock is on the directory itself; `stop` deletes
# it, so a waiter that then gets the lock on the deleted one tries again.
lock_dir() {
    while :; do
        mkdir -p "$dir"
        exec 8<"$dir"
        flock 8
        if [ "$(stat -Lc %d:%i /dev/fd/8)" = "$(stat -c %d:%i "$dir" 2>/dev/null)" ]; then
            return
        fi
        exec 8<&-
    done
}

# Absolute, because the nodes' files and the pid checks name it, and a later command may run
# from another directory.
set_dir() { dir=$(realpath -m -- "$1"); }

ours() { [ -e "$dir/.pm-kafka" ]; }

load_env() {
    [ -f "$dir/cluster.env" ] || die "no cluster in $dir (start one with: scripts/kafka.sh start --dir $dir)"
    # Not from the caller's environment, nor missing (a cluster.env of an older kafka.sh).
    PM_KAFKA_SASL_SSL_BROKERS=
    # shellcheck source=/dev/null
    . "$dir/cluster.env"
}

# The pid of node N when it runs. The command line is checked too, so a pid the system has
# since given to another process is not taken for the node (nor killed).
node_pid() {
    local nd=$dir/node-$1 pid
    pid=$(cat "$nd/pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null \
        | grep -F "$nd/server.properties" >/dev/null && echo "$pid"
}

client_port() { sed -n 's/^listeners=PLAINTEXT:\/\/127.0.0.1:\([0-9]*\),.*/\1/p' "$dir/node-$1/server.properties"; }

# Node N's SASL_SSL port; empty when it has none.
sasl_port() { sed -n 's/^listeners=.*SASL_SSL:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$dir/node-$1/server.properties"; }

launch_node() {
    local n=$1 nd=$dir/node-$1
    local jvm_heap=("-Xmx$PM_KAFKA_HEAP")
    if [ -n "${PM_KAFKA_XMS:-}" ]; then jvm_heap+=("-Xms$PM_KAFKA_XMS"); fi
    # setsid: the node must outlive this script and the terminal or test harness that ran it,
    # and not get their Ctrl-C. The inner shell writes its own pid and then becomes java, so
    # the pid file is the JVM's whether or not setsid had to fork. Closing fds 8 and 9 keeps
    # the JVM from holding this script's locks; redirecting all three standard streams keeps
    # it from holding the caller's pipe open (a caller reading stdout to the end would hang).
    # ExitOnOutOfMemoryError: with a small heap a node that ran out should die where the
    # tests see it, not limp on.
    rm -f "$nd/pid"
    # Where this run's part of server.log (appended to across restarts) begins.
    stat -c %s "$nd/server.log" 2>/dev/null >"$nd/log-offset" || echo 0 >"$nd/log-offset"
    # shellcheck disable=SC2016 # $$ and "$@" belong to the inner shell
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$nd/pid" \
        "$java" "${jvm_heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$log4j" -Dkafka.logs.dir="$nd" \
        -cp "$libs/*" kafka.Kafka "$nd/server.properties" \
        </dev/null >"$nd/stdout.log" 2>&1 8<&- 9>&- &
    # Not this shell's job: no "Killed" notice from bash when a failed start kills it.
    disown
    # Wait for the pid file, so that a stop right after this finds the node.
    for _ in $(seq 50); do
        [ -s "$nd/pid" ] && return
        sleep 0.1
    done
    die "node $n did not start (see $nd/stdout.log)"
}

port_open() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

show_logs() {
    local n
    for n in $(seq "$PM_KAFKA_NODES"); do
        for f in server.log stdout.log; do
            [ -s "$dir/node-$n/$f" ] || continue
            echo "----- node $n: tail of $f -----" >&2
            tail -n 30 "$dir/node-$n/$f" | cut -c 1-400 >&2
        done
    done
}

# Whether node N logged, since it was launched, that it is up (which it does once unfenced).
# Not grep -q: it stops reading at the first match, tail then dies of SIGPIPE, and pipefail
# turns that into "no".
node_started() {
    tail -c "+$(($(cat "$dir/node-$1/log-offset") + 1))" "$dir/node-$1/server.log" 2>/dev/null \
        | grep -F 'Kafka Server started' >/dev/null
}

# Waits until the given nodes run, accept connections, and the cluster lists each of them as
# an unfenced broker (ClusterTool list-endpoints, which is the Admin describeCluster call a
# client makes). An open port alone is not enough: a broker listens before it has caught up
# with the metadata log and been unfenced, and until then a topic with one replica per node
# cannot be created. Each such poll is a JVM start (over a second of CPU), which on a small
# machine slows the nodes' own start, so it first waits for every node to log that it
# started. With FALLBACK=poll (a fresh cluster) it also polls every 5 s in case that line
# never comes; a restarted node must log it, because until its old session expires the
# cluster still lists its previous run as unfenced. Fails at once when a node exits.
# Returns 1 on timeout.
wait_ready() {
    local timeout=$1 fallback=$2 deadline=$((SECONDS + $1)) n port pending missing logged
    local listed='' last_poll=$SECONDS
    shift 2
    while :; do
        pending='' logged=yes
        for n in "$@"; do
            if ! node_pid "$n" >/dev/null; then
                say "node $n exited"
                return 1
            fi
            port=$(client_port "$n")
            port_open "$port" || pending+=" $n"
            port=$(sasl_port "$n")
            [ -z "$port" ] || port_open "$port" || [[ $pending == *" $n" ]] || pending+=" $n"
            node_started "$n" || logged=
        done
        if [ -z "$pending" ] && { [ -n "$logged" ] \
            || { [ "$fallback" = poll ] && [ $((SECONDS - last_poll)) -ge 5 ]; }; }; then
            last_poll=$SECONDS
            # Columns: ID HOST PORT RACK STATE ENDPOINT_TYPE.
            listed=" $(list_brokers 2>/dev/null | awk '$5 == "unfenced" { printf "%s ", $1 }')"
            missing=''
            for n in "$@"; do
                [[ $listed == *" $n "* ]] || missing+=" $n"
            done
            [ -z "$missing" ] && return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "the cluster in $dir was not ready after ${timeout}s (nodes not listening:${pending:- none}; unfenced brokers:${listed:- none known})"
            return 1
        fi
        sleep 0.5
    done
}

# TERM (or the given signal) to the given nodes, then wait until they exit; what is left
# after the timeout gets KILL.
stop_nodes() {
    local signal=$1 timeout=$2 n pid pids=() deadline
    shift 2
    for n in "$@"; do
        if pid=$(node_pid "$n"); then
            kill -s "$signal" "$pid" 2>/dev/null || true
            pids+=("$n:$pid")
        fi
    done
    deadline=$((SECONDS + timeout))
    for entry in "${pids[@]}"; do
        n=${entry%%:*}
        while node_pid "$n" >/dev/null; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                say "node $n still runs after ${timeout}s; killing it"
                kill -s KILL "${entry#*:}" 2>/dev/null || true
                sleep 0.2
            else
                sleep 0.2
            fi
        done
    done
}

# --- commands ------------------------------------------------------------------------------

free_ports() {
    if command -v python3 >/dev/null 2>&1; then
        # Binding port 0 lets the kernel choose ports nobody holds; all sockets stay open
        # until all are chosen, so they differ.
        python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
    else
        # No python: random ports below the kernel's ephemeral range that nothing listens on.
        local ports=() p
        while [ ${#ports[@]} -lt "$1" ]; do
            p=$((20000 + RANDOM % 12000))
            port_open "$p" || [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
        done
        echo "${ports[*]}"
    fi
}

# A Kafka cluster id: 16 random bytes in URL-safe base64 without padding, which is what
# `StorageTool random-uuid` prints (minus a JVM start). Kafka never makes one starting with
# '-', since a command line would take it for an option.
cluster_id() {
    local id=-
    while [[ $id == -* ]]; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    echo "$id"
}

# SPORT, when given, is the node's SASL_SSL client port (see sasl_ssl_config).
write_config() {
    local n=$1 nodes=$2 voters=$3 port=$4 cport=$5 sport=${6:-} nd=$dir/node-$1
    local isr=$((nodes < 2 ? nodes : 2)) listeners advertised map
    # PLAINTEXT stays the first listener: client_port reads its port from this line.
    listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
    advertised=PLAINTEXT://127.0.0.1:$port
    map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
    if [ -n "$sport" ]; then
        listeners+=,SASL_SSL://127.0.0.1:$sport
        advertised+=,SASL_SSL://127.0.0.1:$sport
        map+=,SASL_SSL:SASL_SSL
    fi
    cat >"$nd/server.properties" <<EOF
# Written by scripts/kafka.sh: node $n of a $nodes-node test cluster.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$map
log.dirs=$nd/data

# Internal topics get one replica per node, as their defaults (3) cannot be met by one node.
offsets.topic.replication.factor=$nodes
transaction.state.log.replication.factor=$nodes
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$nodes
share.coordinator.state.topic.min.isr=$isr

# Topics the application creates get one replica per node and need two in sync (one with a
# single node): acks=all writes then go on while any one of three nodes is down, which is
# what the fault tests exercise, and stop when two are.
default.replication.factor=$nodes
min.insync.replicas=$isr
num.partitions=3
# A killed node is fenced (its partitions move) once its session expires, and a restarted
# one is refused (DUPLICATE_BROKER_REGISTRATION) until the old session has: with the
# defaults (9 s, heartbeats every 2 s) every kill-node or start-node in a fault test costs
# 9 s. Four missed heartbeats still allow for a loaded CI machine.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
# The application creates its topics; a typo must fail, not create a topic.
auto.create.topics.enable=false
# Tests start consumers one after the other; the default 3 s wait for more members to join
# the first rebalance would only slow every test down.
group.initial.rebalance.delay.ms=0
EOF
    if [ -n "$sport" ]; then
        sasl_ssl_config >>"$nd/server.properties"
    fi
}

# The SASL_SSL listener: TLS with the caller's certificate, then SCRAM-SHA-512 against the
# users written into the metadata log at format time (--add-scram). It is for clients only:
# brokers and controllers keep talking PLAINTEXT to each other, which on loopback exposes
# nothing and spares every node a TLS handshake per connection; what is tested is the path
# an application takes. No client certificates are asked for.
sasl_ssl_config() {
    cat <<EOF

# Clients over TLS + SCRAM-SHA-512 (scripts/kafka.sh start --sasl-ssl).
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# A PEM key store: one file with the unencrypted PKCS#8 key and the chain, no JKS to build.
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$dir/tls/broker.pem
EOF
}

start() {
    local nodes=1 nodes_given='' heap='' sasl_ssl='' tls_cert='' tls_key='' users=() user
    while [ $# -gt 0 ]; do
        case $1 in
        --nodes) nodes=$2 nodes_given=yes; shift 2 ;;
        --dir) set_dir "$2"; shift 2 ;;
        --heap) heap=$2; shift 2 ;;
        --sasl-ssl) sasl_ssl=yes; shift ;;
        --tls-cert) tls_cert=$2; shift 2 ;;
        --tls-key) tls_key=$2; shift 2 ;;
        --scram-user) users+=("$2"); shift 2 ;;
        *) die "start: unknown argument $1" ;;
        esac
    done
    [[ $nodes =~ ^[1-9]$ ]] || die "start: --nodes takes 1 to 9 (1 or 3 make sense), not $nodes"
    if [ -n "$sasl_ssl" ]; then
        [ -n "$tls_cert" ] || die "start: --sasl-ssl needs --tls-cert FILE"
        [ -n "$tls_key" ] || die "start: --sasl-ssl needs --tls-key FILE"
        [ -r "$tls_cert" ] || die "start: cannot read the certificate $tls_cert"
        [ -r "$tls_key" ] || die "start: cannot read the key $tls_key"
        [ ${#users[@]} -gt 0 ] || die "start: --sasl-ssl needs at least one --scram-user NAME=PASSWORD"
        for user in "${users[@]}"; do
            # Kafka's --add-scram splits its argument on commas, quotes or not.
            [[ $user =~ ^[^=,]+=[^,]+$ ]] || die "start: --scram-user takes NAME=PASSWORD, neither empty nor holding a comma"
        done
    elif [ -n "$tls_cert$tls_key" ] || [ ${#users[@]} -gt 0 ]; then
        die "start: --tls-cert, --tls-key and --scram-user go with --sasl-ssl"
    fi
    need_java
    fetch
    if [ -e "$dir" ] && ! ours && [ -n "$(ls -A "$dir")" ]; then
        die "$dir exists and was not made by kafka.sh; choose another --dir"
    fi
    lock_dir

    if [ -f "$dir/cluster.env" ]; then
        load_env
        local n alive=() dead=()
        for n in $(seq "$PM_KAFKA_NODES"); do
            if node_pid "$n" >/dev/null; then alive+=("$n"); else dead+=("$n"); fi
        done
        if [ ${#alive[@]} -eq "$PM_KAFKA_NODES" ]; then
            [ -z "$nodes_given" ] || [ "$PM_KAFKA_NODES" -eq "$nodes" ] \
                || die "a $PM_KAFKA_NODES-node cluster already runs in $dir; stop it first (scripts/kafka.sh stop --dir $dir)"
            [ -z "$sasl_ssl" ] || [ -n "$PM_KAFKA_SASL_SSL_BROKERS" ] \
                || die "a cluster without SASL_SSL already runs in $dir; stop it first (scripts/kafka.sh stop --dir $dir)"
            # No brokers file: the start that launched them was killed before they were ready.
            if [ ! -f "$dir/brokers" ]; then
                wait_ready "${PM_KAFKA_START_TIMEOUT:-90}" poll "${alive[@]}" || { show_logs; die "the cluster in $dir runs but is not ready"; }
                echo "$PM_KAFKA_BROKERS" >"$dir/brokers"
            fi
            say "already running in $dir ($PM_KAFKA_NODES node(s))"
            print_brokers
            return
        fi
        if [ ${#alive[@]} -gt 0 ]; then
            die "the cluster in $dir is partly down (node(s) ${dead[*]}): scripts/kafka.sh start-node N, or stop --dir $dir"
        fi
        say "no node of the cluster in $dir runs any more; starting a new one"
    fi
    # Clear it rather than delete it: the lock is on the directory.
    find "$dir" -mindepth 1 -delete
    touch "$dir/.pm-kafka"

    if [ -z "$heap" ]; then
        # Small, so that three nodes, the tests and cargo fit on a 2-core CI machine.
        if [ "$nodes" -eq 1 ]; then heap=512m PM_KAFKA_XMS=256m; else heap=384m PM_KAFKA_XMS=; fi
    else
        PM_KAFKA_XMS=
    fi
    PM_KAFKA_HEAP=$heap PM_KAFKA_NODES=$nodes

    # Per node a client and a controller port, then (with --sasl-ssl) a SASL_SSL port each.
    local ports voters='' controllers='' brokers='' sasl_brokers='' sports=() n format_args=() per_node=2
    [ -z "$sasl_ssl" ] || per_node=3
    read -r -a ports <<<"$(free_ports $((per_node * nodes)))"
    for n in $(seq "$nodes"); do
        voters+=${voters:+,}$n@127.0.0.1:${ports[2 * n - 1]}
        controllers+=${controllers:+,}127.0.0.1:${ports[2 * n - 1]}
        brokers+=${brokers:+,}127.0.0.1:${ports[2 * n - 2]}
        if [ -n "$sasl_ssl" ]; then
            sports[n]=${ports[2 * nodes + n - 1]}
            sasl_brokers+=${sasl_brokers:+,}127.0.0.1:${sports[n]}
        fi
    done
    if [ -n "$sasl_ssl" ]; then
        # A copy, so that start-node still finds them after the caller's files are gone.
        (
            umask 077
            mkdir -p "$dir/tls"
            cat "$tls_key" "$tls_cert" >"$dir/tls/broker.pem"
        )
        # In the metadata log from the start, so a client can log in as soon as the
        # listener is up. (The password is on the format tool's command line for the
        # second it runs: fine for a test cluster on loopback, which is all this is.)
        for user in "${users[@]}"; do
            format_args+=(--add-scram "SCRAM-SHA-512=[name=${user%%=*},password=${user#*=}]")
        done
    fi
    PM_KAFKA_BROKERS=$brokers PM_KAFKA_SASL_SSL_BROKERS=$sasl_brokers
    PM_KAFKA_CLUSTER_ID=$(cluster_id)
    {
        printf '%s=%q\n' PM_KAFKA_BROKERS "$brokers" PM_KAFKA_CLUSTER_ID "$PM_KAFKA_CLUSTER_ID" \
            PM_KAFKA_CONTROLLERS "$controllers" PM_KAFKA_NODES "$nodes" \
            PM_KAFKA_SASL_SSL_BROKERS "$sasl_brokers" \
            PM_KAFKA_VERSION "$version" PM_KAFKA_HEAP "$heap" PM_KAFKA_XMS "$PM_KAFKA_XMS" \
            PM_KAFKA_DIR "$dir" PM_KAFKA_LIBS "$libs"
    } >"$dir/cluster.env"

    local started=$SECONDS pids=()
    for n in $(seq "$nodes"); do
        mkdir -p "$dir/node-$n"
        write_config "$n" "$nodes" "$voters" "${ports[2 * n - 2]}" "${ports[2 * n - 1]}" "${sports[n]:-}"
        # The formats are independent JVM starts; side by side they take the time of one.
        run_tool kafka.tools.StorageTool format -t "$PM_KAFKA_CLUSTER_ID" -c "$dir/node-$n/server.properties" \
            "${format_args[@]}" >"$dir/node-$n/format.log" 2>&1 &
        pids+=($!)
    done
    for n in $(seq "$nodes"); do
        wait "${pids[n - 1]}" || { cat "$dir/node-$n/format.log" >&2; die "formatting node $n failed"; }
    done

    # Should this script be stopped while it waits (Ctrl-C, a test harness's timeout), the
    # nodes it started go too.
    trap 'stop_nodes KILL 5 $(seq "$PM_KAFKA_NODES"); exit 130' INT TERM
    for n in $(seq "$nodes"); do
        launch_node "$n"
    done
    local timeout=${PM_KAFKA_START_TIMEOUT:-90}
    if ! wait_ready "$timeout" poll $(seq "$nodes"); then
        show_logs
        stop_nodes KILL 5 $(seq "$nodes")
        die "start failed; the nodes are stopped and their files kept in $dir"
    fi
    trap - INT TERM
    echo "$brokers" >"$dir/brokers"
    say "$nodes-node Kafka $version cluster up in $((SECONDS - started))s; files in $dir"
    print_brokers
}

# What `start` prints on stdout: the SASL_SSL listeners when there are, then (last) the
# PLAINTEXT ones.
print_brokers() {
    if [ -n "$PM_KAFKA_SASL_SSL_BROKERS" ]; then
        echo "PM_KAFKA_SASL_SSL_BROKERS=$PM_KAFKA_SASL_SSL_BROKERS"
    fi
    echo "PM_KAFKA_BROKERS=$PM_KAFKA_BROKERS"
}

# Reads `--dir DIR`, the only option of the commands that act on an existing cluster.
dir_option() {
    local command=$1
    shift
    while [ $# -gt 0 ]; do
        case $1 in
        --dir) set_dir "$2"; shift 2 ;;
        *) die "$command: unknown argument $1" ;;
        esac
    done
}

stop() {
    dir_option stop "$@"
    [ -d "$dir" ] || return 0
    rmdir "$dir" 2>/dev/null && return 0
    ours || die "$dir was not made by kafka.sh; not deleting it"
    lock_dir
    if [ -f "$dir/cluster.env" ]; then
        load_env
        stop_nodes TERM "${PM_KAFKA_STOP_TIMEOUT:-30}" $(seq "$PM_KAFKA_NODES")
    fi
    # A node whose pid file was lost or rewritten must not outlive its directory (a JVM
    # left running holds ~400 MB and its ports): anything still started from DIR goes too.
    pkill -KILL -f -- "$dir/node-[0-9]*/server.properties" 2>/dev/null || true
    rm -rf "$dir"
    say "stopped; $dir deleted"
}

node_arg() {
    [[ ${1:-} =~ ^[1-9]$ ]] || die "$2: which node? (a number from 1)"
    [ "$1" -le "$PM_KAFKA_NODES" ] || die "$2: the cluster in $dir has $PM_KAFKA_NODES node(s)"
}

kill_node() {
    local n=${1:-} signal=KILL
    shift || true
    while [ $# -gt 0 ]; do
        case $1 in
        --dir) set_dir "$2"; shift 2 ;;
        --signal) signal=${2#SIG}; shift 2 ;;
        *) die "kill-node: unknown argument $1" ;;
        esac
    done
    [[ $signal == KILL || $signal == TERM ]] || die "kill-node: --signal is KILL or TERM"
    load_env
    node_arg "$n" kill-node
    lock_dir
    node_pid "$n" >/dev/null || { say "node $n is not running"; return; }
    stop_nodes "$signal" "${PM_KAFKA_STOP_TIMEOUT:-30}" "$n"
    say "node $n stopped ($signal)"
}

start_node() {
    local n=${1:-}
    shift || true
    dir_option start-node "$@"
    load_env
    node_arg "$n" start-node
    need_java
    lock_dir
    if node_pid "$n" >/dev/null; then
        say "node $n already runs"
        return
    fi
    local started=$SECONDS m others=()
    for m in $(seq "$PM_KAFKA_NODES"); do
        if node_pid "$m" >/dev/null; then others+=("$m"); fi
    done
    launch_node "$n"
    # Back when the cluster lists it, and the nodes that were running, as unfenced brokers
    # (its port open is not enough: see wait_ready).
    if ! wait_ready "${PM_KAFKA_START_TIMEOUT:-90}" log "${others[@]}" "$n"; then
        show_logs
        die "node $n did not come back"
    fi
    say "node $n up again in $((SECONDS - started))s"
}

status() {
    dir_option status "$@"
    load_env
    local n pid down=0
    echo "cluster $PM_KAFKA_CLUSTER_ID in $dir, Kafka $PM_KAFKA_VERSION"
    print_brokers
    for n in $(seq "$PM_KAFKA_NODES"); do
        if pid=$(node_pid "$n"); then
            echo "node $n: running (pid $pid), $(sed -n 's/^listeners=//p' "$dir/node-$n/server.properties")"
        else
            echo "node $n: down"
            down=$((down + 1))
        fi
    done
    if [ "$down" -lt "$PM_KAFKA_NODES" ]; then
        list_brokers || true
    fi
    [ "$down" -eq 0 ]
}

set_dir "${PM_KAFKA_DIR:-${TMPDIR:-/tmp}/pm-kafka}"
command=${1:-}
shift || true
case $command in
fetch) fetch ;;
start) start "$@" ;;
stop) stop "$@" ;;
status) status "$@" ;;
kill-node) kill_node "$@" ;;
start-node) start_node "$@" ;;
tool)
    [ $# -gt 0 ] || die "tool: which class? e.g. TopicCommand, MetadataQuorumCommand, kafka.tools.StorageTool"
    fetch
    run_tool "$@"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
