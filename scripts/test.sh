#!/usr/bin/env bash
# The whole test suite. Installs missing system packages first (see install-deps.sh); the
# tests then start their own throw-away PostgreSQL cluster unless PM_TEST_DATABASE_URL
# names an admin URL of an existing server with pg_partman.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo test --workspace --locked "$@"
