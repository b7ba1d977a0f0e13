#!/usr/bin/env bash
# Generation benchmarks of the xds-server (pure generators: no etcd, no
# network). Writes the raw output to stdout; numbers go to bench/results/xds.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
go test github.com/weftmesh/weft/xds-server/internal/generator -run '^$' \
  -bench 'BenchmarkNewSnapshot|BenchmarkGenerateMesh' -benchtime "${BENCHTIME:-5x}" -count "${COUNT:-1}" -benchmem
# Store write → cache updated, 1000 connected proxies (real etcd).
go test github.com/weftmesh/weft/xds-server/internal/reconcile -run '^$' \
  -bench BenchmarkReconcile -benchtime "${RECONCILE_BENCHTIME:-20x}" -benchmem
