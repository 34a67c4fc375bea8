#!/usr/bin/env bash
# Installs what Payment Manager's tests and demo need on Debian/Ubuntu, when it is missing:
# the PostgreSQL server binaries and pg_partman for them, and the Kafka-protocol broker the
# Kafka tests start (tansu, built from crates.io into ~/.cargo/bin: about ten minutes once).
# Idempotent and quick when all is there. System packages need root (CI runs as root);
# otherwise it prints the one command to run.
#
#   scripts/install-deps.sh            everything (what scripts/test.sh needs)
#   scripts/install-deps.sh postgres   only PostgreSQL and pg_partman (what the demo needs)
set -euo pipefail
what=${1:-all}

# The test broker. Only the tests use it: users point PM_KAFKA_BROKERS at Apache Kafka or
# Redpanda, and a test run with PM_TEST_KAFKA_BROKERS set uses that broker instead.
if [ "$what" = all ] && [ -z "${PM_TEST_KAFKA_BROKERS:-}" ] && ! command -v tansu >/dev/null 2>&1 \
    && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "installing the tansu broker for the Kafka tests (once; takes a while)" >&2
    cargo install tansu@0.6.0 --locked --features libsql,dynostore --quiet
fi

need=()
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

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]}" >&2
    echo "install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
echo "installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
