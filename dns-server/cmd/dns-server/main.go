// Command dns-server allocates VIPs and answers `<service>.mesh` names.
package main

import (
	"context"
	"os"

	"github.com/weftmesh/weft/dns-server/app"
)

func main() { os.Exit(app.Main(context.Background(), os.Args[1:], os.Stderr)) }
