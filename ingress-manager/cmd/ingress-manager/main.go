// Command ingress-manager keeps a zone's ZoneIngress current and, with
// --dataplane=builtin, is the zone's ingress: it routes connections from
// other zones by the TLS server name without terminating TLS.
package main

import (
	"context"
	"os"

	"github.com/weftmesh/weft/ingress-manager/app"
)

func main() { os.Exit(app.Main(context.Background(), os.Args[1:], os.Stderr)) }
