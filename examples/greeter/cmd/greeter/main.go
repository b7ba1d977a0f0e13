// Command greeter is the example's proxyless gRPC server. Start it with
// GRPC_XDS_BOOTSTRAP naming the bootstrap weft-dp wrote for its Dataplane,
// listening on the Dataplane's inbound address and port:
//
//	GRPC_XDS_BOOTSTRAP=/tmp/greeter-1/bootstrap.json greeter --address 127.0.0.1:50051 --zone zone-2 --instance greeter-1
//
// Each reply says which instance and zone served it and who called (the
// SPIFFE ID in the caller's certificate).
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
	if err := greeter.ServerMain(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
}
