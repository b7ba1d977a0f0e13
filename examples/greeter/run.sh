#!/usr/bin/env bash
# The greeter example against a running `weftctl up`: a proxyless gRPC
# greeter and client, each with weft-dp beside it, in a mesh with mTLS on.
#
#   examples/greeter/run.sh            the walkthrough: register, start, call
#                                      (PermissionDenied), allow, call (OK)
#   examples/greeter/run.sh greeter    only start one more greeter instance
#                                      and keep it running until Ctrl-C
#
# Environment (all optional):
#   PORT_OFFSET   the --port-offset `weftctl up` was started with (0)
#   ZONE          with `weftctl up --zones N`: the zone to run in (zone-1 ...);
#                 the mesh and the permission are written on global
#   MESH          the mesh (example); `weftctl up --demo` runs its own in `demo`
#   NAME          the greeter's Dataplane name (greeter-1)
#   GREETER_PORT  the greeter's port (50051); CLIENT_PORT the client's (50052)
#   WORKDIR       tokens, bootstraps, certificates and logs (a new temporary directory)
#   BIN           where the binaries are built (<repo>/bin)
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO=$PWD
EXAMPLE=$REPO/examples/greeter
BIN=${BIN:-$REPO/bin}
MESH=${MESH:-example}
NAME=${NAME:-greeter-1}
GREETER_PORT=${GREETER_PORT:-50051}
CLIENT_PORT=${CLIENT_PORT:-50052}
WORKDIR=${WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/weft-greeter.XXXXXX")}
mkdir -p "$WORKDIR"

# weftctl up's ports: the first control plane (standalone or global) on the
# defaults, zone-k 100*k above them, all shifted by --port-offset.
offset=${PORT_OFFSET:-0}
base=$offset
zone_name=standalone
if [[ -n "${ZONE:-}" ]]; then
  base=$((offset + 100 * ${ZONE#zone-}))
  zone_name=$ZONE
fi
FIRST_API=http://127.0.0.1:$((5681 + offset)) # meshes and policies are written here
API=http://127.0.0.1:$((5681 + base))         # Dataplanes are registered in their zone
XDS=127.0.0.1:$((5678 + base))
XDS_ADMIN=127.0.0.1:$((5688 + base))

say() { printf '\n## %s\n' "$*" >&2; }
# run prints a command (on stderr: stdout may be redirected to a file) and runs it.
run() { printf '$ %s\n' "$*" >&2; "$@"; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM # run the EXIT trap on Ctrl-C and SIGTERM too

wait_for_file() {
  for _ in $(seq 1 600); do
    [[ -s "$1" ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1; the weft-dp log says:" >&2
  cat "$2" >&2
  return 1
}

build() {
  say "Build weftctl, weft-dp and the example (into $BIN)"
  run go build -o "$BIN/" ./weftctl/cmd/weftctl ./weft-dp/cmd/weft-dp ./examples/greeter/cmd/greeter ./examples/greeter/cmd/greeter-client
}

# dataplane NAME FILE PORT [READY]: registers a Dataplane from FILE (with its
# mesh, name and port replaced; with READY=false its inbound is registered not
# ready: no caller gets it until mark_ready), issues its token, fetches the
# control-plane CA and starts weft-dp beside it; the bootstrap is
# $WORKDIR/NAME/bootstrap.json.
dataplane() {
  local name=$1 file=$2 port=$3 ready=${4:-true}
  say "Register the Dataplane $name and start weft-dp beside it"
  sed -e "s/^mesh: .*/mesh: $MESH/" -e "s/^name: .*/name: $name/" -e "s/- port: .*/- port: $port/" "$file" >"$WORKDIR/$name.yaml"
  if [[ $ready == false ]]; then
    printf '    health:\n      ready: false\n' >>"$WORKDIR/$name.yaml"
  fi
  WEFT_CP=$API run "$BIN/weftctl" apply -f "$WORKDIR/$name.yaml"
  WEFT_CP=$API run "$BIN/weftctl" generate dataplane-token --mesh "$MESH" --name "$name" >"$WORKDIR/$name.token"
  [[ -s "$WORKDIR/cp-ca.pem" ]] || run curl -sf "http://$XDS_ADMIN/control-plane-ca.pem" -o "$WORKDIR/cp-ca.pem"
  printf '$ %s\n' "weft-dp run --cp $XDS --cp-ca-file $WORKDIR/cp-ca.pem --mesh $MESH --name $name --token-file $WORKDIR/$name.token --proxy-type grpc --workdir $WORKDIR/$name &" >&2
  "$BIN/weft-dp" run --cp "$XDS" --cp-ca-file "$WORKDIR/cp-ca.pem" --mesh "$MESH" --name "$name" \
    --token-file "$WORKDIR/$name.token" --proxy-type grpc --workdir "$WORKDIR/$name" >"$WORKDIR/$name.weft-dp.log" 2>&1 &
  pids+=($!)
  wait_for_file "$WORKDIR/$name/certs/cert.pem" "$WORKDIR/$name.weft-dp.log"
  grep -h 'certificate written' "$WORKDIR/$name.weft-dp.log" | head -1
}

# The greeter's Dataplane is registered not ready: the xds-server sends the
# greeter its listener (it needs the Dataplane for that), but callers get the
# endpoint only once the greeter serves; before, its port accepts and closes
# connections (grpc-go's xDS server, not serving yet) and calls routed to it
# would fail with Unavailable.
start_greeter() {
  dataplane "$NAME" "$EXAMPLE/greeter-1.yaml" "$GREETER_PORT" false
  say "Start the greeter with weft-dp's bootstrap"
  printf '$ %s\n' "GRPC_XDS_BOOTSTRAP=$WORKDIR/$NAME/bootstrap.json greeter --address 127.0.0.1:$GREETER_PORT --zone $zone_name --instance $NAME &" >&2
  GRPC_XDS_BOOTSTRAP=$WORKDIR/$NAME/bootstrap.json "$BIN/greeter" --address "127.0.0.1:$GREETER_PORT" --zone "$zone_name" --instance "$NAME" \
    >"$WORKDIR/$NAME.log" 2>&1 &
  pids+=($!)
  say "Once the greeter serves, mark its Dataplane's inbound ready"
  for _ in $(seq 1 600); do
    grep -q "greeter: $NAME serving on " "$WORKDIR/$NAME.log" && break
    sleep 0.1
  done
  if ! grep -q "greeter: $NAME serving on " "$WORKDIR/$NAME.log"; then
    echo "the greeter is not serving after 60 s; its log says:" >&2
    cat "$WORKDIR/$NAME.log" >&2
    return 1
  fi
  sed -e 's/ready: false/ready: true/' "$WORKDIR/$NAME.yaml" >"$WORKDIR/$NAME.ready.yaml"
  mv "$WORKDIR/$NAME.ready.yaml" "$WORKDIR/$NAME.yaml"
  WEFT_CP=$API run "$BIN/weftctl" apply -f "$WORKDIR/$NAME.yaml"
}

client() {
  printf '$ %s\n' "GRPC_XDS_BOOTSTRAP=$WORKDIR/client-1/bootstrap.json GRPC_EXPERIMENTAL_XDS_SNI=true greeter-client --target xds:///greeter.mesh $*" >&2
  GRPC_XDS_BOOTSTRAP=$WORKDIR/client-1/bootstrap.json GRPC_EXPERIMENTAL_XDS_SNI=true "$BIN/greeter-client" --target xds:///greeter.mesh "$@"
}

walkthrough() {
  build
  say "Create the mesh '$MESH' with mTLS on"
  sed -e "s/^name: .*/name: $MESH/" "$EXAMPLE/mesh.yaml" >"$WORKDIR/mesh.yaml"
  WEFT_CP=$FIRST_API run "$BIN/weftctl" apply -f "$WORKDIR/mesh.yaml"
  # A rerun starts from no permission, so the first calls are denied again.
  WEFT_CP=$FIRST_API "$BIN/weftctl" delete traffic-permission client-to-greeter -m "$MESH" >/dev/null 2>&1 || true
  start_greeter
  dataplane client-1 "$EXAMPLE/client-1.yaml" "$CLIENT_PORT"

  say "Call the greeter: mTLS is on and no TrafficPermission allows client -> greeter, so it refuses"
  client --until PermissionDenied --count 2

  say "Allow client -> greeter"
  sed -e "s/^mesh: .*/mesh: $MESH/" "$EXAMPLE/permission.yaml" >"$WORKDIR/permission.yaml"
  WEFT_CP=$FIRST_API run "$BIN/weftctl" apply -f "$WORKDIR/permission.yaml"

  say "Call again: allowed, and the greeter sees the client's SPIFFE ID from its certificate"
  client --until OK --count 3

  say "Done. Logs, tokens and certificates are in $WORKDIR"
}

greeter_only() {
  build
  trap 'WEFT_CP=$API "$BIN/weftctl" delete dataplane "$NAME" -m "$MESH" >/dev/null 2>&1 || true; cleanup' EXIT
  start_greeter
  say "$NAME runs in $zone_name until Ctrl-C; its Dataplane is removed then"
  tail -n +1 -f "$WORKDIR/$NAME.log" &
  pids+=($!)
  wait "${pids[-2]}"
}

case "${1:-walkthrough}" in
walkthrough) walkthrough ;;
greeter) greeter_only ;;
*)
  echo "usage: $0 [walkthrough|greeter]" >&2
  exit 2
  ;;
esac
