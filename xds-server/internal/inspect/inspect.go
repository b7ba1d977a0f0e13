// Package inspect serves weft.inspect.v1.InspectService on the xds-server's
// gRPC listener: a proxy's config dump (what this replica last sent it, or
// what the generator makes for it now when its stream is elsewhere) and
// the impact preview of a policy (pkg/policy Explain plus a per-proxy diff
// of generated resources, computed by the generator the reconciler runs).
//
// Callers authenticate with a bearer token verified by pkg/token, as the
// api-server does: user tokens (admin or read-only) may dump any proxy's
// configuration, admin tokens preview policies (a dry-run write); a
// dataplane token may only dump its own dataplane's.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/xds-server/internal/generator"
	"github.com/weftmesh/weft/xds-server/internal/meshview"
)

// Limits of one answer.
const (
	// MaxDumpBytes bounds the protojson of a config dump's resources:
	// beyond it resources are left out and the answer says truncated.
	MaxDumpBytes = 4 << 20
	// MaxDiffedProxies is the default and largest max_proxies of a preview.
	MaxDiffedProxies = 100
	// MaxComparedProxies bounds the proxies a preview generates config for
	// (twice each).
	MaxComparedProxies = 1000
	// Redacted replaces secret material in a dump.
	Redacted = "[redacted]"
)

// Sources of a config dump.
const (
	SourceStream   = "stream"
	SourceComputed = "computed"
)

// Reconciler is what the service needs from the reconciler.
type Reconciler interface {
	Connected(nodeID string) (kind string, ok bool)
	Snapshot(mesh string) *generator.Snapshot
}

// Insights is what the service needs from the insight recorder.
type Insights interface {
	Subscriptions(mesh, name string) []*meshv1.DiscoverySubscription
}

// MaxConcurrentPreviews bounds the previews one replica computes at once
// (each generates up to 2×MaxComparedProxies configurations); beyond it
// PreviewPolicy answers ResourceExhausted.
const MaxConcurrentPreviews = 2

var previews = make(chan struct{}, MaxConcurrentPreviews)

// Verifier checks a bearer token (token.Keys.Verify).
type Verifier func(ctx context.Context, tok string) (*token.Claims, error)

// Service implements inspectv1.InspectServiceServer.
type Service struct {
	inspectv1.UnimplementedInspectServiceServer
	Instance string
	Verify   Verifier
	Rec      Reconciler
	Insights Insights
	Cache    cachev3.SnapshotCache
	// Views returns a mesh as the model holds it (nil: no such mesh).
	Views func(mesh string) *meshview.Mesh
	// Store reads DataplaneInsights (which replicas hold a proxy's stream,
	// its kind); nil in unit tests.
	Store *store.Store
	// Ready reports whether the model has loaded the store (nil: always):
	// before, answers would be NotFound for everything.
	Ready func() bool
}

func (s *Service) ready() error {
	if s.Ready != nil && !s.Ready() {
		return status.Error(codes.Unavailable, "xds-server has not loaded the store yet; retry")
	}
	return nil
}

// authorize verifies the caller's token: any user token; a dataplane token
// only for its own dataplane when dataplane names one (ConfigDump).
func (s *Service) authorize(ctx context.Context, mesh, dataplane string) error {
	tok := grpcx.BearerToken(ctx)
	if tok == "" {
		return status.Error(codes.Unauthenticated, "missing bearer token: send 'authorization: Bearer <token>'")
	}
	c, err := s.Verify(ctx, tok)
	if err != nil {
		if token.IsInvalid(err) {
			return status.Error(codes.Unauthenticated, err.Error())
		}
		return status.Error(codes.Unavailable, "cannot verify token right now")
	}
	switch c.Kind {
	case token.KindUser:
		if dataplane == "" && !c.IsAdmin() {
			// A preview is a dry-run write: the api-server asks for an
			// admin token too.
			return status.Error(codes.PermissionDenied, "previewing a policy requires an admin token")
		}
		return nil
	case token.KindDataplane:
		if dataplane == "" {
			return status.Error(codes.PermissionDenied, "a dataplane token cannot preview policies")
		}
		if c.Mesh != mesh || c.Subject != dataplane {
			return status.Errorf(codes.PermissionDenied, "a dataplane token for %s/%s cannot inspect dataplane %s/%s", c.Mesh, c.Subject, mesh, dataplane)
		}
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "a %s token cannot inspect proxies", c.Kind)
}

// ConfigDump implements the RPC.
func (s *Service) ConfigDump(ctx context.Context, req *inspectv1.ConfigDumpRequest) (*inspectv1.ConfigDumpResponse, error) {
	mesh, name := req.GetMesh(), req.GetName()
	if err := checkNames(mesh, name); err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, mesh, name); err != nil {
		return nil, err
	}
	if err := s.ready(); err != nil {
		return nil, err
	}
	out := &inspectv1.ConfigDumpResponse{Mesh: mesh, Name: name, InstanceId: s.Instance}
	stored := s.storedInsight(ctx, mesh, name)
	for _, sub := range stored.GetSubscriptions() {
		if sub.GetDisconnectTime() == nil && !contains(out.ConnectedInstances, sub.GetControlPlaneInstanceId()) {
			out.ConnectedInstances = append(out.ConnectedInstances, sub.GetControlPlaneInstanceId())
		}
	}
	nodeID := generator.NodeID(mesh, name)
	if kind, ok := s.Rec.Connected(nodeID); ok {
		if snap, err := s.Cache.GetSnapshot(nodeID); err == nil {
			out.Source, out.ProxyKind = SourceStream, kind
			if !contains(out.ConnectedInstances, s.Instance) {
				out.ConnectedInstances = append(out.ConnectedInstances, s.Instance)
			}
			sort.Strings(out.ConnectedInstances)
			subs := s.Insights.Subscriptions(mesh, name)
			budget := MaxDumpBytes
			for _, typ := range generator.TypeURLs {
				res := snap.GetResources(typ)
				list := make([]types.Resource, 0, len(res))
				for _, r := range res {
					// The cache holds wire forms (generator.Wire).
					list = append(list, generator.Expand(r))
				}
				sort.Slice(list, func(i, j int) bool { return cachev3.GetResourceName(list[i]) < cachev3.GetResourceName(list[j]) })
				td := &inspectv1.TypeDump{TypeUrl: typ, Version: snap.GetVersion(typ)}
				ackState(td, subs)
				if out.Truncated = dumpResources(td, list, &budget) || out.Truncated; len(list) > 0 || td.Version != "" {
					out.Types = append(out.Types, td)
				}
			}
			return out, nil
		}
	}
	// Not connected here: compute what the generator makes for it now.
	sort.Strings(out.ConnectedInstances)
	snap := s.Rec.Snapshot(mesh)
	if snap.MeshSpec == nil {
		return nil, status.Errorf(codes.NotFound, "mesh %q not found", mesh)
	}
	dp := snap.Dataplanes[name]
	if dp == nil {
		return nil, status.Errorf(codes.NotFound, "dataplane %q not found in mesh %q", name, mesh)
	}
	out.Source, out.ProxyKind = SourceComputed, kindOf(stored)
	res, err := generator.Generate(snap, &generator.Proxy{Mesh: mesh, Name: name, Kind: out.ProxyKind, Dataplane: dp})
	if err != nil {
		out.Error = err.Error()
		return out, nil
	}
	versions := snap.Versions(res)
	budget := MaxDumpBytes
	for _, typ := range generator.TypeURLs {
		if len(res[typ]) == 0 {
			continue
		}
		td := &inspectv1.TypeDump{TypeUrl: typ, Version: versions[typ]}
		out.Truncated = dumpResources(td, res[typ], &budget) || out.Truncated
		out.Types = append(out.Types, td)
	}
	return out, nil
}

func checkNames(mesh, name string) error {
	var causes []resource.Cause
	if mesh == "" {
		causes = append(causes, resource.Cause{Field: "mesh", Message: "required"})
	} else if len(mesh) > 253 {
		causes = append(causes, resource.Cause{Field: "mesh", Message: "longer than 253 characters"})
	}
	if name == "" {
		causes = append(causes, resource.Cause{Field: "name", Message: "required"})
	} else if len(name) > 253 {
		causes = append(causes, resource.Cause{Field: "name", Message: "longer than 253 characters"})
	}
	if len(causes) > 0 {
		return grpcx.InvalidArgument("bad dataplane name", causes...)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// storedInsight reads the dataplane's insight (nil when none or no store).
func (s *Service) storedInsight(ctx context.Context, mesh, name string) *meshv1.DataplaneInsight {
	if s.Store == nil {
		return nil
	}
	r, err := s.Store.Get(ctx, resource.DataplaneInsightType, mesh, name)
	if err != nil {
		return nil
	}
	in, _ := r.Spec.(*meshv1.DataplaneInsight)
	return in
}

// kindOf is the proxy kind its latest stream reported, else envoy.
func kindOf(in *meshv1.DataplaneInsight) string {
	kind := ""
	var latest int64
	for _, sub := range in.GetSubscriptions() {
		if t := sub.GetConnectTime().AsTime().UnixNano(); sub.GetProxyKind() != "" && (kind == "" || t > latest) {
			kind, latest = sub.GetProxyKind(), t
		}
	}
	switch kind {
	case generator.KindEnvoy, generator.KindGRPC, generator.KindIngress:
		return kind
	}
	return generator.KindEnvoy
}

// ackState fills a type's ACK/NACK state from the proxy's streams on this
// replica (the newest stream that has the type).
func ackState(td *inspectv1.TypeDump, subs []*meshv1.DiscoverySubscription) {
	var ts *meshv1.SyncTypeStatus
	for _, sub := range subs {
		if t := sub.GetTypes()[td.TypeUrl]; t != nil {
			ts = t
		}
	}
	if ts == nil {
		td.State = "PENDING"
		return
	}
	td.AckedVersion, td.Acks, td.Nacks, td.LastError = ts.GetLastVersion(), clamp32(ts.GetAcks()), clamp32(ts.GetNacks()), ts.GetLastError()
	switch {
	case ts.GetLastError() != "":
		td.State = "NACK"
	case ts.GetLastVersion() == td.Version && td.Version != "":
		td.State = "ACK"
	default:
		td.State = "PENDING"
	}
}

// dumpResources adds list (sorted) to td as redacted protojson while the
// budget lasts; it reports whether any was left out.
func dumpResources(td *inspectv1.TypeDump, list []types.Resource, budget *int) bool {
	td.Total = uint32(len(list))
	truncated := false
	for _, r := range list {
		st, n, err := toStruct(r)
		if err != nil {
			st = &structpb.Struct{Fields: map[string]*structpb.Value{
				"name":  structpb.NewStringValue(cachev3.GetResourceName(r)),
				"error": structpb.NewStringValue("cannot render: " + err.Error()),
			}}
		}
		if n > *budget {
			truncated = true
			*budget = 0
			continue
		}
		*budget -= n
		td.Resources = append(td.Resources, st)
	}
	return truncated
}

// toStruct renders a resource as protojson (with "@type") in a Struct,
// secret material redacted; n is the JSON's size.
func toStruct(r types.Resource) (*structpb.Struct, int, error) {
	r = Redact(r)
	b, err := protojson.Marshal(r)
	if err != nil {
		return nil, 0, err
	}
	// Wrap as an Any's JSON so the dump names each resource's type.
	full := fmt.Sprintf(`{"@type":"type.googleapis.com/%s",%s`, r.ProtoReflect().Descriptor().FullName(), strings.TrimPrefix(string(b), "{"))
	if string(b) == "{}" {
		full = fmt.Sprintf(`{"@type":"type.googleapis.com/%s"}`, r.ProtoReflect().Descriptor().FullName())
	}
	if strings.Contains(full, "PRIVATE KEY") {
		// Never expected after Redact: refuse to show it at all.
		return nil, 0, errors.New("resource holds private key material")
	}
	st := &structpb.Struct{}
	if err := protojson.Unmarshal([]byte(full), st); err != nil {
		return nil, 0, err
	}
	return st, len(full), nil
}

// Redact returns r with private key material replaced by Redacted (a copy
// when anything is replaced).
func Redact(r types.Resource) types.Resource {
	sec, ok := r.(*tlsv3.Secret)
	if !ok {
		return r
	}
	sec = proto.Clone(sec).(*tlsv3.Secret)
	redacted := &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: Redacted}}
	switch t := sec.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		if t.TlsCertificate.GetPrivateKey() != nil {
			t.TlsCertificate.PrivateKey = redacted
		}
		if t.TlsCertificate.GetPassword() != nil {
			t.TlsCertificate.Password = redacted
		}
		t.TlsCertificate.PrivateKeyProvider = nil
	case *tlsv3.Secret_GenericSecret:
		t.GenericSecret.Secret = redacted
		for k := range t.GenericSecret.GetSecrets() {
			t.GenericSecret.Secrets[k] = redacted
		}
	case *tlsv3.Secret_SessionTicketKeys:
		sec.Type = &tlsv3.Secret_SessionTicketKeys{SessionTicketKeys: &tlsv3.TlsSessionTicketKeys{Keys: []*corev3.DataSource{redacted}}}
	}
	return sec
}

// clamp32 keeps counters JSON numbers (protojson writes 64-bit integers as
// strings).
func clamp32(n uint64) uint32 {
	if n > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(n)
}
