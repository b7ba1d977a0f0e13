package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/catest"
)

// TestStartsWithUndecodableValues: a Secret sealed with a removed key and a
// corrupt Mesh and Dataplane in etcd before start do not keep the
// xds-server from becoming ready and serving the healthy dataplanes.
func TestStartsWithUndecodableValues(t *testing.T) {
	ring, err := seal.Parse("k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	if err != nil {
		t.Fatal(err)
	}
	cli := etcdtest.Client(t, nil)
	st := store.New(cli, store.WithKeyring(ring))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := &testEnv{t: t, ctx: ctx, st: st, keys: token.New(st)}
	e.apply(resourcesYAML)
	gone, _ := seal.New(seal.Key{ID: "removed", Bytes: bytes.Repeat([]byte{5}, 32)})
	sec := resource.New(resource.SecretType, "default", "lost-key")
	sec.Spec = &meshv1.Secret{Data: []byte("x")}
	if _, err := store.New(cli, store.WithKeyring(gone)).Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{st.Key(resource.MeshType, "", "broken"), st.Key(resource.DataplaneType, "default", "dp-broken")} {
		if _, err := cli.Put(ctx, k, "\xff\xfe corrupt"); err != nil {
			t.Fatal(err)
		}
	}
	ca := catest.Start(t, st)
	caConn, err := grpc.NewClient(ca.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caConn.Close() })
	cfg := Default()
	cfg.Address, cfg.AdminAddress, cfg.InstanceID = "127.0.0.1:0", "127.0.0.1:0", "test"
	cfg.Etcd = config.Etcd{Client: cli}
	cfg.Encryption = config.Encryption{Keyring: ring}
	cfg.CA = CAConfig{Conn: caConn}
	cfg.InsecureDev = true
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + a.AdminAddr() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("xds-server not ready within 60s with undecodable values in etcd")
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, err := grpc.NewClient(a.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e.conn, e.app = conn, a
	s := e.stream("")
	n := node("default.web-1", "envoy")
	n.Metadata.Fields["dataplane.token"] = structpb.NewStringValue(e.token("default", "web-1", e.keys, time.Hour))
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if names := strings.Join(listenerNames(t, resp), ","); !strings.Contains(names, "inbound:127.0.0.1:10001") {
		t.Fatalf("listeners: %s", names)
	}
}
