package greeter

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// A real gRPC server and client without xDS (plaintext): the reply names
// the instance and zone, the headers carry them, the caller is reported as
// plaintext, and a hostile name is capped.
func TestSayHelloOverGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	(&Server{Zone: "zone-2", Instance: "greeter-1"}).Register(srv)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Call(ctx, conn, "client")
	if err != nil {
		t.Fatal(err)
	}
	if r.Zone != "zone-2" || r.Instance != "greeter-1" || r.Message != "hello client, from greeter-1 in zone-2; you are plaintext" {
		t.Fatalf("reply: %+v", r)
	}
	r, err = Call(ctx, conn, strings.Repeat("x", 10*MaxName))
	if err != nil || len(r.Message) > MaxName+100 {
		t.Fatalf("long name: %v, %d bytes", err, len(r.Message))
	}
}

func TestTally(t *testing.T) {
	var tl Tally
	tl.Add(Reply{Zone: "zone-2", Message: "hi"}, nil)
	tl.Add(Reply{Zone: "zone-2"}, nil)
	tl.Add(Reply{Zone: "zone-1", Message: "hello"}, nil)
	tl.Add(Reply{}, status.Error(codes.Unavailable, "no healthy upstream"))
	got := tl.String()
	want := `served by zone-1: 1, zone-2: 2; failed: 1 (Unavailable 1; last: no healthy upstream); last reply: "hello"`
	if got != want || tl.Served("zone-2") != 2 {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if Outcome(nil) != "OK" || Outcome(status.Error(codes.PermissionDenied, "x")) != "PermissionDenied" || Outcome(errors.New("x")) != "Unknown" {
		t.Fatal("Outcome")
	}
}
