#!/usr/bin/env bash
# Schema-driven fuzzing of the running API: starts `pmctl demo --keep-running` (a private
# PostgreSQL cluster, the API and ingest, the quickstart scenario's data), then runs
# schemathesis against the API's served /openapi.json, and fails on any 5xx and on any
# answer the document does not describe (status code, content type, body schema).
#
#   scripts/schemathesis.sh                      # 50 examples per operation
#   PM_SCHEMATHESIS_EXAMPLES=500 scripts/schemathesis.sh
#
# Webhooks are signed by scripts/schemathesis_hooks.py with the demo's secret, so generated
# bodies reach validation and storage. schemathesis comes from PyPI into a virtualenv under ~/.cache/payment-manager, once.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
examples="${PM_SCHEMATHESIS_EXAMPLES:-50}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/payment-manager"
venv="$cache/schemathesis-$SCHEMATHESIS_VERSION"

if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    mkdir -p "$cache"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

scripts/install-deps.sh postgres
cargo build --locked -p pmctl
work="$(mktemp -d)"
demo_pid=""
cleanup() {
    if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
        kill -TERM "$demo_pid" 2>/dev/null || true
        # The demo stops its services and its cluster; give it the time to.
        for _ in $(seq 1 100); do
            kill -0 "$demo_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$demo_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

PM_LOG=warn target/debug/pmctl demo --keep-running --api-port 0 --ingest-port 0 --provider-port 0 \
    >"$work/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 1 600); do
    grep -q "running until" "$work/demo.log" && break
    if ! kill -0 "$demo_pid" 2>/dev/null; then
        cat "$work/demo.log"
        echo "schemathesis: the demo stopped before it was ready" >&2
        exit 1
    fi
    sleep 0.5
done
if ! grep -q "running until" "$work/demo.log"; then
    cat "$work/demo.log"
    echo "schemathesis: the demo was not ready within 5 minutes" >&2
    exit 1
fi
api="$(grep -m1 '^| API ' "$work/demo.log" | grep -o 'http://127\.0\.0\.1:[0-9]*')"
# The demo prints how to send a signed webhook; its secret lets the hooks sign generated ones.
secret="$(grep -o -m1 -e '--webhook-secret [^ ]*' "$work/demo.log" | cut -d' ' -f2)"
if [ -z "$secret" ]; then
    cat "$work/demo.log"
    echo "schemathesis: the demo did not print its webhook secret (--webhook-secret …)" >&2
    exit 1
fi
# And its API key (every scope), so the operator routes are fuzzed past authentication.
key="$(grep -o -m1 'PM_API_KEY=[^ ]*' "$work/demo.log" | cut -d= -f2)"
echo "schemathesis $SCHEMATHESIS_VERSION against $api/openapi.json, $examples examples per operation"

PYTHONPATH=scripts SCHEMATHESIS_HOOKS=schemathesis_hooks PM_SCHEMATHESIS_WEBHOOK_SECRET="$secret" \
    "$venv/bin/schemathesis" run "$api/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" \
    --header "Authorization: Bearer $key" \
    --seed 20261130 \
    --no-color
