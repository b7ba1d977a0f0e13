package ads

import (
	"context"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/pkg/token"
)

func acceptToken(want string) Verifier {
	return func(_ context.Context, tok, mesh, name string) (*token.Claims, error) {
		if tok != want {
			return nil, &token.Error{Reason: "signature does not verify"}
		}
		return &token.Claims{Kind: token.KindDataplane, Mesh: mesh}, nil
	}
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	md := func(kv map[string]any) *structpb.Struct { s, _ := structpb.NewStruct(kv); return s }
	for name, tc := range map[string]struct {
		node *corev3.Node
		kind string
		err  string
	}{
		"token in metadata":     {node: &corev3.Node{Id: "m.dp-1", Metadata: md(map[string]any{"dataplane.token": "ok", "kind": "grpc"})}, kind: "grpc"},
		"nested metadata":       {node: &corev3.Node{Id: "m.dp-1", Metadata: md(map[string]any{"dataplane": map[string]any{"token": "ok"}})}, kind: "envoy"},
		"grpc-go without kind":  {node: &corev3.Node{Id: "m.dp-1", UserAgentName: "gRPC Go", Metadata: md(map[string]any{"dataplane.token": "ok"})}, kind: "grpc"},
		"bad token":             {node: &corev3.Node{Id: "m.dp-1", Metadata: md(map[string]any{"dataplane.token": "bad"})}, err: "signature does not verify"},
		"no token":              {node: &corev3.Node{Id: "m.dp-1"}, err: "no token"},
		"no node":               {err: "no node id"},
		"node id without mesh":  {node: &corev3.Node{Id: "dp-1"}, err: "not <mesh>.<dataplane name>"},
		"node id too long":      {node: &corev3.Node{Id: "m." + strings.Repeat("x", MaxNodeIDLength)}, err: "longer than"},
		"unknown kind is envoy": {node: &corev3.Node{Id: "m.dp.with.dots", Metadata: md(map[string]any{"dataplane.token": "ok", "kind": "nginx"})}, kind: "envoy"},
	} {
		t.Run(name, func(t *testing.T) {
			id, err := Authenticate(ctx, tc.node, acceptToken("ok"))
			if tc.err != "" {
				if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want PermissionDenied %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Kind != tc.kind || id.NodeID != tc.node.GetId() || id.Mesh+"."+id.Name != id.NodeID {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

// FuzzAuthenticate: arbitrary node ids and metadata never panic, and an
// accepted identity always splits back into its node id.
func FuzzAuthenticate(f *testing.F) {
	f.Add("default.backend-1", "tok", "grpc", "gRPC Go")
	f.Add(".", "", "", "")
	f.Add("a..b", "tok", "envoy", "")
	f.Fuzz(func(t *testing.T, id, tok, kind, agent string) {
		meta, err := structpb.NewStruct(map[string]any{"dataplane.token": tok, "kind": kind})
		if err != nil {
			return // invalid UTF-8
		}
		got, err := Authenticate(context.Background(), &corev3.Node{Id: id, Metadata: meta, UserAgentName: agent}, acceptToken("tok"))
		if err != nil {
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("non-PermissionDenied error %v", err)
			}
			return
		}
		if got.Mesh == "" || got.Name == "" || got.Mesh+"."+got.Name != id || strings.Contains(got.Mesh, ".") {
			t.Fatalf("identity %+v from %q", got, id)
		}
	})
}
