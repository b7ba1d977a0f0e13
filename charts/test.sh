#!/usr/bin/env bash
# Chart and deployable checks (CI piece). Installs helm (pinned, built through
# the Go module proxy) into ${WEFT_CACHE:-$HOME/.cache/weft}/bin unless it is
# already there, then runs the Go tests of charts/chartstest:
#   helm lint --strict + helm template of every chart with default, global,
#   zone and HA values; golden renders (charts/*/testdata); strict decoding
#   into k8s.io/api types; the deployment policy; wrong values failing with
#   the schema's message; the weft-lib library chart; Dockerfiles, systemd
#   units, static binaries. The tests vendor the charts' file://
#   dependencies (charts/deps.sh) in a temporary copy of charts/.
#
#   charts/test.sh                 install helm if needed, run the checks
#   charts/test.sh --install-only  only install helm (for .ci/install-test-deps)
#   UPDATE=1 charts/test.sh        rewrite golden files, re-sync shared schema $defs
#   HELM=/path/to/helm charts/test.sh   use that helm
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
CACHE="${WEFT_CACHE:-$HOME/.cache/weft}"
BIN="$CACHE/bin"

install_helm() {
  if [ -n "${HELM:-}" ]; then
    echo "helm: $HELM (from \$HELM)"
    return
  fi
  if [ -x "$BIN/helm" ] && "$BIN/helm" version --short 2>/dev/null | grep -q "^${HELM_VERSION%.*}"; then
    echo "helm: $BIN/helm (cached)"
    return
  fi
  echo "helm: building helm.sh/helm/v3/cmd/helm@$HELM_VERSION into $BIN"
  mkdir -p "$BIN"
  # Outside the workspace: helm's dependencies must not touch go.work.
  (cd / && GOWORK=off GOBIN="$BIN" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
  "$BIN/helm" version --short
}

install_helm
if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi
export HELM="${HELM:-$BIN/helm}"
go test -count=1 github.com/weftmesh/weft/charts/chartstest/...
