package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/sni"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pki is a mesh CA issuing workload certificates with SPIFFE URI SANs.
type pki struct {
	auth *ca.Authority
	pool *x509.CertPool
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	certPEM, keyPEM, err := ca.GenerateRoot(ca.RootOptions{CommonName: "mesh ca"})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := ca.Parse(certPEM, keyPEM, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return &pki{auth: auth, pool: pool}
}

func (p *pki) cert(t testing.TB, mesh, svc string) tls.Certificate {
	t.Helper()
	key, err := ca.GenerateKey("ecdsa-p256", 0)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(ca.SPIFFEID(mesh, svc))
	leaf, _, err := p.auth.Sign(&x509.Certificate{SerialNumber: ca.RandomSerial(), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
}

// backend is a workload: an mTLS echo server that prefixes each line with
// its name and the caller's SPIFFE ID.
func backend(t *testing.T, p *pki, mesh, svc, name string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.cert(t, mesh, svc)},
		ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				caller := tc.ConnectionState().PeerCertificates[0].URIs[0].String()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, name+" "+caller+" "+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func dataplane(mesh, name, addr string, ready bool, tags map[string]string) *resource.Resource {
	host, port, _ := net.SplitHostPort(addr)
	var p uint32
	for _, c := range port {
		p = p*10 + uint32(c-'0')
	}
	r := resource.New(resource.DataplaneType, mesh, name)
	r.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: host,
		Inbound: []*meshv1.Dataplane_Networking_Inbound{{Port: p, Tags: tags, Health: &meshv1.Dataplane_Networking_Inbound_Health{Ready: ready}}}}}
	return r
}

type fixture struct {
	pki    *pki
	srv    *Server
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config, dps ...*resource.Resource) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	cfg.Registerer = f.reg
	var err error
	if f.srv, err = Listen("127.0.0.1:0", cfg); err != nil {
		t.Fatal(err)
	}
	table, _ := BuildTable(dps, 0)
	f.srv.SetTable(table)
	var ctx context.Context
	ctx, f.cancel = context.WithCancel(context.Background())
	go func() { f.done <- f.srv.Serve(ctx) }()
	t.Cleanup(f.stop)
	return f
}

func (f *fixture) stop() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
		f.cancel = nil
	}
}

// call dials the ingress as a workload of (mesh, from) would dial svc in
// another zone: TLS with the service's SNI, verifying the service's SPIFFE
// ID, and returns the first echoed line.
func call(t *testing.T, p *pki, ingress, serverName, mesh, from, svc string) (string, error) {
	t.Helper()
	cert := p.cert(t, mesh, from)
	want := ca.SPIFFEID(mesh, svc)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ingress, &tls.Config{
		ServerName: serverName, Certificates: []tls.Certificate{cert}, RootCAs: p.pool,
		// The server is named by its SPIFFE ID, not a DNS name.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return err
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
				return errors.New("server is not " + want)
			}
			return nil
		}})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestRoutesBySNIEndToEnd(t *testing.T) {
	p := newPKI(t)
	g1 := backend(t, p, "default", "greeter", "g1")
	v2 := backend(t, p, "default", "greeter", "g2")
	other := backend(t, p, "default", "other", "o1")
	f := start(t, Config{},
		dataplane("default", "g1", g1, true, map[string]string{resource.ServiceTag: "greeter", "version": "v1"}),
		dataplane("default", "g2", v2, true, map[string]string{resource.ServiceTag: "greeter", "version": "v2"}),
		dataplane("default", "o1", other, true, map[string]string{resource.ServiceTag: "other"}))
	addr := f.srv.Addr().String()
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		got, err := call(t, p, addr, sni.Service("default", "greeter"), "default", "client", "greeter")
		if err != nil {
			t.Fatal(err)
		}
		// The workload sees the caller's identity: TLS is end to end.
		name, rest, _ := strings.Cut(got, " ")
		if rest != "spiffe://default/client hello" {
			t.Fatalf("backend answered %q", got)
		}
		seen[name] = true
	}
	if !seen["g1"] || !seen["g2"] {
		t.Errorf("round robin reached %v, want g1 and g2", seen)
	}
	// A subset: only version v2.
	name, err := sni.Format("default", "greeter", map[string]string{"version": "v2"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if got, err := call(t, p, addr, name, "default", "client", "greeter"); err != nil || !strings.HasPrefix(got, "g2 ") {
			t.Fatalf("subset v2: %q, %v", got, err)
		}
	}
	if got := testutil.ToFloat64(f.srv.m.connections.WithLabelValues("default", "greeter")); got != 7 {
		t.Errorf("connections_total{default,greeter} = %v, want 7", got)
	}
}

func TestRejectsAndStaysUp(t *testing.T) {
	p := newPKI(t)
	g1 := backend(t, p, "default", "greeter", "g1")
	f := start(t, Config{HelloTimeout: 30 * time.Second},
		dataplane("default", "g1", g1, true, map[string]string{resource.ServiceTag: "greeter"}),
		dataplane("default", "down", "127.0.0.1:1", false, map[string]string{resource.ServiceTag: "down"}))
	addr := f.srv.Addr().String()

	// Plaintext: closed without a byte back.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: greeter.default.mesh\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("plaintext: read %d bytes, %v; want the connection closed", n, err)
	}
	c.Close()

	for _, tc := range []struct{ name, reason string }{
		{"", ReasonNoSNI},
		{"example.com", ReasonBadSNI},
		{sni.Service("foreign", "greeter"), ReasonForeignMesh},
		{sni.Service("default", "nope"), ReasonUnknownService},
		{sni.Service("default", "down"), ReasonNoEndpoint},
	} {
		if _, err := call(t, p, addr, tc.name, "default", "client", "greeter"); err == nil {
			t.Errorf("SNI %q was routed", tc.name)
		}
		if got := testutil.ToFloat64(f.srv.m.rejected.WithLabelValues(tc.reason)); got != 1 {
			t.Errorf("SNI %q: rejected_total{%s} = %v, want 1", tc.name, tc.reason, got)
		}
	}
	if got := testutil.ToFloat64(f.srv.m.rejected.WithLabelValues(ReasonNotTLS)); got != 1 {
		t.Errorf("rejected_total{not_tls} = %v, want 1", got)
	}
	// Still serving.
	if _, err := call(t, p, addr, sni.Service("default", "greeter"), "default", "client", "greeter"); err != nil {
		t.Fatalf("after the rejections: %v", err)
	}
}

func TestConnectionLimitIdleAndDrain(t *testing.T) {
	p := newPKI(t)
	g1 := backend(t, p, "default", "greeter", "g1")
	f := start(t, Config{MaxConnections: 1, IdleTimeout: 500 * time.Millisecond, DrainTimeout: time.Minute},
		dataplane("default", "g1", g1, true, map[string]string{resource.ServiceTag: "greeter"}))
	addr := f.srv.Addr().String()
	open := func() *tls.Conn {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni.Service("default", "greeter"), InsecureSkipVerify: true,
			Certificates: []tls.Certificate{p.cert(t, "default", "client")}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := open()
	waitFor(t, "one active connection", func() bool { return f.srv.Active() == 1 })
	// The limit: a second connection is closed at accept.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c2.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Error("a connection over the limit was served")
	}
	c2.Close()
	waitFor(t, "the limit counted", func() bool { return testutil.ToFloat64(f.srv.m.rejected.WithLabelValues(ReasonLimit)) == 1 })
	// Idle: the first connection is cut after 500ms without traffic.
	_ = first.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := first.Read(make([]byte, 1)); err == nil {
		t.Error("an idle connection was kept")
	}
	first.Close()
	waitFor(t, "no active connection", func() bool { return f.srv.Active() == 0 })

	// Drain: shutting down closes the listener, but an open connection
	// keeps working until it ends.
	busy := open()
	defer busy.Close()
	waitFor(t, "one active connection", func() bool { return f.srv.Active() == 1 })
	f.cancel()
	waitFor(t, "the listener closed", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	_ = busy.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(busy, "still there\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(busy).ReadString('\n'); err != nil || !strings.HasSuffix(line, "still there\n") {
		t.Fatalf("during the drain: %q, %v", line, err)
	}
	busy.Close()
	if err := <-f.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	f.cancel = nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FuzzPeekServerName: the first bytes of every connection come from the
// network. Whatever they are, peeking returns within the byte limit and
// never reports a name without a ClientHello.
func FuzzPeekServerName(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	f.Add([]byte{0x16, 0x03, 0x01, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		go func() {
			_, _ = b.Write(data)
			b.Close()
		}()
		name, read, ok := PeekServerName(a, 4096)
		a.Close()
		if len(read) > 4096 {
			t.Fatalf("read %d bytes, limit 4096", len(read))
		}
		if !ok && name != "" {
			t.Fatalf("name %q without a ClientHello", name)
		}
	})
}
