// Package server implements the api-server's gRPC services: resource CRUD
// and watch, tokens, and the control-plane index. REST reaches the same
// code through grpc-gateway.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	"github.com/weftmesh/weft/pkg/token"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Modes of a control plane.
const (
	ModeStandalone = resource.ModeStandalone
	ModeGlobal     = resource.ModeGlobal
	ModeZone       = resource.ModeZone
)

// RequestURLHeader carries the REST request URL from the gateway, so list
// responses can link their next page.
const RequestURLHeader = "x-weft-request-url"

// CreatedHeader marks a Put that created the resource (REST answers 201).
const CreatedHeader = "weft-created"

// WarningHeader carries warnings about an accepted write (REST: a Warning
// header each, 299 - "text").
const WarningHeader = "weft-warning"

// Config is what the services need.
type Config struct {
	Mode       string
	Zone       string
	InstanceID string
	Version    string
	// MeshValidator checks a Mesh beyond its shape (e.g. a provided CA)
	// before it is stored; nil skips it.
	MeshValidator func(ctx context.Context, mesh *resource.Resource) error
	// MaxWatchesPerIdentity caps concurrent Watch streams of one
	// authenticated identity (token kind, mesh and subject; the peer
	// address without authentication); beyond it Watch answers
	// ResourceExhausted. 0: DefaultMaxWatchesPerIdentity.
	MaxWatchesPerIdentity int
}

// DefaultMaxWatchesPerIdentity is the default of --max-watches-per-identity.
const DefaultMaxWatchesPerIdentity = 64

// Server implements ResourceService, TokenService and ControlPlaneService.
type Server struct {
	apiv1.UnimplementedResourceServiceServer
	apiv1.UnimplementedTokenServiceServer
	apiv1.UnimplementedControlPlaneServiceServer
	st   *store.Store
	keys *token.Keys
	cfg  Config
	log  *slog.Logger

	watchMu      sync.Mutex
	watches      map[string]int
	watchRefused sync.Once
}

// New returns the server.
func New(st *store.Store, keys *token.Keys, cfg Config, log *slog.Logger) *Server {
	if cfg.MaxWatchesPerIdentity <= 0 {
		cfg.MaxWatchesPerIdentity = DefaultMaxWatchesPerIdentity
	}
	return &Server{st: st, keys: keys, cfg: cfg, log: log, watches: map[string]int{}}
}

// watchIdentity is who a watch counts against.
func watchIdentity(ctx context.Context) string {
	if c, ok := grpcx.ClaimsFrom(ctx); ok {
		return c.Kind + "/" + c.Mesh + "/" + c.Subject
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return "peer/" + p.Addr.String()
	}
	return "anonymous"
}

// acquireWatch takes one of the identity's watch slots; release returns it.
func (s *Server) acquireWatch(ctx context.Context) (release func(), err error) {
	id := watchIdentity(ctx)
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.watches[id] >= s.cfg.MaxWatchesPerIdentity {
		s.watchRefused.Do(func() {
			s.log.WarnContext(ctx, "refusing watches beyond --max-watches-per-identity (logged once); a client is opening watches without closing them, or the cap is too low for it",
				"identity", who(ctx), "max", s.cfg.MaxWatchesPerIdentity)
		})
		return nil, status.Errorf(codes.ResourceExhausted, "%s already has %d watches open (the maximum): close some first", who(ctx), s.cfg.MaxWatchesPerIdentity)
	}
	s.watches[id]++
	return func() {
		s.watchMu.Lock()
		defer s.watchMu.Unlock()
		if s.watches[id]--; s.watches[id] <= 0 {
			delete(s.watches, id)
		}
	}, nil
}

// Register adds the services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	apiv1.RegisterResourceServiceServer(g, s)
	apiv1.RegisterTokenServiceServer(g, s)
	apiv1.RegisterControlPlaneServiceServer(g, s)
}

// Index describes the control plane.
func (s *Server) Index(context.Context, *apiv1.IndexRequest) (*apiv1.IndexResponse, error) {
	return &apiv1.IndexResponse{Product: "Weft", Version: s.cfg.Version, Mode: s.cfg.Mode, Zone: s.cfg.Zone, InstanceId: s.cfg.InstanceID}, nil
}

// target is a resolved collection plus the request's mesh and name.
type target struct {
	t        *resource.Type
	insights bool
	mesh     string
	name     string
}

func resolve(collection, mesh, name string, needName bool) (target, error) {
	c := collection
	insights := false
	if base, ok := strings.CutSuffix(c, "+insights"); ok {
		c, insights = base, true
	}
	t, ok := resource.ByRESTCollection(c)
	if !ok {
		t, ok = resource.ByName(c)
	}
	if !ok {
		return target{}, status.Errorf(codes.NotFound, "unknown collection %q", collection)
	}
	if insights && t.Insight == nil {
		return target{}, status.Errorf(codes.NotFound, "%s have no insights", t.Collection)
	}
	if t.MeshScoped() && mesh == "" && needName {
		return target{}, grpcx.InvalidArgument(fmt.Sprintf("%s are mesh-scoped", t.Collection),
			resource.Cause{Field: "mesh", Message: fmt.Sprintf("must be set: use /meshes/{mesh}/%s/{name}", t.Collection)})
	}
	if !t.MeshScoped() && mesh != "" {
		return target{}, status.Errorf(codes.NotFound, "%s are not mesh-scoped: use /%s", t.Collection, t.Collection)
	}
	if needName && name == "" {
		return target{}, grpcx.InvalidArgument("name is required", resource.Cause{Field: "name", Message: "must be set"})
	}
	return target{t: t, insights: insights, mesh: mesh, name: name}, nil
}

// hiddenSecret reports GlobalSecrets internal to the control plane (signing
// keys, the control-plane CA): never served, never written through the API.
func hiddenSecret(t *resource.Type, name string) bool {
	return t == resource.GlobalSecretType && strings.HasPrefix(name, "cp-")
}

func (s *Server) authorizeRead(ctx context.Context, tg target) error {
	c, _ := grpcx.ClaimsFrom(ctx)
	if c.Kind == token.KindDataplane && !(tg.t == resource.DataplaneType && c.Mesh == tg.mesh && c.Subject == tg.name) {
		return status.Errorf(codes.PermissionDenied, "a dataplane token may read only its own Dataplane")
	}
	if tg.t.Sensitive && !c.IsAdmin() {
		return status.Errorf(codes.PermissionDenied, "reading %s requires an admin token", tg.t.Collection)
	}
	if hiddenSecret(tg.t, tg.name) {
		return status.Errorf(codes.NotFound, "global secret %q not found", tg.name)
	}
	return nil
}

// authorizeWrite applies roles and ownership to a write.
func (s *Server) authorizeWrite(ctx context.Context, tg target) error {
	c, _ := grpcx.ClaimsFrom(ctx)
	switch {
	case c.IsAdmin():
	case c.Kind == token.KindDataplane && tg.t == resource.DataplaneType && c.Mesh == tg.mesh && c.Subject == tg.name:
		// A workload agent may register and remove its own Dataplane.
	default:
		return status.Errorf(codes.PermissionDenied, "writing %s requires an admin token", tg.t.Collection)
	}
	if tg.t.System {
		return grpcx.OwnedElsewhere(fmt.Sprintf("%s are written by the control plane, not through the API", tg.t.Collection))
	}
	if hiddenSecret(tg.t, tg.name) {
		return status.Errorf(codes.PermissionDenied, "global secrets named cp-* are internal to the control plane")
	}
	if why := resource.OwnedElsewhere(tg.t, s.cfg.Mode, s.cfg.Zone); why != "" {
		return grpcx.OwnedElsewhere(why)
	}
	return nil
}

// Get reads one resource.
func (s *Server) Get(ctx context.Context, req *apiv1.GetRequest) (*apiv1.Resource, error) {
	tg, err := resolve(req.GetCollection(), req.GetMesh(), req.GetName(), true)
	if err != nil {
		return nil, err
	}
	if err := s.authorizeRead(ctx, tg); err != nil {
		return nil, err
	}
	r, err := s.st.Get(ctx, tg.t, tg.mesh, tg.name)
	if err != nil {
		return nil, err
	}
	return resource.ToAPI(r)
}

// List reads a page of resources.
func (s *Server) List(ctx context.Context, req *apiv1.ListRequest) (*apiv1.ListResponse, error) {
	tg, err := resolve(req.GetCollection(), req.GetMesh(), "", false)
	if err != nil {
		return nil, err
	}
	if err := s.authorizeRead(ctx, tg); err != nil {
		return nil, err
	}
	if req.GetSize() > store.MaxPageSize {
		return nil, grpcx.InvalidArgument("page size too large", resource.Cause{Field: "size", Message: fmt.Sprintf("must be at most %d", store.MaxPageSize)})
	}
	if tg.mesh != "" {
		if _, err := s.st.Get(ctx, resource.MeshType, "", tg.mesh); store.IsNotFound(err) {
			return nil, status.Errorf(codes.NotFound, "mesh %q not found", tg.mesh)
		}
	}
	page, err := s.st.List(ctx, tg.t, tg.mesh, store.ListOptions{Limit: int(req.GetSize()), Continue: req.GetOffset()})
	if err != nil {
		return nil, err
	}
	out := &apiv1.ListResponse{Total: uint64(page.Total), NextOffset: page.Next}
	var items []*resource.Resource
	for _, r := range page.Items {
		if hiddenSecret(tg.t, r.Meta.GetName()) {
			out.Total--
			continue
		}
		items = append(items, r)
		a, err := resource.ToAPI(r)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, a)
	}
	if tg.insights {
		// One batched read for the page's insights, not one per item.
		ids := make([]store.ID, len(items))
		for i, r := range items {
			ids[i] = store.ID{Mesh: r.Meta.GetMesh(), Name: r.Meta.GetName()}
		}
		insights, err := s.st.GetMany(ctx, tg.t.Insight, ids)
		if err != nil {
			return nil, err
		}
		for _, ins := range insights {
			if ins == nil {
				out.Insights = append(out.Insights, &apiv1.Resource{})
				continue
			}
			ai, err := resource.ToAPI(ins)
			if err != nil {
				return nil, err
			}
			out.Insights = append(out.Insights, ai)
		}
	}
	if page.Next != "" {
		out.Next = nextURL(ctx, page.Next, req.GetSize())
	}
	return out, nil
}

// nextURL links the next page for REST callers.
func nextURL(ctx context.Context, next string, size uint32) string {
	md, _ := metadata.FromIncomingContext(ctx)
	raw := md.Get(RequestURLHeader)
	if len(raw) == 0 {
		return ""
	}
	u, err := url.Parse(raw[0])
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Set("offset", next)
	if size > 0 {
		q.Set("size", strconv.FormatUint(uint64(size), 10))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Put creates or updates a resource.
func (s *Server) Put(ctx context.Context, req *apiv1.PutRequest) (*apiv1.Resource, error) {
	r, err := s.prepareWrite(ctx, req)
	if err != nil {
		return nil, err
	}
	out, created, err := s.st.Upsert(ctx, r, s.secretGuards(r)...)
	if err != nil {
		return nil, err
	}
	if warnings := s.selectorTypos(ctx, r); len(warnings) > 0 {
		_ = grpc.SetHeader(ctx, metadata.MD{WarningHeader: warnings})
	}
	if created {
		_ = grpc.SetHeader(ctx, metadata.Pairs(CreatedHeader, "true"))
	}
	s.log.InfoContext(ctx, "resource written", "key", out.Key(), "version", out.Meta.GetVersion(), "created", created, "by", who(ctx))
	return resource.ToAPI(out)
}

// prepareWrite runs every check of a Put short of storing: the target,
// the caller's right to write it, validation with field paths, identity
// binding, references, the Mesh validator. A dry run stops after it.
func (s *Server) prepareWrite(ctx context.Context, req *apiv1.PutRequest) (*resource.Resource, error) {
	tg, err := resolve(req.GetCollection(), req.GetMesh(), req.GetName(), true)
	if err != nil {
		return nil, err
	}
	if tg.insights {
		return nil, status.Errorf(codes.Unimplemented, "PUT is not supported on %s", req.GetCollection())
	}
	if err := s.authorizeWrite(ctx, tg); err != nil {
		return nil, err
	}
	r, err := resource.FromAPI(req.GetResource(), tg.t)
	if err != nil {
		return nil, err
	}
	var causes []resource.Cause
	if r.Meta.GetName() != "" && r.Meta.GetName() != tg.name {
		causes = append(causes, resource.Cause{Field: "name", Message: fmt.Sprintf("%q does not match the name in the URL (%q)", r.Meta.GetName(), tg.name)})
	}
	if r.Meta.GetMesh() != "" && r.Meta.GetMesh() != tg.mesh {
		causes = append(causes, resource.Cause{Field: "mesh", Message: fmt.Sprintf("%q does not match the mesh in the URL (%q)", r.Meta.GetMesh(), tg.mesh)})
	}
	if len(causes) > 0 {
		return nil, grpcx.InvalidArgument("resource does not match the URL", causes...)
	}
	r.Meta.Name, r.Meta.Mesh = tg.name, tg.mesh
	r.Meta.Origin = resource.WriteOrigin(s.cfg.Mode, s.cfg.Zone)
	r.Meta.CreationTime, r.Meta.ModificationTime = nil, nil
	if err := resource.ValidateWrite(r); err != nil {
		return nil, err
	}
	if err := checkBinding(ctx, r); err != nil {
		return nil, err
	}
	if tg.t == resource.TrafficLogType || tg.t == resource.TrafficTraceType {
		// The backend a policy names must be one of its mesh's.
		if m, err := s.st.Get(ctx, resource.MeshType, "", tg.mesh); err == nil {
			if err := resource.CheckPolicyReferences(r, m.Spec.(*meshv1.Mesh)); err != nil {
				return nil, err
			}
		} else if !store.IsNotFound(err) {
			return nil, err
		}
	}
	if tg.t == resource.MeshType && s.cfg.MeshValidator != nil {
		if err := s.cfg.MeshValidator(ctx, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// maxWarnings bounds the warnings of one write.
const maxWarnings = 10

// selectorTypos warns about selector tag keys that no Dataplane of the mesh
// has and that look like a typo of a key one has (or of a well-known tag):
// `weft.io/servce` selects nothing, silently. The write is accepted. The
// mesh's Dataplanes are read only when a key is not a well-known tag.
func (s *Server) selectorTypos(ctx context.Context, r *resource.Resource) []string {
	if !r.Type().MeshScoped() || r.Type() == resource.DataplaneType || r.Spec == nil {
		return nil
	}
	tags := resource.SelectorTags(r.Spec)
	var unusual []resource.SelectorTag
	for _, t := range tags {
		if !slices.Contains(resource.WellKnownTags, t.Key) {
			unusual = append(unusual, t)
		}
	}
	if len(unusual) == 0 {
		return nil
	}
	dps, _, err := s.st.ListAll(ctx, resource.DataplaneType, r.Meta.GetMesh())
	if err != nil {
		s.log.WarnContext(ctx, "selector typo check skipped: cannot list dataplanes", "mesh", r.Meta.GetMesh(), "error", err)
		return nil
	}
	has := map[string]bool{}
	for _, k := range resource.WellKnownTags {
		has[k] = true
	}
	for _, dp := range dps {
		for _, in := range dp.Spec.(*meshv1.Dataplane).GetNetworking().GetInbound() {
			for k := range in.GetTags() {
				has[k] = true
			}
		}
	}
	known := make([]string, 0, len(has))
	for k := range has {
		known = append(known, k)
	}
	var out []string
	for _, t := range unusual {
		if has[t.Key] {
			continue
		}
		if guess := resource.LikelyTypo(t.Key, known); guess != "" && len(out) < maxWarnings {
			out = append(out, fmt.Sprintf("%s: no dataplane in mesh %s has tag %s, so this selector matches nothing; did you mean %s?",
				t.Field, strconv.QuoteToASCII(r.Meta.GetMesh()), strconv.QuoteToASCII(t.Key), strconv.QuoteToASCII(guess)))
		}
	}
	return out
}

// checkBinding refuses a Dataplane written by its own dataplane token that
// claims a service (inbound or gateway) the token is not bound to: identity
// is derived from the token, never claimed by the workload.
func checkBinding(ctx context.Context, r *resource.Resource) error {
	c, _ := grpcx.ClaimsFrom(ctx)
	if c.Kind != token.KindDataplane || r.Type() != resource.DataplaneType {
		return nil
	}
	if err := c.CheckServices(resource.DataplaneServices(r.Spec.(*meshv1.Dataplane))); err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return nil
}

// Delete removes a resource (a Mesh with everything in it).
func (s *Server) Delete(ctx context.Context, req *apiv1.DeleteRequest) (*apiv1.DeleteResponse, error) {
	tg, err := resolve(req.GetCollection(), req.GetMesh(), req.GetName(), true)
	if err != nil {
		return nil, err
	}
	if s.undecodableRepair(ctx, tg) {
		// The documented repair: an admin may remove a value that cannot
		// be decoded wherever it is (a synced copy on a zone, a control-
		// plane secret), so it stops failing reads. Only that key goes (an
		// unreadable Mesh's resources stay).
		if err := s.st.DeleteUndecodable(ctx, tg.t, tg.mesh, tg.name, req.GetVersion()); err != nil {
			return nil, err
		}
		s.log.WarnContext(ctx, "deleted an undecodable value as a repair", "key", resource.Key(tg.t.Name, tg.mesh, tg.name), "by", who(ctx))
		return &apiv1.DeleteResponse{}, nil
	}
	if err := s.authorizeWrite(ctx, tg); err != nil {
		return nil, err
	}
	if tg.t == resource.MeshType && !req.GetForce() {
		if err := s.meshHasOnlineDataplanes(ctx, tg.name); err != nil {
			return nil, err
		}
	}
	var opts []store.WriteOption
	if tg.t == resource.SecretType {
		meshVersion, err := s.secretInUse(ctx, tg.mesh, tg.name)
		if err != nil {
			return nil, err
		}
		if meshVersion != 0 {
			// Only while the Mesh found not to use it is unchanged.
			opts = append(opts, s.st.IfUnchanged(resource.MeshType, "", tg.mesh, meshVersion))
		}
	}
	if err := s.st.Delete(ctx, tg.t, tg.mesh, tg.name, req.GetVersion(), opts...); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "resource deleted", "key", resource.Key(tg.t.Name, tg.mesh, tg.name), "by", who(ctx))
	return &apiv1.DeleteResponse{}, nil
}

// meshHasOnlineDataplanes refuses (409 IN_USE) to delete a mesh while
// dataplanes in it are online (resource.DataplaneOnline): deleting it cuts
// their configuration and certificates. force skips the check.
func (s *Server) meshHasOnlineDataplanes(ctx context.Context, mesh string) error {
	insights, _, err := s.st.ListAll(ctx, resource.DataplaneInsightType, mesh)
	if err != nil {
		return err
	}
	var online []string
	for _, ins := range insights {
		if di, ok := ins.Spec.(*meshv1.DataplaneInsight); ok && resource.DataplaneOnline(di) {
			online = append(online, ins.Meta.GetName())
		}
	}
	if len(online) == 0 {
		return nil
	}
	sort.Strings(online)
	names := online
	if len(names) > 5 {
		names = append(names[:5:5], "...")
	}
	return grpcx.InUse(fmt.Sprintf("mesh %q has %d online dataplane(s) (%s): stop them first, or delete it anyway with force (weftctl delete mesh %s --force; REST ?force=true)",
		mesh, len(online), strings.Join(names, ", "), mesh))
}

// undecodableRepair reports whether the caller is an admin and the stored
// value of tg cannot be decoded.
func (s *Server) undecodableRepair(ctx context.Context, tg target) bool {
	if c, _ := grpcx.ClaimsFrom(ctx); !c.IsAdmin() {
		return false
	}
	_, err := s.st.Get(ctx, tg.t, tg.mesh, tg.name)
	return store.IsUndecodable(err)
}

// secretInUse refuses to delete a Secret that the enabled provided CA of
// its mesh reads (every signing would then fail). It returns the version of
// the Mesh it checked (0: none readable).
func (s *Server) secretInUse(ctx context.Context, mesh, name string) (int64, error) {
	m, err := s.st.Get(ctx, resource.MeshType, "", mesh)
	if store.IsNotFound(err) || store.IsUndecodable(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	spec := m.Spec.(*meshv1.Mesh)
	enabled := spec.GetMtls().GetEnabledBackend()
	for i, b := range spec.GetMtls().GetBackends() {
		if b.GetName() != enabled || b.GetType() != "provided" {
			continue
		}
		for field, ds := range map[string]*meshv1.DataSource{"cert": b.GetProvided().GetCert(), "key": b.GetProvided().GetKey()} {
			if ds.GetSecret() == name {
				return 0, grpcx.InUse(fmt.Sprintf("secret %q is used by mesh %q: its enabled CA backend %q reads it (mtls.backends[%d].provided.%s); "+
					"switch the mesh to another backend or secret first", name, mesh, enabled, i, field))
			}
		}
	}
	return m.Meta.GetVersion(), nil
}

// secretGuards makes a Mesh write conditional on the Secrets its provided
// CAs read (checked by the MeshValidator) still existing, so a concurrent
// Secret delete cannot leave a CA without its key.
func (s *Server) secretGuards(r *resource.Resource) []store.WriteOption {
	m, ok := r.Spec.(*meshv1.Mesh)
	if !ok {
		return nil
	}
	var out []store.WriteOption
	for _, b := range m.GetMtls().GetBackends() {
		if b.GetType() != "provided" {
			continue
		}
		for _, ds := range []*meshv1.DataSource{b.GetProvided().GetCert(), b.GetProvided().GetKey()} {
			if name := ds.GetSecret(); name != "" {
				out = append(out, s.st.IfExists(resource.SecretType, r.Meta.GetName(), name))
			}
		}
	}
	return out
}

// Watch streams changes of a collection.
func (s *Server) Watch(req *apiv1.WatchRequest, stream apiv1.ResourceService_WatchServer) error {
	ctx := stream.Context()
	tg, err := resolve(req.GetCollection(), req.GetMesh(), "", false)
	if err != nil {
		return err
	}
	if err := s.authorizeRead(ctx, tg); err != nil {
		return err
	}
	release, err := s.acquireWatch(ctx)
	if err != nil {
		return err
	}
	defer release()
	ch, err := s.st.Watch(ctx, tg.t, tg.mesh, req.GetFromRevision())
	if err != nil {
		return grpcx.InvalidArgument(err.Error(), resource.Cause{Field: "fromRevision", Message: err.Error()})
	}
	for ev := range ch {
		out := &apiv1.WatchEvent{Revision: ev.Revision}
		switch ev.Kind {
		case store.EventPut:
			out.Kind = apiv1.WatchEvent_PUT
		case store.EventDelete:
			out.Kind = apiv1.WatchEvent_DELETE
		case store.EventSync:
			out.Kind = apiv1.WatchEvent_SYNC
		}
		if ev.Resource != nil {
			if hiddenSecret(tg.t, ev.Resource.Meta.GetName()) {
				continue
			}
			if out.Resource, err = resource.ToAPI(ev.Resource); err != nil {
				return err
			}
		}
		for _, r := range ev.Resources {
			if hiddenSecret(tg.t, r.Meta.GetName()) {
				continue
			}
			a, err := resource.ToAPI(r)
			if err != nil {
				return err
			}
			out.Resources = append(out.Resources, a)
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func who(ctx context.Context) string {
	if c, ok := grpcx.ClaimsFrom(ctx); ok {
		return c.Kind + ":" + c.Subject
	}
	return "anonymous"
}

// Token defaults and limits.
const (
	defaultDataplaneValidity = 365 * 24 * time.Hour
	defaultZoneValidity      = 365 * 24 * time.Hour
	defaultIngressValidity   = 365 * 24 * time.Hour
	// defaultIngressName is ingress-manager's default --name.
	defaultIngressName  = "ingress"
	defaultUserValidity = 24 * time.Hour
)

func validity(field, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := resource.ParseDuration(s)
	if err != nil {
		return 0, grpcx.InvalidArgument("invalid validFor", resource.Cause{Field: field, Message: err.Error()})
	}
	if d <= 0 || d > token.MaxValidity {
		return 0, grpcx.InvalidArgument("invalid validFor", resource.Cause{Field: field, Message: "must be positive and at most 10y"})
	}
	return d, nil
}

func (s *Server) requireAdmin(ctx context.Context) error {
	if c, _ := grpcx.ClaimsFrom(ctx); !c.IsAdmin() {
		return status.Error(codes.PermissionDenied, "issuing tokens requires an admin token")
	}
	return nil
}

// GenerateDataplaneToken issues a token for one dataplane, bound to the
// services it may be: those given, else those of the registered Dataplane.
// An unbound token needs unbound: true.
func (s *Server) GenerateDataplaneToken(ctx context.Context, req *apiv1.GenerateDataplaneTokenRequest) (*apiv1.TokenResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	v := resource.NewValidator()
	resource.CheckLabel(v.Field("mesh"), req.GetMesh())
	resource.CheckName(v.Field("name"), req.GetName())
	if len(req.GetServices()) > maxBoundServices {
		v.Field("services").Addf("%s", fmt.Sprintf("at most %d services", maxBoundServices))
	}
	for i, svc := range req.GetServices() {
		resource.CheckLabel(v.Field("services").Index(i), svc)
	}
	if req.GetUnbound() && len(req.GetServices()) > 0 {
		v.Field("unbound").Addf("%s", "cannot be combined with services")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	d, err := validity("validFor", req.GetValidFor(), defaultDataplaneValidity)
	if err != nil {
		return nil, err
	}
	// A token for a mesh that does not exist could never be used, and a
	// typo in --mesh would only show when the dataplane connects.
	switch _, err := s.st.Get(ctx, resource.MeshType, "", req.GetMesh()); {
	case store.IsNotFound(err):
		return nil, grpcx.InvalidArgument(fmt.Sprintf("mesh %q does not exist", req.GetMesh()),
			resource.Cause{Field: "mesh", Message: "no such mesh: create it first (weftctl apply), or see weftctl get meshes"})
	case err != nil:
		return nil, err
	}
	c := token.Claims{Kind: token.KindDataplane, Mesh: req.GetMesh(), Tags: req.GetTags(), Unbound: req.GetUnbound()}
	c.Subject = req.GetName()
	if !c.Unbound {
		svcs := append([]string(nil), req.GetServices()...)
		if len(svcs) == 0 && req.GetTags()[resource.ServiceTag] == "" {
			dp, err := s.st.Get(ctx, resource.DataplaneType, req.GetMesh(), req.GetName())
			switch {
			case store.IsNotFound(err) || store.IsMeshNotFound(err):
				return nil, grpcx.InvalidArgument(fmt.Sprintf("dataplane %s/%s is not registered, so the services to bind the token to are unknown", req.GetMesh(), req.GetName()),
					resource.Cause{Field: "services", Message: "must be set (weftctl: --service), or register the Dataplane first; an unbound token needs unbound: true (--unbound)"})
			case err != nil:
				return nil, err
			}
			svcs = resource.DataplaneServices(dp.Spec.(*meshv1.Dataplane))
			if len(svcs) == 0 {
				return nil, grpcx.InvalidArgument(fmt.Sprintf("dataplane %s/%s has no %s tag to bind the token to", req.GetMesh(), req.GetName(), resource.ServiceTag),
					resource.Cause{Field: "services", Message: "must be set (weftctl: --service)"})
			}
		}
		c.Services = svcs
	}
	return s.issue(ctx, c, d)
}

// maxBoundServices bounds the services one dataplane token names.
const maxBoundServices = 64

// RevokeToken deny-lists a token by id (admin only).
func (s *Server) RevokeToken(ctx context.Context, req *apiv1.RevokeTokenRequest) (*apiv1.RevokeTokenResponse, error) {
	if c, _ := grpcx.ClaimsFrom(ctx); !c.IsAdmin() {
		return nil, status.Error(codes.PermissionDenied, "revoking tokens requires an admin token")
	}
	id, tok := strings.TrimSpace(req.GetId()), strings.TrimSpace(req.GetToken())
	var until time.Time
	v := resource.NewValidator()
	switch {
	case id != "" && tok != "":
		v.Field("token").Addf("%s", "give either id or token, not both")
	case tok != "":
		var err error
		if id, until, err = token.ParseUnverified(tok); err != nil || id == "" {
			v.Field("token").Addf("%s", "not a token with an id (jti)")
		}
	case id == "":
		v.Field("id").Addf("%s", "must be set (the token id, jti), or give token")
	case len(id) > 64 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r > '~' }):
		v.Field("id").Addf("%s", "must be at most 64 printable ASCII characters")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	until, err := s.keys.Revoke(ctx, id, until)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	s.log.InfoContext(ctx, "token revoked", "id", id, "until", until, "by", who(ctx))
	return &apiv1.RevokeTokenResponse{Id: id, Until: resource.Timestamp(until)}, nil
}

// RotateSigningKey replaces the token signing key (admin only).
func (s *Server) RotateSigningKey(ctx context.Context, _ *apiv1.RotateSigningKeyRequest) (*apiv1.RotateSigningKeyResponse, error) {
	if c, _ := grpcx.ClaimsFrom(ctx); !c.IsAdmin() {
		return nil, status.Error(codes.PermissionDenied, "rotating the signing key requires an admin token")
	}
	gen, kid, err := s.keys.Rotate(ctx)
	if err != nil {
		return nil, status.Error(codes.Aborted, err.Error())
	}
	s.log.WarnContext(ctx, "token signing key rotated: every token issued before is now invalid", "generation", gen, "kid", kid, "by", who(ctx))
	return &apiv1.RotateSigningKeyResponse{Generation: gen, KeyId: kid}, nil
}

// GenerateZoneToken issues a token a zone control plane presents to global.
func (s *Server) GenerateZoneToken(ctx context.Context, req *apiv1.GenerateZoneTokenRequest) (*apiv1.TokenResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	if s.cfg.Mode == ModeZone {
		return nil, grpcx.OwnedElsewhere("zone tokens are issued by the global control plane")
	}
	v := resource.NewValidator()
	resource.CheckLabel(v.Field("zone"), req.GetZone())
	if err := v.Err(); err != nil {
		return nil, err
	}
	d, err := validity("validFor", req.GetValidFor(), defaultZoneValidity)
	if err != nil {
		return nil, err
	}
	c := token.Claims{Kind: token.KindZone, Zone: req.GetZone()}
	c.Subject = req.GetZone()
	return s.issue(ctx, c, d)
}

// GenerateIngressToken issues the token a zone ingress presents to its
// zone's xds-server: bound to (zone, name). Zone and standalone control
// planes issue it (their xds-servers verify it); global refuses, and a
// zone control plane issues tokens for its own zone only.
func (s *Server) GenerateIngressToken(ctx context.Context, req *apiv1.GenerateIngressTokenRequest) (*apiv1.TokenResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	if s.cfg.Mode == ModeGlobal {
		return nil, grpcx.OwnedElsewhere("ingress tokens are issued by the zone's control plane (its xds-server verifies them)")
	}
	name := req.GetName()
	if name == "" {
		name = defaultIngressName
	}
	v := resource.NewValidator()
	resource.CheckLabel(v.Field("zone"), req.GetZone())
	resource.CheckName(v.Field("name"), name)
	if s.cfg.Zone != "" && req.GetZone() != s.cfg.Zone && v.Err() == nil {
		v.Field("zone").Addf("this control plane is zone %q's: its xds-server would refuse an ingress of zone %q", s.cfg.Zone, req.GetZone())
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	d, err := validity("validFor", req.GetValidFor(), defaultIngressValidity)
	if err != nil {
		return nil, err
	}
	c := token.Claims{Kind: token.KindIngress, Zone: req.GetZone()}
	c.Subject = name
	return s.issue(ctx, c, d)
}

// GenerateUserToken issues a user token (admin when groups has weft:admin).
func (s *Server) GenerateUserToken(ctx context.Context, req *apiv1.GenerateUserTokenRequest) (*apiv1.TokenResponse, error) {
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.GetName()) == "" {
		return nil, grpcx.InvalidArgument("name is required", resource.Cause{Field: "name", Message: "must be set"})
	}
	d, err := validity("validFor", req.GetValidFor(), defaultUserValidity)
	if err != nil {
		return nil, err
	}
	c := token.Claims{Kind: token.KindUser, Groups: req.GetGroups()}
	c.Subject = req.GetName()
	return s.issue(ctx, c, d)
}

func (s *Server) issue(ctx context.Context, c token.Claims, d time.Duration) (*apiv1.TokenResponse, error) {
	tok, out, err := s.keys.IssueClaims(ctx, c, d)
	if err != nil {
		return nil, err
	}
	exp := out.ExpiresAt.Time
	s.log.InfoContext(ctx, "token issued", "kind", c.Kind, "subject", c.Subject, "mesh", c.Mesh, "id", out.ID, "services", out.Services, "unbound", out.Unbound, "expires", exp, "by", who(ctx))
	return &apiv1.TokenResponse{Token: tok, ExpiresTime: resource.Timestamp(exp), Id: out.ID, Services: out.Services, Unbound: out.Unbound}, nil
}

// Authorize is the AuthFunc allow hook: which verified callers may call
// which methods. Finer checks (admin for writes, own dataplane) are in the
// handlers, which know the target.
func Authorize(c *token.Claims, method string) error {
	switch c.Kind {
	case token.KindUser:
		return nil
	case token.KindDataplane:
		if method == apiv1.ResourceService_Put_FullMethodName || method == apiv1.ResourceService_Delete_FullMethodName ||
			method == apiv1.ResourceService_Get_FullMethodName || method == inspectv1.InspectService_ConfigDump_FullMethodName {
			return nil
		}
	}
	return status.Errorf(codes.PermissionDenied, "a %s token cannot call %s", c.Kind, method)
}
