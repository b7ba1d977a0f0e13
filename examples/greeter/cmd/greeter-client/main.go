// Command greeter-client calls the example Greeter through xDS. Start it
// with GRPC_XDS_BOOTSTRAP naming the bootstrap weft-dp wrote for the
// client's Dataplane:
//
//	GRPC_XDS_BOOTSTRAP=/tmp/client-1/bootstrap.json GRPC_EXPERIMENTAL_XDS_SNI=true \
//	  greeter-client --target xds:///greeter.mesh --until OK --count 3
//
// Each call prints its outcome: "OK from greeter-1 in zone-2: hello client,
// ... you are spiffe://example/client", or the gRPC status
// ("PermissionDenied: ..." while no TrafficPermission allows the call).
// With --until it first calls until one call has that outcome (60 s at
// most), so a script can wait for a permission to take effect.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftmesh/weft/examples/greeter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := greeter.ClientMain(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "greeter-client:", err)
		os.Exit(1)
	}
}
