#!/usr/bin/env bash
# Vendors the charts' file:// dependencies (offline, nothing is downloaded):
# weft-lib into every service chart's charts/, then the service charts into
# weft/charts/. helm dependency build does not recurse, so the order matters:
# the umbrella packages each service chart together with the weft-lib it
# vendored. The vendored .tgz files are build output (.gitignore), not
# committed; run this after a clone and after editing any chart.
#
#   charts/deps.sh          vendor in charts/ of this repository
#   charts/deps.sh DIR      vendor in a copy of charts/ at DIR (the tests do)
#   HELM=/path/to/helm charts/deps.sh
set -euo pipefail
dir="${1:-$(dirname "$0")}"
helm="${HELM:-helm}"
for chart in "$dir"/*/Chart.yaml; do
  c="$(dirname "$chart")"
  case "$(basename "$c")" in
    weft | weft-lib) continue ;;
  esac
  "$helm" dependency build "$c"
done
"$helm" dependency build "$dir/weft"
