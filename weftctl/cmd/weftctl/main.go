// Command weftctl is the Weft control plane CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftmesh/weft/weftctl/internal/cmd"
	"github.com/weftmesh/weft/weftctl/internal/up"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == up.DemoAppCommand {
		// A workload of `weftctl up --demo`, started by up itself.
		os.Exit(up.DemoApp(os.Args[2:], os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmd.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
