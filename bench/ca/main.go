// Command ca-load measures ca-service's SignWorkloadCertificate throughput
// and latency through the real gRPC API (TLS from the control-plane CA,
// service token), against a ca-service running as its own process.
//
// Self-contained (starts an embedded etcd and the ca-service binary):
//
//	go build -o /tmp/ca-service ./ca-service/cmd/ca-service
//	go run ./bench/ca -ca-service-bin /tmp/ca-service -duration 20s
//
// Against a running control plane: -addr, -etcd-endpoints and
// -encryption-key-file (to issue a service token and trust the
// control-plane CA) instead of -ca-service-bin.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/etcdembed"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ca-load:", err)
		os.Exit(1)
	}
}

// cpuTime reads a process's user+system CPU time from /proc (Linux).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

var serverPID int

type opts struct {
	bin, addr, etcd, keyFile string
	duration                 time.Duration
	concurrency, conns, dps  int
	keyTypes                 string
	csr                      bool
}

func run() error {
	var o opts
	flag.StringVar(&o.bin, "ca-service-bin", "", "ca-service binary to start (self-contained mode)")
	flag.StringVar(&o.addr, "addr", "", "address of a running ca-service")
	flag.StringVar(&o.etcd, "etcd-endpoints", "", "etcd of the running control plane")
	flag.StringVar(&o.keyFile, "encryption-key-file", "", "encryption keys of the running control plane")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "measurement time per key type")
	flag.IntVar(&o.concurrency, "concurrency", 32, "requests in flight")
	flag.IntVar(&o.conns, "conns", 4, "gRPC connections")
	flag.IntVar(&o.dps, "dataplanes", 1000, "distinct dataplanes signed for")
	flag.StringVar(&o.keyTypes, "key-types", "ecdsa-p256,rsa", "mesh root key types to measure")
	flag.BoolVar(&o.csr, "csr", false, "send CSRs instead of public keys")
	flag.Parse()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cli *clientv3.Client
	var keys *seal.Keyring
	var err error
	if o.bin != "" {
		dir, err := os.MkdirTemp("", "ca-load")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		srv, err := etcdembed.Start(ctx, etcdembed.Config{Dir: filepath.Join(dir, "etcd")})
		if err != nil {
			return err
		}
		defer srv.Close()
		o.keyFile = filepath.Join(dir, "keys")
		if keys, err = seal.GenerateKeyFile(o.keyFile); err != nil {
			return err
		}
		if cli, err = srv.Client(); err != nil {
			return err
		}
		o.etcd = srv.Endpoint()
		stop, addr, err := startService(ctx, o)
		if err != nil {
			return err
		}
		defer stop()
		o.addr = addr
	} else {
		if o.addr == "" || o.etcd == "" {
			return errors.New("give -ca-service-bin, or -addr with -etcd-endpoints and -encryption-key-file")
		}
		if keys, err = seal.Load(o.keyFile, "WEFT_ENCRYPTION_KEYS"); err != nil {
			return err
		}
		if cli, err = clientv3.New(clientv3.Config{Endpoints: strings.Split(o.etcd, ","), Logger: zap.NewNop(), DialTimeout: 5 * time.Second}); err != nil {
			return err
		}
	}
	defer cli.Close()
	st := store.New(cli, store.WithKeyring(keys))

	claims := token.Claims{Kind: token.KindService}
	claims.Subject = "ca-load"
	tok, _, err := token.New(st).Issue(ctx, claims, time.Hour)
	if err != nil {
		return err
	}
	tc, err := cptls.ClientConfig(ctx, st)
	if err != nil {
		return err
	}
	clients := make([]cav1.CertificateAuthorityServiceClient, o.conns)
	for i := range clients {
		conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)), grpc.WithPerRPCCredentials(bearer(tok)))
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[i] = cav1.NewCertificateAuthorityServiceClient(conn)
	}

	fmt.Printf("# ca-service signing: %d dataplanes, concurrency %d over %d connections, %s each, GOMAXPROCS %d, csr=%t\n",
		o.dps, o.concurrency, o.conns, o.duration, runtime.GOMAXPROCS(0), o.csr)
	fmt.Printf("| root | certs | certs/s | p50 | p90 | p99 | max | errors | server CPU/cert | client CPU/cert | server-only capacity on 2 idle cores |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, kt := range strings.Split(o.keyTypes, ",") {
		mesh := "bench-" + strings.ReplaceAll(kt, "-", "")
		if err := setup(ctx, st, mesh, kt, o.dps); err != nil {
			return err
		}
		if err := measure(ctx, clients, token.New(st), mesh, kt, o); err != nil {
			return err
		}
	}
	if serverPID != 0 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", serverPID)); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "VmHWM:") {
					fmt.Printf("\n# ca-service peak RSS: %s\n", strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")))
				}
			}
		}
	}
	return nil
}

func setup(ctx context.Context, st *store.Store, mesh, keyType string, dps int) error {
	m := resource.New(resource.MeshType, "", mesh)
	cc := &meshv1.CertificateAuthorityBackend_BuiltinConfig_CaCert{KeyType: keyType}
	if keyType == "rsa" {
		cc.RsaBits = 2048
	}
	m.Spec = &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: "ca", Backends: []*meshv1.CertificateAuthorityBackend{
		{Name: "ca", Type: "builtin", Builtin: &meshv1.CertificateAuthorityBackend_BuiltinConfig{CaCert: cc}}}}}
	if _, _, err := st.Upsert(ctx, m); err != nil {
		return err
	}
	for i := 0; i < dps; i++ {
		d := resource.New(resource.DataplaneType, mesh, fmt.Sprintf("dp-%d", i))
		d.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1", Inbound: []*meshv1.Dataplane_Networking_Inbound{
			{Port: 8080, Tags: map[string]string{resource.ServiceTag: fmt.Sprintf("svc-%d", i%50)}}}}}
		if _, _, err := st.Upsert(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func measure(ctx context.Context, clients []cav1.CertificateAuthorityServiceClient, keys *token.Keys, mesh, keyType string, o opts) error {
	// Each workload's own dataplane token, as xds-server forwards it.
	dpTokens := make([]string, o.dps)
	for i := range dpTokens {
		c := token.Claims{Kind: token.KindDataplane, Mesh: mesh, Unbound: true}
		c.Subject = fmt.Sprintf("dp-%d", i)
		var err error
		if dpTokens[i], _, err = keys.Issue(ctx, c, time.Hour); err != nil {
			return err
		}
	}
	// Distinct workload keys, made before the clock starts.
	const nkeys = 64
	pubs := make([][]byte, nkeys)
	csrs := make([][]byte, nkeys)
	for i := range pubs {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pubs[i], _ = x509.MarshalPKIXPublicKey(&k.PublicKey)
		csrs[i], _ = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	}
	req := func(i int) *cav1.SignWorkloadCertificateRequest {
		r := &cav1.SignWorkloadCertificateRequest{Mesh: mesh, Dataplane: fmt.Sprintf("dp-%d", i%o.dps), DataplaneToken: dpTokens[i%o.dps]}
		if o.csr {
			r.Csr = csrs[i%nkeys]
		} else {
			r.PublicKey = pubs[i%nkeys]
		}
		return r
	}
	// Warm up: root creation, caches, connections.
	for i, c := range clients {
		if _, err := c.SignWorkloadCertificate(ctx, req(i)); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var n, errs atomic.Int64
	lats := make([][]time.Duration, o.concurrency)
	deadline := time.Now().Add(o.duration)
	start := time.Now()
	srv0, cli0 := cpuTime(serverPID), cpuTime(os.Getpid())
	var wg sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%len(clients)]
			for i := w; time.Now().Before(deadline); i += o.concurrency {
				t0 := time.Now()
				_, err := c.SignWorkloadCertificate(ctx, req(i))
				d := time.Since(t0)
				if err != nil {
					errs.Add(1)
					continue
				}
				n.Add(1)
				lats[w] = append(lats[w], d)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	srvCPU, cliCPU := cpuTime(serverPID)-srv0, cpuTime(os.Getpid())-cli0
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) == 0 {
		return fmt.Errorf("%s: no successful requests (%d errors)", keyType, errs.Load())
	}
	q := func(p float64) string {
		return all[min(int(float64(len(all))*p), len(all)-1)].Round(10 * time.Microsecond).String()
	}
	name := keyType
	if keyType == "rsa" {
		name = "rsa-2048"
	}
	perSrv := srvCPU / time.Duration(n.Load())
	perCli := cliCPU / time.Duration(n.Load())
	capacity := "n/a"
	if perSrv > 0 {
		capacity = fmt.Sprintf("%.0f/s", 2*float64(time.Second)/float64(perSrv))
	}
	fmt.Printf("| %s | %d | %.0f | %s | %s | %s | %s | %d | %s | %s | %s |\n", name, n.Load(), float64(n.Load())/elapsed.Seconds(),
		q(0.5), q(0.9), q(0.99), all[len(all)-1].Round(10*time.Microsecond), errs.Load(), perSrv.Round(time.Microsecond), perCli.Round(time.Microsecond), capacity)
	return nil
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startService runs the ca-service binary and waits until it is ready.
func startService(ctx context.Context, o opts) (func(), string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.CommandContext(ctx, o.bin, "--address", addr, "--admin-address", admin, "--etcd-endpoints", o.etcd,
		"--encryption-key-file", o.keyFile, "--log-level", "warn", "--instance-id", "bench", "--enable-pprof")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	serverPID = cmd.Process.Pid
	fmt.Fprintf(os.Stderr, "ca-service pid %d, gRPC %s, admin http://%s (pprof at /debug/pprof/)\n", serverPID, addr, admin)
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, addr, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, "", errors.New("ca-service did not become ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
