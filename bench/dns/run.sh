#!/usr/bin/env bash
# bench/dns/run.sh: dns-server against CoreDNS, side by side in one run,
# both serving the same N `.mesh` names over loopback, measured with dnsperf.
#
#   bench/dns/run.sh                 # N=100000, 3 rounds of 15 s each
#   N=10000 ROUNDS=1 DURATION=5 bench/dns/run.sh
#
# It installs dnsperf (Debian package) and builds CoreDNS v1.15.0 with
# `go install` into $WEFT_BENCH_CACHE (default ~/.cache/weft-bench) when
# missing. dns-server gets its names the real way: benchseed runs an embedded
# etcd, adds a mesh with N services offered by remote ZoneIngresses and a
# Dataplane at 127.0.0.1 (so `svc-N.mesh` resolves by source address), and
# dns-server allocates every VIP; the same names and addresses then go into a
# zone file for CoreDNS's `file` plugin. Results go to $OUT (default
# bench/results/dns.md) and the raw dnsperf output to $WORK.
set -euo pipefail

N=${N:-100000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15}
CLIENTS=${CLIENTS:-8}
LAT_DURATION=${LAT_DURATION:-10}
WEFT_PORT=${WEFT_PORT:-15353}
ADMIN_PORT=${ADMIN_PORT:-15354}
COREDNS_PORT=${COREDNS_PORT:-15363}
# CoreDNS serves the names from a zone file (file plugin) or a hosts file
# (hosts plugin, reload off).
COREDNS_PLUGIN=${COREDNS_PLUGIN:-file}
RO_PORT=${RO_PORT:-15373}
RO_ADMIN_PORT=${RO_ADMIN_PORT:-15374}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${WEFT_BENCH_CACHE:-$HOME/.cache/weft-bench}
OUT=${OUT:-$ROOT/bench/results/dns.md}
WORK=${WORK:-$(mktemp -d /tmp/weft-dns-bench.XXXXXX)}
mkdir -p "$WORK/bin" "$CACHE/bin"

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

if ! command -v dnsperf >/dev/null; then
	log "installing dnsperf"
	apt-get install -y dnsperf >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y dnsperf >/dev/null; }
fi
if [ ! -x "$CACHE/bin/coredns" ]; then
	log "building CoreDNS v1.15.0 (once, into $CACHE/bin)"
	(cd /tmp && GOBIN="$CACHE/bin" GOWORK=off GOFLAGS=-mod=mod go install github.com/coredns/coredns@v1.15.0)
fi
log "building dns-server and benchseed"
(cd "$ROOT/dns-server" && GOWORK=off go build -o "$WORK/bin/dns-server" ./cmd/dns-server &&
	GOWORK=off go build -o "$WORK/bin/benchseed" ./internal/benchseed)

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS > deadline)); then log "timed out waiting for $what"; exit 1; fi
		sleep 0.2
	done
}
answers() { # answers PORT: does svc-0.mesh resolve?
	echo "svc-0.mesh A" | dnsperf -s 127.0.0.1 -p "$1" -n 1 -t 1 2>/dev/null | grep -q "Queries completed: *1 "
}
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# 1. etcd + dns-server, empty.
"$WORK/bin/benchseed" --dir "$WORK" --names "$N" 2>"$WORK/benchseed.log" &
pids+=($!)
wait_for 60 "etcd" test -s "$WORK/endpoint"
"$WORK/bin/dns-server" --etcd-endpoints "$(cat "$WORK/endpoint")" --address "127.0.0.1:$WEFT_PORT" \
	--admin-address "127.0.0.1:$ADMIN_PORT" --resolv-conf "" --log-level warn 2>"$WORK/dns-server.log" &
weft_pid=$!
pids+=($weft_pid)
# An answer-only replica (--vip-allocation=false) shows what the name table
# alone costs, without the allocator's state.
"$WORK/bin/dns-server" --etcd-endpoints "$(cat "$WORK/endpoint")" --address "127.0.0.1:$RO_PORT" \
	--admin-address "127.0.0.1:$RO_ADMIN_PORT" --resolv-conf "" --log-level warn --vip-allocation=false 2>"$WORK/dns-server-ro.log" &
ro_pid=$!
pids+=($ro_pid)
wait_for 30 "dns-server /readyz" curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz"
wait_for 30 "answer-only dns-server /readyz" curl -sf "http://127.0.0.1:$RO_ADMIN_PORT/readyz"
weft_rss0=$(rss_kb "$weft_pid")
ro_rss0=$(rss_kb "$ro_pid")

# 2. CoreDNS with an empty zone, for its baseline memory.
cat >"$WORK/empty.zone" <<EOF
\$ORIGIN mesh.
@ 30 IN SOA ns.mesh. hostmaster.mesh. 1 3600 600 86400 30
@ 30 IN NS ns.mesh.
ns 30 IN A 127.0.0.1
EOF
corefile() { # corefile ZONEFILE
	if [ "$COREDNS_PLUGIN" = hosts ]; then
		awk '$2 == "IN" && $3 == "A" && $1 != "ns" {print $4, $1 ".mesh"}' "$1" >"$1.hosts"
		printf 'mesh:%s {\n  bind 127.0.0.1\n  hosts %s {\n    ttl 30\n    reload 0\n    no_reverse\n  }\n}\n' "$COREDNS_PORT" "$1.hosts" >"$WORK/Corefile"
	else
		printf 'mesh:%s {\n  bind 127.0.0.1\n  file %s\n}\n' "$COREDNS_PORT" "$1" >"$WORK/Corefile"
	fi
}
corefile "$WORK/empty.zone"
"$CACHE/bin/coredns" -conf "$WORK/Corefile" -quiet >"$WORK/coredns-empty.log" 2>&1 &
core0_pid=$!
wait_for 30 "empty CoreDNS" sh -c "echo 'ns.mesh A' | dnsperf -s 127.0.0.1 -p $COREDNS_PORT -n 1 -t 1 | grep -q 'Queries completed: *1 '"
core_rss0=$(rss_kb "$core0_pid")
kill "$core0_pid"
wait "$core0_pid" 2>/dev/null || true

# 3. Seed N services; dns-server allocates their VIPs.
log "seeding $N services; dns-server allocates their VIPs"
touch "$WORK/seed-now"
wait_for 900 "VIP allocation" test -f "$WORK/ready"
wait_for 120 "dns-server table" sh -c "[ \"\$(curl -s http://127.0.0.1:$ADMIN_PORT/metrics | awk '\$1 == \"weft_dns_table_names\" {print \$2}')\" -ge $((N + 1)) ]"
alloc_s=$(cat "$WORK/allocation-seconds")
log "VIPs allocated in ${alloc_s}s"
wait_for 10 "dns-server answers" answers "$WEFT_PORT"
wait_for 60 "answer-only dns-server answers" answers "$RO_PORT"

# 4. CoreDNS with the same names.
corefile "$WORK/mesh.zone"
"$CACHE/bin/coredns" -conf "$WORK/Corefile" -quiet >"$WORK/coredns.log" 2>&1 &
core_pid=$!
pids+=($core_pid)
wait_for 120 "CoreDNS answers" answers "$COREDNS_PORT"
sleep 2 # let both settle after loading before reading memory
weft_rss=$(rss_kb "$weft_pid")
ro_rss=$(rss_kb "$ro_pid")
core_rss=$(rss_kb "$core_pid")

# 5. Throughput, alternating servers so both see the same machine load.
run_perf() { # run_perf NAME PORT ROUND
	dnsperf -s 127.0.0.1 -p "$2" -d "$WORK/queries.txt" -c "$CLIENTS" -l "$DURATION" -q 200 >"$WORK/perf-$1-$3.txt" 2>&1
	awk '/Queries per second:/ {printf "%.0f\n", $4}' "$WORK/perf-$1-$3.txt"
}
declare -A qps_sum qps_list lost
for r in $(seq 1 "$ROUNDS"); do
	for s in coredns weft; do
		port=$COREDNS_PORT
		[ "$s" = weft ] && port=$WEFT_PORT
		q=$(run_perf "$s" "$port" "$r")
		load=$(cut -d' ' -f1 /proc/loadavg)
		log "round $r $s: $q qps (load $load)"
		qps_list[$s]="${qps_list[$s]:-} $q"
		qps_sum[$s]=$(awk -v a="${qps_sum[$s]:-0}" -v b="$q" 'BEGIN {print a + b}')
		lost[$s]=$(awk '/Queries lost:/ {print $3}' "$WORK/perf-$s-$r.txt")
	done
done

# 6. Latency: dnsperf -v reports every query's latency; same load shape.
declare -A p50 p99 pmax
for s in coredns weft; do
	port=$COREDNS_PORT
	[ "$s" = weft ] && port=$WEFT_PORT
	dnsperf -v -s 127.0.0.1 -p "$port" -d "$WORK/queries.txt" -c "$CLIENTS" -l "$LAT_DURATION" -q 200 >"$WORK/lat-$s.txt" 2>&1 || true
	awk '$1 == ">" && $2 == "NOERROR" {print $NF}' "$WORK/lat-$s.txt" | sort -g >"$WORK/lat-$s.sorted"
	n=$(wc -l <"$WORK/lat-$s.sorted")
	p50[$s]=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {printf "%.3f", $1 * 1000; exit}' "$WORK/lat-$s.sorted")
	p99[$s]=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {printf "%.3f", $1 * 1000; exit}' "$WORK/lat-$s.sorted")
	pmax[$s]=$(tail -1 "$WORK/lat-$s.sorted" | awk '{printf "%.3f", $1 * 1000}')
	log "$s latency: p50 ${p50[$s]} ms, p99 ${p99[$s]} ms over $n answers"
done

avg() { awk -v s="$1" -v r="$ROUNDS" 'BEGIN {printf "%.0f", s / r}'; }
weft_avg=$(avg "${qps_sum[weft]}")
core_avg=$(avg "${qps_sum[coredns]}")
ratio=$(awk -v a="$weft_avg" -v b="$core_avg" 'BEGIN {printf "%.2f", a / b}')
per_name() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN {printf "%.0f", (a - b) * 1024 / n}'; }
cpu=$(nproc)
load=$(cut -d' ' -f1-3 /proc/loadavg)
kernel=$(uname -r)
mkdir -p "$(dirname "$OUT")"
cat >"$OUT" <<EOF
# dns-server benchmark

Command: \`N=$N ROUNDS=$ROUNDS DURATION=$DURATION bench/dns/run.sh\` ($(date -u +%Y-%m-%d), $cpu cores, kernel $kernel,
load average at the end $load: the cores are shared with other builds, so absolute numbers move between runs;
the servers are measured alternately in the same run, so the ratio is the number to read).

Setup: $N names \`svc-<i>.mesh\` (A), queried in order by \`dnsperf -c $CLIENTS -q 200 -l $DURATION\` over UDP on loopback,
client and server sharing the machine. dns-server answers them by source address (a Dataplane at 127.0.0.1 in mesh
\`bench\`), from VIPs it allocated itself through etcd; CoreDNS v1.15.0 serves the same names and addresses from a zone
file (\`$COREDNS_PLUGIN\` plugin, no other plugins). Latency from a separate \`dnsperf -v\` run of ${LAT_DURATION}s per server.

| | dns-server | CoreDNS 1.15.0 |
| --- | --- | --- |
| queries/s (mean of $ROUNDS) | $weft_avg | $core_avg |
| queries/s per round | ${qps_list[weft]} | ${qps_list[coredns]} |
| queries lost (last round) | ${lost[weft]} | ${lost[coredns]} |
| latency p50 (ms) | ${p50[weft]} | ${p50[coredns]} |
| latency p99 (ms) | ${p99[weft]} | ${p99[coredns]} |
| latency max (ms) | ${pmax[weft]} | ${pmax[coredns]} |
| RSS empty (MiB) | $((weft_rss0 / 1024)) | $((core_rss0 / 1024)) |
| RSS with $N names (MiB) | $((weft_rss / 1024)) | $((core_rss / 1024)) |
| memory per name (bytes, RSS delta / N) | $(per_name "$weft_rss" "$weft_rss0") | $(per_name "$core_rss" "$core_rss0") |
| answer-only replica (\`--vip-allocation=false\`): RSS empty / with $N names (MiB), bytes per name | $((ro_rss0 / 1024)) / $((ro_rss / 1024)), $(per_name "$ro_rss" "$ro_rss0") | |

Memory is process RSS (Go's heap runs up to twice its live size before a collection, CoreDNS's too). The
allocating replica also holds the allocator's view (every service of every Dataplane and ZoneIngress, every
VIP and address in use) and two store watches; the answer-only replica holds the name table, the
address index and its watches.

dns-server / CoreDNS throughput: **${ratio}×**.

VIP allocation: $N VIPs allocated by one dns-server replica into the embedded etcd in ${alloc_s}s
(batched compare-and-swap transactions).
EOF
log "wrote $OUT"
cat "$OUT"
