package app_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/api-server/app"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
)

// TestWatchesPerIdentityCapped: one read-only token cannot hold more than
// --max-watches-per-identity watches (each re-lists the collection);
// beyond it Watch answers ResourceExhausted, other identities are not
// affected, and a closed watch frees its slot.
func TestWatchesPerIdentityCapped(t *testing.T) {
	c := startCfg(t, "standalone", "", func(cfg *app.Config) { cfg.MaxWatchesPerIdentity = 3 })
	viewer := c.must("POST", "/tokens/user", `{"name":"viewer","validFor":"1h"}`, 200).body["token"].(string)
	conn, err := grpc.NewClient(c.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cli := apiv1.NewResourceServiceClient(conn)
	watch := func(ctx context.Context, tok string) error {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		w, err := cli.Watch(ctx, &apiv1.WatchRequest{Collection: "meshes"})
		if err != nil {
			return err
		}
		ev, err := w.Recv()
		if err == nil && ev.Kind != apiv1.WatchEvent_SYNC {
			t.Fatalf("first event %v", ev)
		}
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cancels []context.CancelFunc
	for i := range 3 {
		wctx, wcancel := context.WithCancel(ctx)
		cancels = append(cancels, wcancel)
		if err := watch(wctx, viewer); err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	err = watch(ctx, viewer)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("4th watch: %v, want ResourceExhausted", err)
	}
	// Another identity still gets its own.
	if err := watch(ctx, c.admin); err != nil {
		t.Fatalf("admin's watch: %v", err)
	}
	// Closing one frees a slot (the server sees the cancel asynchronously).
	cancels[0]()
	deadline := time.Now().Add(20 * time.Second)
	for {
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		err := watch(wctx, viewer)
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after closing a watch: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
