package main

import (
	"context"
	"io"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"

	caapp "github.com/weftmesh/weft/ca-service/app"
	"github.com/weftmesh/weft/pkg/seal"
)

// startCA runs a ca-service in this process (as weftctl up and the e2e
// harness do) on the fleet's etcd: it creates the builtin mesh roots and
// signs the workload certificates the xds-server serves over SDS. It
// returns its gRPC address and a stop function.
func startCA(ctx context.Context, cli *clientv3.Client, keys *seal.Keyring) (string, func(), error) {
	cfg := caapp.Default()
	cfg.Address, cfg.AdminAddress, cfg.InstanceID = "127.0.0.1:0", "127.0.0.1:0", "xds-fleet-ca"
	cfg.Etcd.Client = cli
	cfg.Encryption.Keyring = keys
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ca, err := caapp.New(cfg)
	if err != nil {
		return "", nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = ca.Run(cctx); close(done) }()
	return ca.Addr(), func() { cancel(); <-done }, nil
}
