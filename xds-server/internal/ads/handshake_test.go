package ads

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/weftmesh/weft/pkg/cptls"
)

// accepted is one server-side connection of a limited listener, with its
// first read running.
type accepted struct {
	c    net.Conn
	read chan struct{} // closed when the first Read returned
}

func acceptOne(t *testing.T, l net.Listener, deadline time.Time) *accepted {
	t.Helper()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !deadline.IsZero() {
		c.SetDeadline(deadline) // what gRPC does before the set-up
	}
	a := &accepted{c: c, read: make(chan struct{})}
	go func() {
		buf := make([]byte, 1)
		c.Read(buf)
		close(a.read)
	}()
	return a
}

func dialSend(t *testing.T, addr string, send bool) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if send {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// arrive is a client connection that has sent its first bytes, and the
// server side of it.
func arrive(t *testing.T, l net.Listener, deadline time.Time) (*accepted, net.Conn) {
	t.Helper()
	c := dialSend(t, l.Addr().String(), true)
	return acceptOne(t, l, deadline), c
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not within 10s", what)
	}
}

// stillBlocked asserts ch stays open for a while (a negative can only be
// observed over a window).
func stillBlocked(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: went ahead while every slot was held", what)
	case <-time.After(200 * time.Millisecond):
	}
}

func limitedListener(t *testing.T, n int, hold time.Duration) net.Listener {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitHandshakes(raw, n, hold, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLimitHandshakesQueuesInArrivalOrder(t *testing.T) {
	l := limitedListener(t, 1, time.Hour)
	far := time.Now().Add(time.Hour)

	// A connection that sends nothing holds no slot.
	dialSend(t, l.Addr().String(), false)
	idle := acceptOne(t, l, far)

	first, _ := arrive(t, l, far)
	waitClosed(t, first.read, "first connection with the slot free")

	second, _ := arrive(t, l, far)
	stillBlocked(t, second.read, "second connection")

	// gRPC clears the deadline when the set-up is over: the slot moves on.
	first.c.SetDeadline(time.Time{})
	waitClosed(t, second.read, "second connection after the first's set-up ended")

	// Closing during the set-up gives the slot back too.
	third, _ := arrive(t, l, far)
	stillBlocked(t, third.read, "third connection")
	second.c.Close()
	waitClosed(t, third.read, "third connection after the second closed")

	select {
	case <-idle.read:
		t.Fatal("the idle connection read something")
	default:
	}
}

func TestLimitHandshakesBoundsAStalledHolder(t *testing.T) {
	l := limitedListener(t, 1, 300*time.Millisecond)
	far := time.Now().Add(time.Hour)
	stalled, _ := arrive(t, l, far)
	waitClosed(t, stalled.read, "holder")
	next, _ := arrive(t, l, far)
	// The holder never finishes; after maxHold the next one goes ahead.
	waitClosed(t, next.read, "connection behind a stalled holder")
}

// TestLimitHandshakesWaitDoesNotCount: time spent waiting for a slot
// moves the set-up deadline later.
func TestLimitHandshakesWaitDoesNotCount(t *testing.T) {
	l := limitedListener(t, 1, time.Hour)
	holder, _ := arrive(t, l, time.Now().Add(time.Hour))
	waitClosed(t, holder.read, "holder")
	late, client := arrive(t, l, time.Now().Add(300*time.Millisecond))
	// Wait past the late connection's deadline, then free the slot.
	stillBlocked(t, late.read, "waiting connection")
	stillBlocked(t, late.read, "waiting connection")
	holder.c.SetDeadline(time.Time{})
	waitClosed(t, late.read, "waiting connection after the slot was freed")
	if _, err := client.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := late.c.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read after waiting 400ms for a slot with a 300ms set-up deadline: %v (the wait counted)", err)
	}
}

// TestLimitHandshakesWithGRPC: gRPC's TLS set-up gives every slot back
// (with a slot held for an hour a leak would hang the later clients).
func TestLimitHandshakesWithGRPC(t *testing.T) {
	l := limitedListener(t, 2, time.Hour)
	certPEM, keyPEM, err := cptls.GenerateSelfSigned(cptls.GenerateOptions{Type: cptls.TypeServer, Hostnames: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(l)
	t.Cleanup(srv.Stop)

	// Every client keeps its connection open until all have been
	// answered: a slot is given back by the set-up ending, not by a close.
	const clients = 24
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("client through a 2-slot handshake limit: %v", err)
		}
	}
}
