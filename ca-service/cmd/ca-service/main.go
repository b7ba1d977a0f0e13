// Command ca-service runs Weft's certificate authority service.
package main

import (
	"context"
	"os"

	"github.com/weftmesh/weft/ca-service/app"
)

func main() { os.Exit(app.Main(context.Background(), os.Args[1:], os.Stderr)) }
