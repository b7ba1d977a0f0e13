package cmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/weftmesh/weft/weftctl/internal/up"
)

const upUsage = `Usage:
  weftctl up [--data-dir DIR] [--zones N] [--demo] [--port-offset N | --ephemeral-ports] [--log-level LEVEL]

Runs a whole Weft control plane in this process on an embedded etcd: with
--zones N, a global control plane and N zones, each with its own etcd.
Prints every address and an admin token, writes them to
<data-dir>/endpoints.json and adds each control plane to the weftctl config
(the first one becomes current), so weftctl just works. Ctrl-C stops
everything and keeps the data.`

func upCommand() *Command {
	return &Command{Name: "up", Summary: "Run the whole control plane locally on embedded etcd", Run: runUp}
}

func runUp(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("up")
	home, _ := os.UserHomeDir()
	dataDir := fs.String("data-dir", filepath.Join(home, ".weft", "up"), "where etcd data, keys and endpoints.json are kept")
	zones := fs.Int("zones", 0, "start a global control plane and this many zones (0: one standalone control plane)")
	demo := fs.Bool("demo", false, "run the demo: mesh demo with mTLS, a greeter (zone-2) and a client (zone-1; both local without --zones) printing call counts by serving zone")
	offset := fs.Int("port-offset", 0, "add this to every default port (run two instances side by side)")
	host := fs.String("host", "127.0.0.1", "address the listeners bind")
	logLevel := fs.String("log-level", "warn", "service log level: debug, info, warn, error")
	ephemeral := fs.Bool("ephemeral-ports", false, "bind every listener to a free port instead of the defaults (scripts and CI: read the addresses from endpoints.json)")
	pos, err := a.Parse(fs, upUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("up takes no arguments (got %q)", pos[0])
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageErrorf("--log-level: %q is not debug, info, warn or error", *logLevel)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return up.Run(ctx, up.Options{
		DataDir: *dataDir, Zones: *zones, Demo: *demo, PortOffset: *offset, Host: *host, EphemeralPorts: *ephemeral,
		Log: slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: lv})),
		Out: a.Stdout,
		OnReady: func(eps up.Endpoints) {
			for i, ep := range eps.ControlPlanes {
				name := "local-" + ep.Name
				if err := a.AddControlPlane(name, ep.APIURL, ep.AdminToken, i == 0); err != nil {
					fmt.Fprintf(a.Stderr, "warning: could not update the weftctl config: %v\n", err)
					return
				}
			}
			fmt.Fprintf(a.Stdout, "weftctl config: control planes local-* added; current is local-%s\n", eps.ControlPlanes[0].Name)
		},
	})
}
