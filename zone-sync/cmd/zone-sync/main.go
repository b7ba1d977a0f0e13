// Command zone-sync links zone control planes to the global one.
package main

import (
	"context"
	"os"

	"github.com/weftmesh/weft/zone-sync/app"
)

func main() { os.Exit(app.Main(context.Background(), os.Args[1:], os.Stderr)) }
