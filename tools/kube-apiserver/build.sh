#!/usr/bin/env bash
# Builds kube-apiserver from the Go module proxy (no git, no internet beyond
# the proxy) into $WEFT_CACHE/bin/kube-apiserver-$VERSION and prints its path.
# k8s.io/kubernetes replaces its 33 k8s.io/* staging modules with ./staging/...
# paths, which a module-proxy download cannot resolve; each one is mapped to the
# matching published k8s.io/<module>@v0.<minor>.<patch> release instead.
# Takes about 4 minutes on 2 cores the first time; later calls return at once.
set -euo pipefail
VERSION="${KUBE_VERSION:-v1.37.2}"
CACHE="${WEFT_CACHE:-$HOME/.cache/weft}"
OUT="$CACHE/bin/kube-apiserver-$VERSION"
if [ -x "$OUT" ] && "$OUT" --version >/dev/null 2>&1; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$CACHE/bin"
STAGING="v0.${VERSION#v1.}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS=-mod=mod GOWORK=off
go mod init weft.local/kube-apiserver-build >/dev/null 2>&1
modfile="$(go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
{
  echo "require k8s.io/kubernetes $VERSION"
  echo "replace ("
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$STAGING"'#p' "$modfile"
  echo ")"
} >> go.mod
cat > main.go <<'GO'
package main

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"
GO
go mod tidy >/dev/null 2>&1 || go mod tidy
go build -trimpath -o "$OUT.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$OUT.tmp" "$OUT"
echo "$OUT"
