#!/usr/bin/env bash
# Vendors htmx from its npm package into crates/pm-api/assets/htmx/, where the admin UI
# embeds it in the binary (no CDN: the UI works offline and behind strict firewalls).
#
#   scripts/vendor-htmx.sh [VERSION]     # default: the version in assets/htmx/VERSION
#
# The tarball is checked against the integrity hash the npm registry publishes for it
# before anything is extracted. Run it to upgrade htmx, then commit the three files.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/crates/pm-api/assets/htmx"
version="${1:-$(cat "$dest/VERSION")}"
registry="${NPM_REGISTRY:-https://registry.npmjs.org}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

curl -fsSL "$registry/htmx.org/$version" -o "$work/meta.json"
read -r tarball integrity < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["dist"]
print(d["tarball"], d["integrity"])' "$work/meta.json")
curl -fsSL "$tarball" -o "$work/htmx.tgz"

algo="${integrity%%-*}"
want="${integrity#*-}"
got="$(openssl dgst "-$algo" -binary "$work/htmx.tgz" | base64 -w0)"
if [ "$got" != "$want" ]; then
  echo "htmx.org@$version: the tarball does not match the registry's $algo integrity" >&2
  exit 1
fi

tar -xzf "$work/htmx.tgz" -C "$work" package/dist/htmx.min.js package/LICENSE
mkdir -p "$dest"
cp "$work/package/dist/htmx.min.js" "$dest/htmx.min.js"
cp "$work/package/LICENSE" "$dest/LICENSE"
echo "$version" > "$dest/VERSION"
echo "vendored htmx.org@$version ($integrity) into ${dest#"$root"/}"
