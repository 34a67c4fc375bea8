#!/usr/bin/env bash
# The whole test suite. Installs missing system packages first (see install-deps.sh); the
# tests then start their own throw-away PostgreSQL cluster unless PM_TEST_DATABASE_URL
# names an admin URL of an existing server with pg_partman.
#
# With no arguments it then fuzzes the running API from its OpenAPI document
# (scripts/schemathesis.sh). Arguments go to `cargo test` and skip that step.
# Budgets: PROPTEST_CASES (default 1000 per property), PM_SCHEMATHESIS_EXAMPLES (default 100
# per operation).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PROPTEST_CASES="${PROPTEST_CASES:-1000}"
cargo test --workspace --locked "$@"
if [ "$#" -eq 0 ]; then
    PM_SCHEMATHESIS_EXAMPLES="${PM_SCHEMATHESIS_EXAMPLES:-100}" scripts/schemathesis.sh
fi
