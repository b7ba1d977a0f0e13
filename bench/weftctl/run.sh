#!/bin/sh
# Benchmarks of weftctl's own cost: listing/rendering against the in-memory
# REST fixture (10k dataplanes) and against the real api-server on embedded
# etcd (2k dataplanes; apply of 200 unchanged). Results: bench/results/weftctl.md.
set -eu
cd "$(dirname "$0")/../../weftctl"
uptime
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-5x}" -benchmem ./internal/cmd/ 2>&1 | grep -v '^time=' 
uptime
