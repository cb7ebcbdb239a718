#!/usr/bin/env bash
# Mirador's self-contained browser build for the IIIF viewer test (tests/test_iiif_mirador.py):
# `npm pack` fetches the package from the npm registry; only dist/mirador.min.js is kept,
# in .mirador/ (git-ignored). Needs npm (Debian: apt-get install npm).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.0.0
dest=.mirador
[ -f "$dest/mirador.min.js" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$VERSION" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "mirador@$VERSION" >/dev/null)
tar -xzf "$tmp/mirador-$VERSION.tgz" -C "$tmp" package/dist/mirador.min.js package/LICENSE
mkdir -p "$dest"
mv "$tmp/package/dist/mirador.min.js" "$tmp/package/LICENSE" "$dest/"
echo "$VERSION" > "$dest/VERSION"
echo "Mirador $VERSION in $dest/"
