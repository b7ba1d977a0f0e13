package protocol

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	syncv1 "github.com/weftmesh/weft/proto/gen/go/weft/sync/v1"
)

// Incoming is one resource of a validated response.
type Incoming struct {
	// Wire is the sender's name for it.
	Wire    string
	Version string
	// Resource is decoded and valid, named as the sender names it; the
	// receiver's policy (names, origin, ownership) is not applied yet.
	Resource *resource.Resource
	Size     int
	Commit   time.Time
}

// Decoded is a validated response.
type Decoded struct {
	Type      *resource.Type
	Nonce     string
	Version   string
	Resources []Incoming
	Removed   []string
	// RemovedTimes is when the sender saw each removal, where it said.
	RemovedTimes map[string]time.Time
}

// DecodeResponse checks a response from the other end against the limits
// and the resource model. accept says which types this end receives. Any
// problem rejects the whole response.
func DecodeResponse(m *syncv1.DeltaResponse, accept func(*resource.Type) bool) (*Decoded, error) {
	if m == nil {
		return nil, errors.New("empty response")
	}
	t, ok := TypeByURL(m.GetTypeUrl())
	if !ok {
		return nil, fmt.Errorf("unknown type URL %q", clip(m.GetTypeUrl()))
	}
	if accept != nil && !accept(t) {
		return nil, fmt.Errorf("type %s is not accepted from this peer", t.Name)
	}
	if n := m.GetNonce(); n == "" || len(n) > MaxNonceLength {
		return nil, fmt.Errorf("nonce must be 1 to %d characters", MaxNonceLength)
	}
	if len(m.GetSystemVersionInfo()) > MaxVersionLength {
		return nil, fmt.Errorf("system version longer than %d characters", MaxVersionLength)
	}
	if len(m.GetResources()) > MaxResourcesPerResponse {
		return nil, fmt.Errorf("%d resources in one response, at most %d allowed", len(m.GetResources()), MaxResourcesPerResponse)
	}
	if len(m.GetRemovedResources()) > MaxRemovedPerResponse {
		return nil, fmt.Errorf("%d removed resources in one response, at most %d allowed", len(m.GetRemovedResources()), MaxRemovedPerResponse)
	}
	d := &Decoded{Type: t, Nonce: m.GetNonce(), Version: m.GetSystemVersionInfo()}
	seen := map[string]bool{}
	for i, sr := range m.GetResources() {
		in, err := decodeResource(t, sr)
		if err != nil {
			return nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		if seen[in.Wire] {
			return nil, fmt.Errorf("resources[%d]: %q appears twice", i, clip(in.Wire))
		}
		seen[in.Wire] = true
		d.Resources = append(d.Resources, in)
	}
	removed := make(map[string]bool, len(m.GetRemovedResources()))
	for i, name := range m.GetRemovedResources() {
		if _, _, err := SplitName(t, name); err != nil {
			return nil, fmt.Errorf("removedResources[%d]: %w", i, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("removedResources[%d]: %q is both updated and removed, or removed twice", i, clip(name))
		}
		seen[name] = true
		removed[name] = true
		d.Removed = append(d.Removed, name)
	}
	if len(m.GetRemovedTimes()) > len(d.Removed) {
		return nil, errors.New("removedTimes lists names that are not removed")
	}
	for name, ts := range m.GetRemovedTimes() {
		if !removed[name] {
			return nil, fmt.Errorf("removedTimes[%q]: not a removed resource", clip(name))
		}
		if ts.IsValid() {
			if d.RemovedTimes == nil {
				d.RemovedTimes = map[string]time.Time{}
			}
			d.RemovedTimes[name] = ts.AsTime()
		}
	}
	return d, nil
}

func decodeResource(t *resource.Type, sr *syncv1.SyncResource) (Incoming, error) {
	mesh, name, err := SplitName(t, sr.GetName())
	if err != nil {
		return Incoming{}, err
	}
	if v := sr.GetVersion(); v == "" || len(v) > MaxVersionLength {
		return Incoming{}, fmt.Errorf("%s: version must be 1 to %d characters", clip(sr.GetName()), MaxVersionLength)
	}
	meta := sr.GetMeta()
	if meta == nil {
		return Incoming{}, fmt.Errorf("%s: meta is missing", clip(sr.GetName()))
	}
	if meta.GetType() != "" && meta.GetType() != t.Name {
		return Incoming{}, fmt.Errorf("%s: meta.type %q does not match the type URL (%s)", clip(sr.GetName()), clip(meta.GetType()), t.Name)
	}
	if meta.GetMesh() != mesh || meta.GetName() != name {
		return Incoming{}, fmt.Errorf("%s: meta names %s, not the resource", clip(sr.GetName()), clip(resource.Key(t.Name, meta.GetMesh(), meta.GetName())))
	}
	if len(meta.GetOrigin()) > 63 {
		return Incoming{}, fmt.Errorf("%s: origin too long", clip(sr.GetName()))
	}
	if len(meta.GetLabels()) > 64 {
		return Incoming{}, fmt.Errorf("%s: more than 64 labels", clip(sr.GetName()))
	}
	for k, v := range meta.GetLabels() {
		if len(k) > 253 || len(v) > 1024 {
			return Incoming{}, fmt.Errorf("%s: label %q too long", clip(sr.GetName()), clip(k))
		}
	}
	if len(sr.GetSpec()) > MaxSpecSize {
		return Incoming{}, fmt.Errorf("%s: spec of %d bytes, at most %d allowed", clip(sr.GetName()), len(sr.GetSpec()), MaxSpecSize)
	}
	if want := Version(sr.GetName(), meta.GetLabels(), sr.GetSpec()); want != sr.GetVersion() {
		return Incoming{}, fmt.Errorf("%s: version %q does not match its content", clip(sr.GetName()), clip(sr.GetVersion()))
	}
	spec := t.NewSpec()
	if err := proto.Unmarshal(sr.GetSpec(), spec); err != nil {
		return Incoming{}, fmt.Errorf("%s: spec is not a %s: %v", clip(sr.GetName()), proto.MessageName(spec), err)
	}
	r := &resource.Resource{Meta: &meshv1.Meta{Type: t.Name, Mesh: mesh, Name: name, Origin: meta.GetOrigin(), Labels: meta.GetLabels()}, Spec: spec}
	if err := resource.Validate(r); err != nil {
		return Incoming{}, fmt.Errorf("%s: %w", clip(sr.GetName()), err)
	}
	in := Incoming{Wire: sr.GetName(), Version: sr.GetVersion(), Resource: r, Size: proto.Size(sr)}
	if ct := sr.GetCommitTime(); ct != nil && ct.IsValid() {
		in.Commit = ct.AsTime()
	}
	return in, nil
}

// CheckRequest checks a request (subscribe, ACK or NACK) from the other
// end. serves says which types this end sends.
func CheckRequest(m *syncv1.DeltaRequest, serves func(*resource.Type) bool) (*resource.Type, error) {
	if m == nil {
		return nil, errors.New("empty request")
	}
	t, ok := TypeByURL(m.GetTypeUrl())
	if !ok {
		return nil, fmt.Errorf("unknown type URL %q", clip(m.GetTypeUrl()))
	}
	if serves != nil && !serves(t) {
		return nil, fmt.Errorf("type %s is not served by this end", t.Name)
	}
	if len(m.GetResponseNonce()) > MaxNonceLength {
		return nil, fmt.Errorf("nonce longer than %d characters", MaxNonceLength)
	}
	if len(m.GetInitialResourceVersions()) > MaxInitialVersions {
		return nil, fmt.Errorf("%d initial resource versions, at most %d allowed", len(m.GetInitialResourceVersions()), MaxInitialVersions)
	}
	if m.GetResponseNonce() != "" && len(m.GetInitialResourceVersions()) > 0 {
		return nil, errors.New("initial resource versions are only allowed on a subscribe (no response nonce)")
	}
	for name, v := range m.GetInitialResourceVersions() {
		if _, _, err := SplitName(t, name); err != nil {
			return nil, fmt.Errorf("initialResourceVersions: %w", err)
		}
		if v == "" || len(v) > MaxVersionLength {
			return nil, fmt.Errorf("initialResourceVersions[%q]: version must be 1 to %d characters", clip(name), MaxVersionLength)
		}
	}
	return t, nil
}
