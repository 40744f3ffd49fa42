#!/usr/bin/env bash
# Refresh the dashboard's vendored JavaScript libraries from the npm registry.
#
# The page must work offline, so the minified builds (and each library's
# LICENSE) are committed under src/libp2p_introspection/dashboard/static/vendor/.
# This script fetches the pinned versions with `npm pack`, copies the files,
# and rewrites vendor/VENDOR.md (name@version, source, sha256 of each file).
#
# Usage: scripts/vendor_js.sh            (needs node + npm)
# To upgrade: change a version below, run, look at the dashboard, commit.
set -euo pipefail

TABULATOR_VERSION="6.5.3"   # tables: sorting, filtering, row expansion
UPLOT_VERSION="1.6.32"      # time-series charts

cd "$(dirname "$0")/.."
DEST="src/libp2p_introspection/dashboard/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fetch() {  # fetch NAME VERSION -> extracts into $WORK/NAME/package
    local name="$1" version="$2"
    mkdir -p "$WORK/$name"
    (cd "$WORK/$name" && npm pack --silent "$name@$version" >/dev/null && tar xzf ./*.tgz)
}

fetch tabulator-tables "$TABULATOR_VERSION"
fetch uplot "$UPLOT_VERSION"

rm -rf "$DEST"
mkdir -p "$DEST/tabulator" "$DEST/uplot"
T="$WORK/tabulator-tables/package"
U="$WORK/uplot/package"
cp "$T/dist/js/tabulator.min.js" "$T/dist/css/tabulator_simple.min.css" "$T/LICENSE" "$DEST/tabulator/"
cp "$U/dist/uPlot.iife.min.js" "$U/dist/uPlot.min.css" "$U/LICENSE" "$DEST/uplot/"
# Source-map comments point at files we do not ship; drop them so browsers do not ask.
sed -i '/sourceMappingURL=/d' "$DEST/tabulator/tabulator.min.js" "$DEST/tabulator/tabulator_simple.min.css"

{
    echo "# Vendored JavaScript libraries"
    echo
    echo "Shipped with the package so that the dashboard works offline (no CDN)."
    echo "Refresh with \`scripts/vendor_js.sh\` (edit the pinned versions there)."
    echo "Source-map comments are removed from the copies; nothing else is changed."
    echo
    echo "| library | version | license | source | files |"
    echo "|---|---|---|---|---|"
    echo "| [Tabulator](https://tabulator.info) | $TABULATOR_VERSION | MIT | npm \`tabulator-tables@$TABULATOR_VERSION\` | tabulator/tabulator.min.js, tabulator/tabulator_simple.min.css, tabulator/LICENSE |"
    echo "| [uPlot](https://github.com/leeoniya/uPlot) | $UPLOT_VERSION | MIT | npm \`uplot@$UPLOT_VERSION\` | uplot/uPlot.iife.min.js, uplot/uPlot.min.css, uplot/LICENSE |"
    echo
    echo "sha256 of the shipped files:"
    echo
    echo '```'
    (cd "$DEST" && sha256sum tabulator/* uplot/*)
    echo '```'
} > "$DEST/VENDOR.md"

echo "vendored into $DEST:"
ls -l "$DEST"/*
