// Package zonesync is zone-sync's entry point for running it in-process
// (weftctl up, benchmarks, e2e tests in other modules): the same Config, New
// and App as the command.
package zonesync

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftmesh/weft/zone-sync/internal/app"
	"github.com/weftmesh/weft/zone-sync/internal/global"
)

// Config is zone-sync's configuration (see app.Config).
type Config = app.Config

// App is a zone-sync instance: New binds, Addr/AdminAddr report the bound
// addresses, Run serves until its context ends and shuts down cleanly.
type App = app.App

// Modes.
const (
	ModeGlobal = app.ModeGlobal
	ModeZone   = app.ModeZone
)

// Default returns the default configuration.
func Default() Config { return app.Default() }

// New builds an App.
func New(cfg Config) (*App, error) { return app.New(cfg) }

// Online reports whether a zone has an open stream to some global replica
// (read from global's etcd).
func Online(ctx context.Context, cli *clientv3.Client, zone string) (bool, error) {
	return global.Online(ctx, cli, zone)
}

// PresencePrefix is where global keeps the lease-attached presence keys.
const PresencePrefix = global.PresencePrefix
