package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/seal"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
)

type fixture struct {
	ctx    context.Context
	st     *store.Store
	keys   *token.Keys
	client apiv1.ResourceServiceClient
}

// start serves the api-server's gRPC services as the app does (shared
// server options, token authentication with Authorize) on 127.0.0.1:0,
// on a real etcd.
func start(t *testing.T, cfg Config) *fixture {
	t.Helper()
	ring, err := seal.New(seal.Key{ID: "k1", Bytes: make([]byte, seal.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(etcdtest.Client(t, nil), store.WithKeyring(ring))
	keys := token.New(st)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	u, s := grpcx.Auth(grpcx.TokenAuth(keys, Authorize))
	srv := grpc.NewServer(grpcx.ServerOptions(log, nil, "api-server", []grpc.UnaryServerInterceptor{u}, []grpc.StreamServerInterceptor{s})...)
	New(st, keys, cfg, log).Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(func() {
		cancel()
		conn.Close()
		srv.Stop()
		wg.Wait()
	})
	return &fixture{ctx: ctx, st: st, keys: keys, client: apiv1.NewResourceServiceClient(conn)}
}

func (f *fixture) as(t *testing.T, c token.Claims) context.Context {
	t.Helper()
	tok, _, err := f.keys.Issue(f.ctx, c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(f.ctx, "authorization", "Bearer "+tok)
}

func admin() token.Claims {
	c := token.Claims{Kind: token.KindUser, Groups: []string{token.AdminGroup}}
	c.Subject = "root"
	return c
}

func user() token.Claims {
	c := token.Claims{Kind: token.KindUser}
	c.Subject = "bob"
	return c
}

// dataplaneToken is bound to service "web", the service dp() registers.
func dataplaneToken(mesh, name string) token.Claims {
	c := token.Claims{Kind: token.KindDataplane, Mesh: mesh, Services: []string{"web"}}
	c.Subject = name
	return c
}

func put(ctx context.Context, f *fixture, t *testing.T, collection, mesh, name, doc string) (*apiv1.Resource, error) {
	t.Helper()
	r, err := resource.Unmarshal([]byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := resource.ToAPI(r)
	if err != nil {
		t.Fatal(err)
	}
	return f.client.Put(ctx, &apiv1.PutRequest{Collection: collection, Mesh: mesh, Name: name, Resource: a})
}

func fields(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

func ownedElsewhere(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == grpcx.ReasonOwnedElsewhere {
			return status.Code(err) == codes.FailedPrecondition
		}
	}
	return false
}

const dpDoc = `{"type":"Dataplane","mesh":"m","name":"%s","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"web"}}]}}`

func dp(name string) string { return strings.Replace(dpDoc, "%s", name, 1) }

// TestResourceCRUD: writes and reads through the real server, every bad
// request with its code and field path, and nothing written on refusal.
func TestResourceCRUD(t *testing.T) {
	f := start(t, Config{Mode: ModeStandalone})
	ctx := f.as(t, admin())

	if _, err := put(f.ctx, f, t, "meshes", "", "m", `{"type":"Mesh","name":"m"}`); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	if _, err := put(ctx, f, t, "meshes", "", "m", `{"type":"Mesh","name":"m"}`); err != nil {
		t.Fatal(err)
	}
	out, err := put(ctx, f, t, "dataplanes", "m", "d1", dp("d1"))
	if err != nil {
		t.Fatal(err)
	}
	if out.GetMeta().GetVersion() == 0 || out.GetMeta().GetOrigin() != "" {
		t.Fatalf("written meta %v", out.GetMeta())
	}
	got, err := f.client.Get(ctx, &apiv1.GetRequest{Collection: "dataplanes", Mesh: "m", Name: "d1"})
	if err != nil || got.GetMeta().GetName() != "d1" {
		t.Fatalf("get: %v", err)
	}

	for name, c := range map[string]struct {
		collection, mesh, name, doc string
		code                        codes.Code
		fields                      []string
	}{
		"invalid spec":        {"dataplanes", "m", "d2", `{"type":"Dataplane","mesh":"m","name":"d2","networking":{"inbound":[{"port":80,"tags":{"weft.io/service":"web"}}]}}`, codes.InvalidArgument, []string{"networking.address"}},
		"name mismatch":       {"dataplanes", "m", "other", dp("d2"), codes.InvalidArgument, []string{"name"}},
		"mesh mismatch":       {"dataplanes", "n", "d2", dp("d2"), codes.InvalidArgument, []string{"mesh"}},
		"mesh missing in url": {"dataplanes", "", "d2", dp("d2"), codes.InvalidArgument, []string{"mesh"}},
		"mesh does not exist": {"dataplanes", "nope", "d2", strings.Replace(dp("d2"), `"mesh":"m"`, `"mesh":"nope"`, 1), codes.InvalidArgument, []string{"mesh"}},
		"unknown collection":  {"widgets", "", "w", `{"type":"Mesh","name":"w"}`, codes.NotFound, nil},
		"global with mesh":    {"meshes", "m", "x", `{"type":"Mesh","name":"x"}`, codes.NotFound, nil},
		"system type":         {"dataplane-insights", "m", "d1", `{"type":"DataplaneInsight","mesh":"m","name":"d1"}`, codes.FailedPrecondition, nil},
	} {
		_, err := put(ctx, f, t, c.collection, c.mesh, c.name, c.doc)
		if status.Code(err) != c.code {
			t.Errorf("%s: %v, want %s", name, err, c.code)
			continue
		}
		if c.fields != nil && strings.Join(fields(err), ",") != strings.Join(c.fields, ",") {
			t.Errorf("%s: field violations %v, want %v", name, fields(err), c.fields)
		}
	}
	// Nothing was written by the refused requests.
	items, _, err := f.st.ListAll(f.ctx, resource.DataplaneType, "")
	if err != nil || len(items) != 1 {
		t.Fatalf("dataplanes after refused writes: %d, %v", len(items), err)
	}

	if _, err := f.client.Get(ctx, &apiv1.GetRequest{Collection: "dataplanes", Mesh: "m", Name: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := f.client.Delete(ctx, &apiv1.DeleteRequest{Collection: "dataplanes", Mesh: "m", Name: "d1", Version: 999}); status.Code(err) != codes.Aborted {
		t.Fatalf("delete with a stale version: %v", err)
	}
	if _, err := f.client.Delete(ctx, &apiv1.DeleteRequest{Collection: "dataplanes", Mesh: "m", Name: "d1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Delete(ctx, &apiv1.DeleteRequest{Collection: "dataplanes", Mesh: "m", Name: "d1"}); status.Code(err) != codes.NotFound {
		t.Fatalf("delete missing: %v", err)
	}
}

// TestAuthorization: roles decide what a verified caller may do; a
// dataplane token reaches only its own Dataplane; control-plane secrets are
// neither served nor written.
func TestAuthorization(t *testing.T) {
	f := start(t, Config{Mode: ModeStandalone})
	root := f.as(t, admin())
	if _, err := put(root, f, t, "meshes", "", "m", `{"type":"Mesh","name":"m"}`); err != nil {
		t.Fatal(err)
	}
	bob := f.as(t, user())
	if _, err := put(bob, f, t, "dataplanes", "m", "d1", dp("d1")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("non-admin write: %v", err)
	}
	if _, err := f.client.List(bob, &apiv1.ListRequest{Collection: "dataplanes", Mesh: "m"}); err != nil {
		t.Fatalf("non-admin read: %v", err)
	}
	if _, err := f.client.List(bob, &apiv1.ListRequest{Collection: "secrets", Mesh: "m"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("non-admin reading secrets: %v", err)
	}

	d1 := f.as(t, dataplaneToken("m", "d1"))
	if _, err := put(d1, f, t, "dataplanes", "m", "d1", dp("d1")); err != nil {
		t.Fatalf("dataplane registering itself: %v", err)
	}
	if _, err := f.client.Get(d1, &apiv1.GetRequest{Collection: "dataplanes", Mesh: "m", Name: "d1"}); err != nil {
		t.Fatalf("dataplane reading itself: %v", err)
	}
	// The name in the token is what counts, not the one in the request.
	if _, err := put(d1, f, t, "dataplanes", "m", "d2", dp("d2")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("dataplane writing another: %v", err)
	}
	if _, err := f.client.Get(d1, &apiv1.GetRequest{Collection: "dataplanes", Mesh: "m", Name: "d2"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("dataplane reading another: %v", err)
	}
	if _, err := f.client.List(d1, &apiv1.ListRequest{Collection: "dataplanes", Mesh: "m"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("dataplane listing: %v", err)
	}
	if _, err := put(d1, f, t, "meshes", "", "x", `{"type":"Mesh","name":"x"}`); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("dataplane writing a mesh: %v", err)
	}

	// cp-* GlobalSecrets: the token signing key exists (tokens were
	// issued), yet even an admin neither reads nor writes it.
	if _, err := f.client.Get(root, &apiv1.GetRequest{Collection: "global-secrets", Name: token.SigningKeySecret}); status.Code(err) != codes.NotFound {
		t.Fatalf("reading the signing key: %v", err)
	}
	if _, err := put(root, f, t, "global-secrets", "", token.SigningKeySecret, `{"type":"GlobalSecret","name":"`+token.SigningKeySecret+`","data":"eA=="}`); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("writing the signing key: %v", err)
	}
}

// TestOwnership: a zone refuses global-owned types, global refuses
// zone-owned ones (with the OWNED_ELSEWHERE reason REST maps to 405), and
// each stamps its origin on what it accepts.
func TestOwnership(t *testing.T) {
	zone := start(t, Config{Mode: ModeZone, Zone: "z1"})
	zctx := zone.as(t, admin())
	if _, err := put(zctx, zone, t, "meshes", "", "m", `{"type":"Mesh","name":"m"}`); !ownedElsewhere(err) {
		t.Fatalf("zone writing a mesh: %v", err)
	}
	// Meshes arrive in zones by sync; put one in the store directly.
	if _, _, err := zone.st.Upsert(zone.ctx, resource.New(resource.MeshType, "", "m")); err != nil {
		t.Fatal(err)
	}
	out, err := put(zctx, zone, t, "dataplanes", "m", "d1", dp("d1"))
	if err != nil || out.GetMeta().GetOrigin() != "z1" {
		t.Fatalf("zone dataplane: origin %q, %v", out.GetMeta().GetOrigin(), err)
	}

	global := start(t, Config{Mode: ModeGlobal})
	gctx := global.as(t, admin())
	out, err = put(gctx, global, t, "meshes", "", "m", `{"type":"Mesh","name":"m"}`)
	if err != nil || out.GetMeta().GetOrigin() != "global" {
		t.Fatalf("global mesh: origin %q, %v", out.GetMeta().GetOrigin(), err)
	}
	if _, err := put(gctx, global, t, "dataplanes", "m", "d1", dp("d1")); !ownedElsewhere(err) {
		t.Fatalf("global writing a dataplane: %v", err)
	}
}
