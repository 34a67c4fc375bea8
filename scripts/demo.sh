#!/usr/bin/env bash
# The one-command demo: installs PostgreSQL and pg_partman when they are missing (as root;
# otherwise it prints the command), builds pmctl, and runs `pmctl demo`, which starts its
# own throw-away database, the API, ingest and the provider simulator, plays the quickstart
# scenario and verifies the result. Extra arguments go to `pmctl demo` (see --help); with
# `--kafka` it also installs what Apache Kafka needs (Java, Maven, the broker's jars).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh postgres
for arg in "$@"; do
    if [ "$arg" = --kafka ]; then
        scripts/install-deps.sh kafka
    fi
done
exec cargo run --release --locked --quiet -p pmctl -- demo "$@"
