package xds

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	caapp "github.com/weftmesh/weft/ca-service/app"
	"github.com/weftmesh/weft/pkg/config"
	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	eproc "github.com/weftmesh/weft/test/e2e/internal/proc"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-xds-e2e")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		goBin, err := exec.LookPath("go")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e needs the go command in PATH to build its programs:", err)
			return 1
		}
		for out, pkg := range map[string]string{
			"xds-server": "github.com/weftmesh/weft/xds-server/cmd/xds-server",
			"testapp":    "github.com/weftmesh/weft/test/e2e/xds/testapp",
			"weft-dp":    "github.com/weftmesh/weft/weft-dp/cmd/weft-dp",
		} {
			cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, out), pkg)
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

const keyText = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

// env is one control plane: etcd, the real ca-service (in process, TLS from
// the control-plane CA), and the store/token keys the test uses to write
// resources and issue tokens.
type env struct {
	t      *testing.T
	etcd   *etcdembed.Server
	st     *store.Store
	keys   *token.Keys
	caAddr string
	// cpRoot is the control-plane CA certificate file data planes trust.
	cpRoot string
	ctx    context.Context
}

func newEnv(t *testing.T) *env {
	srv := etcdtest.Start(t)
	ring, err := seal.Parse(keyText)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(etcdtest.Client(t, srv), store.WithKeyring(ring))
	e := &env{t: t, etcd: srv, st: st, keys: token.New(st), ctx: context.Background()}
	cfg := caapp.Default()
	cfg.Address, cfg.AdminAddress, cfg.InstanceID = "127.0.0.1:0", "127.0.0.1:0", "ca-e2e"
	cfg.Etcd.Client = etcdtest.Client(t, srv)
	cfg.Encryption.Keyring = ring
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ca, err := caapp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = ca.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	e.caAddr = ca.Addr()
	root, err := cptls.RootPEM(e.ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	e.cpRoot = filepath.Join(t.TempDir(), "control-plane-ca.pem")
	if err := os.WriteFile(e.cpRoot, root, 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) apply(yaml string) {
	e.t.Helper()
	rs, err := resource.UnmarshalAll(strings.NewReader(yaml))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range rs {
		if _, _, err := e.st.Upsert(e.ctx, r); err != nil {
			e.t.Fatalf("apply %s: %v", r.Key(), err)
		}
	}
}

func (e *env) delete(t *resource.Type, mesh, name string) {
	e.t.Helper()
	if err := e.st.Delete(e.ctx, t, mesh, name, 0); err != nil {
		e.t.Fatalf("delete %s/%s: %v", mesh, name, err)
	}
}

// dataplaneToken issues a token for mesh/name bound, as the API does by
// default, to the services of the registered Dataplane.
func (e *env) dataplaneToken(mesh, name string, d time.Duration) string {
	e.t.Helper()
	c := token.Claims{Kind: token.KindDataplane, Mesh: mesh}
	if r, err := e.st.Get(e.ctx, resource.DataplaneType, mesh, name); err == nil {
		c.Services = resource.DataplaneServices(r.Spec.(*meshv1.Dataplane))
	}
	return e.issueToken(name, c, d)
}

func (e *env) issueToken(name string, c token.Claims, d time.Duration) string {
	e.t.Helper()
	c.Kind = token.KindDataplane
	c.Subject = name
	tok, _, err := e.keys.Issue(e.ctx, c, d)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// The shared process helpers (package proc), under the names these tests use.
type proc = eproc.Proc

func start(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	return eproc.Start(t, env, filepath.Join(binDir, name), args...)
}

var (
	eventually = eproc.Eventually
	call       = eproc.Call
	freePort   = eproc.FreePort
)

type replica struct {
	*proc
	addr, instance string
}

var addrRe = regexp.MustCompile(`msg="serving xDS" .*address=(\S+)`)

func (e *env) startReplica(t *testing.T, instance string) *replica {
	p := start(t, []string{config.EncryptionKeysEnv + "=" + keyText}, "xds-server",
		"--address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0",
		"--instance-id", instance, "--etcd-endpoints", e.etcd.Endpoint(),
		"--ca-address", e.caAddr, "--insight-ttl", "2s", "--log-level", "info")
	m := p.WaitLine(t, addrRe, 30*time.Second)
	return &replica{proc: p, addr: m[1], instance: instance}
}

// forwarder stands for a Service in front of the replicas: each new
// connection goes to the first replica that accepts it.
type forwarder struct {
	lis      net.Listener
	mu       sync.Mutex
	backends []string
}

func newForwarder(t *testing.T, backends ...string) *forwarder {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{lis: lis, backends: backends}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go f.handle(c)
		}
	}()
	return f
}

func (f *forwarder) addr() string { return f.lis.Addr().String() }

func (f *forwarder) handle(c net.Conn) {
	defer c.Close()
	f.mu.Lock()
	backends := append([]string(nil), f.backends...)
	f.mu.Unlock()
	var up net.Conn
	for _, b := range backends {
		var err error
		if up, err = net.DialTimeout("tcp", b, time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

var _ = base64.StdEncoding
