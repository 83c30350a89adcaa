#!/usr/bin/env bash
# Refresh static/vendor/htmx.min.js from the npm registry package `htmx.org`.
# Usage: scripts/vendor-htmx.sh [VERSION-RANGE]   (default: 2, i.e. the newest 2.x)
set -euo pipefail

range="${1:-2}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
tarball="$(npm pack --silent "htmx.org@${range}" | tail -n 1)"
tar -xzf "$tarball"
version="$(node -p "require('./package/package.json').version")"

cp package/dist/htmx.min.js "$root/static/vendor/htmx.min.js"
cp package/LICENSE "$root/static/vendor/htmx.LICENSE"
sum="$(sha256sum "$root/static/vendor/htmx.min.js" | cut -d' ' -f1)"

# Keep the version line of static/vendor/README.md in step with the file.
sed -i -E \
  -e "s/^- package: .*/- package: \`htmx.org@${version}\` (npm registry), file \`dist\/htmx.min.js\`/" \
  -e "s/^- sha256: .*/- sha256: \`${sum}\`/" \
  "$root/static/vendor/README.md"

echo "static/vendor/htmx.min.js <- htmx.org@${version} (sha256 ${sum})"
