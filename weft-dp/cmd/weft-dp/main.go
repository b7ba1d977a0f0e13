// Command weft-dp runs beside a workload: it registers the Dataplane,
// bootstraps Envoy (and keeps it running) or feeds a proxyless gRPC
// application its xDS bootstrap and certificates.
package main

import (
	"context"
	"os"

	"github.com/weftmesh/weft/weft-dp/internal/app"
)

func main() { os.Exit(app.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }
