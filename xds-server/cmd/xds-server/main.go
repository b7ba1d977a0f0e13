// Command xds-server serves xDS (ADS, SotW and delta) to Envoy sidecars,
// ingresses and proxyless gRPC applications.
package main

import (
	"context"
	"os"

	"github.com/weftmesh/weft/xds-server/app"
)

func main() { os.Exit(app.Main(context.Background(), os.Args[1:], os.Stderr)) }
