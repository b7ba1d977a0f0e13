package cptls_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/cptls"
	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
)

func newStore(t *testing.T) *store.Store {
	keys, _ := seal.New(seal.Key{ID: "k", Bytes: bytes.Repeat([]byte{3}, 32)})
	return store.New(etcdtest.Client(t, nil), store.WithKeyring(keys))
}

// handshake runs one TLS connection and returns the server's view of it.
func handshake(t *testing.T, srv, cli *tls.Config, serverName string) (tls.ConnectionState, tls.ConnectionState, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var srvState tls.ConnectionState
	var srvErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			srvErr = err
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv)
		srvErr = tc.Handshake()
		srvState = tc.ConnectionState()
		_, _ = io.Copy(io.Discard, tc)
	}()
	cfg := cli.Clone()
	cfg.ServerName = serverName
	c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	var cliState tls.ConnectionState
	if err == nil {
		cliState = c.ConnectionState()
		c.Close()
	}
	wg.Wait()
	if err == nil {
		err = srvErr
	}
	return srvState, cliState, err
}

func TestServerAndClientFromControlPlaneCA(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	// Replicas racing on first start end with one CA.
	var wg sync.WaitGroup
	roots := make([][]byte, 4)
	for i := range roots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := cptls.RootPEM(ctx, st)
			if err != nil {
				t.Error(err)
			}
			roots[i] = r
		}()
	}
	wg.Wait()
	for _, r := range roots[1:] {
		if !bytes.Equal(r, roots[0]) {
			t.Fatal("replicas created different control-plane CAs")
		}
	}
	srv, err := cptls.ServerConfig(ctx, st, []string{"ca.weft.svc", "10.1.2.3"}, cptls.WithService("ca-service"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := cptls.ClientConfig(ctx, st, cptls.WithService("xds-server"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ca.weft.svc", "localhost", "127.0.0.1"} {
		ss, cs, err := handshake(t, srv, cli, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(ss.VerifiedChains) == 0 {
			t.Fatal("server did not verify the client certificate")
		}
		if n, ok := cptls.ServiceName(ss.VerifiedChains[0][0]); !ok || n != "xds-server" {
			t.Errorf("client service %q", n)
		}
		if n, _ := cptls.ServiceName(cs.PeerCertificates[0]); n != "ca-service" {
			t.Errorf("server service %q", n)
		}
	}
	if _, _, err := handshake(t, srv, cli, "other.example"); err == nil {
		t.Error("hostname not in the certificate accepted")
	}
	// A client trusting only system roots refuses the control-plane cert.
	if _, _, err := handshake(t, srv, &tls.Config{MinVersion: tls.VersionTLS12}, "localhost"); err == nil {
		t.Error("handshake without trusting the control-plane CA succeeded")
	}
	// Without a service, no client certificate is presented.
	plain, _ := cptls.ClientConfig(ctx, st)
	ss, _, err := handshake(t, srv, plain, "localhost")
	if err != nil || len(ss.PeerCertificates) != 0 {
		t.Errorf("anonymous client: %v, %d certs", err, len(ss.PeerCertificates))
	}
}

func TestServingCertificateRenewsBeforeExpiry(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv, err := cptls.ServerConfig(ctx, st, nil, cptls.WithValidity(3*time.Hour), cptls.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	get := func() *x509.Certificate {
		c, err := srv.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	first := get()
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if get().SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("renewed after a third of its life")
	}
	mu.Lock()
	now = now.Add(time.Hour + time.Minute)
	mu.Unlock()
	if second := get(); second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("not renewed after two thirds of its life")
	}
}

func TestFromFilesAndGenerateSelfSigned(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sc, sk, err := cptls.GenerateSelfSigned(cptls.GenerateOptions{Type: cptls.TypeServer, Hostnames: []string{"cp.example", "192.0.2.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cc, ck, err := cptls.GenerateSelfSigned(cptls.GenerateOptions{Type: cptls.TypeClient, CommonName: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(sc)
	cert, _ := x509.ParseCertificate(blk.Bytes)
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "cp.example" || len(cert.IPAddresses) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("server cert SANs %v %v EKU %v", cert.DNSNames, cert.IPAddresses, cert.ExtKeyUsage)
	}
	srv, err := cptls.FromFiles(write("s.crt", sc), write("s.key", sk), write("client-ca.crt", cc))
	if err != nil {
		t.Fatal(err)
	}
	clientCert, _ := tls.X509KeyPair(cc, ck)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(sc)
	ss, _, err := handshake(t, srv, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}, "cp.example")
	if err != nil || len(ss.VerifiedChains) == 0 {
		t.Fatalf("handshake with files: %v (verified client: %d)", err, len(ss.VerifiedChains))
	}
	// Replacing the files is picked up without a restart.
	sc2, sk2, _ := cptls.GenerateSelfSigned(cptls.GenerateOptions{Type: cptls.TypeServer, Hostnames: []string{"cp.example"}})
	later := time.Now().Add(time.Minute)
	write("s.crt", sc2)
	write("s.key", sk2)
	_ = os.Chtimes(filepath.Join(dir, "s.crt"), later, later)
	pool2 := x509.NewCertPool()
	pool2.AppendCertsFromPEM(sc2)
	if _, _, err := handshake(t, srv, &tls.Config{RootCAs: pool2, MinVersion: tls.VersionTLS12}, "cp.example"); err != nil {
		t.Errorf("reloaded certificate not served: %v", err)
	}
	for _, bad := range []cptls.GenerateOptions{{Type: "both"}, {Type: cptls.TypeServer}} {
		if _, _, err := cptls.GenerateSelfSigned(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := cptls.FromFiles(filepath.Join(dir, "missing"), filepath.Join(dir, "s.key"), ""); err == nil {
		t.Error("missing file accepted")
	}
}
