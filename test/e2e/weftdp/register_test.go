// Package weftdp runs the weft-dp binary against the real api-server (in
// process, on real etcd): what weft-dp's own module cannot test without
// requiring api-server's module.
package weftdp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	apiapp "github.com/weftmesh/weft/api-server/app"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
)

var weftDP string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-dp-e2e")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		goBin, err := exec.LookPath("go")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e needs the go command in PATH to build weft-dp:", err)
			return 1
		}
		weftDP = filepath.Join(dir, "weft-dp")
		cmd := exec.Command(goBin, "build", "-o", weftDP, "github.com/weftmesh/weft/weft-dp/cmd/weft-dp")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build weft-dp:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer is a bytes.Buffer safe to read while the process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRegisterAndRemove runs `weft-dp run --dataplane-file` against a real
// api-server: the Dataplane exists while weft-dp runs and is gone after a
// clean exit on SIGTERM.
func TestRegisterAndRemove(t *testing.T) {
	cli := etcdtest.Client(t, nil)
	ring, _ := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{3}, 32)})
	cfg := apiapp.Default()
	cfg.GRPCAddress, cfg.HTTPAddress, cfg.AdminAddress = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Etcd.Client = cli
	cfg.Encryption.Keyring = ring
	cfg.Logging.Level = "warn"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api, err := apiapp.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	apiDone := make(chan struct{})
	go func() { _ = api.Run(ctx); close(apiDone) }()
	defer func() { cancel(); <-apiDone }()
	admin, err := api.IssueAdminToken(ctx, "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(cli, store.WithKeyring(ring))
	mesh := resource.New(resource.MeshType, "", "default")
	if _, err := st.Create(ctx, mesh); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cmd := exec.Command(weftDP, "run", "--cp", "127.0.0.1:1", "--mesh", "default", "--name", "vm-1", "--proxy-type", "grpc", "--workdir", dir,
		"--token-file", write(t, dir, "token", "dp-token"), "--api-url", "http://"+api.HTTPAddr(),
		"--api-token-file", write(t, dir, "admin", admin), "--log-level", "error",
		"--dataplane-file", write(t, dir, "dp.yaml", `
type: Dataplane
name: vm-1
networking:
  address: 127.0.0.1
  inbound:
  - port: 8080
    tags:
      weft.io/service: vm
`))
	var errb syncBuffer
	cmd.Stdout, cmd.Stderr = &errb, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := st.Get(ctx, resource.DataplaneType, "default", "vm-1")
		_, ferr := os.Stat(filepath.Join(dir, "bootstrap.json"))
		if err == nil && ferr == nil {
			break
		}
		select {
		case werr := <-exited:
			waited = true
			t.Fatalf("weft-dp exited before registering: %v; %s", werr, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not registered: %v %v; %s", err, ferr, errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		waited = true
		if err != nil {
			t.Fatalf("weft-dp did not exit cleanly on SIGTERM: %v; %s", err, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("weft-dp still running 30s after SIGTERM; %s", errb.String())
	}
	if _, err := st.Get(ctx, resource.DataplaneType, "default", "vm-1"); !store.IsNotFound(err) {
		t.Fatalf("dataplane still there after a clean exit: %v", err)
	}
}
