// Command k8s-controller makes Weft configurable with kubectl: CRDs for
// every Weft resource type synced into the store, and the admission
// webhooks.
package main

import (
	"context"
	"os"

	"github.com/weftmesh/weft/k8s-controller/app"
)

func main() { os.Exit(app.Main(context.Background(), os.Args[1:], os.Stderr)) }
