#!/usr/bin/env bash
# Installs what Payment Manager's tests and demo need on Debian/Ubuntu, when it is missing:
# the PostgreSQL server binaries and pg_partman for them. Idempotent and quick when all is
# there. Run as root (CI does); otherwise it prints the one command to run.
set -euo pipefail

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
