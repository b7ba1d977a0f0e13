// Command api-server serves Weft's resource API over gRPC and REST.
package main

import (
	"context"
	"os"

	"github.com/weftmesh/weft/api-server/app"
)

func main() { os.Exit(app.Main(context.Background(), os.Args[1:], os.Stderr)) }
