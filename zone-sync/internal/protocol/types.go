// Package protocol is the zone-sync wire protocol shared by global and zone:
// type URLs and names, content versions, limits, the validation of incoming
// messages, the watch cache of a store, and the session that runs both
// halves of the incremental (delta-xDS style) exchange on one stream.
package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
)

// Limits on what one end accepts from the other.
const (
	// MaxMessageSize bounds one stream message (both directions).
	MaxMessageSize = 16 << 20
	// MaxResourcesPerResponse bounds the resources in one response.
	MaxResourcesPerResponse = 1000
	// MaxRemovedPerResponse bounds the removed names in one response.
	MaxRemovedPerResponse = 5000
	// MaxInitialVersions bounds the versions a subscribe may carry.
	MaxInitialVersions = 200000
	// MaxSpecSize bounds one serialised spec.
	MaxSpecSize = 1 << 20
	// MaxVersionLength bounds a version string.
	MaxVersionLength = 64
	// MaxNonceLength bounds a nonce.
	MaxNonceLength = 64
	// MaxErrorLength bounds NACK messages we keep.
	MaxErrorLength = 4096

	// chunkResources and chunkBytes are what a sender puts in one response.
	chunkResources = 500
	chunkBytes     = 2 << 20
)

// TypeURLPrefix starts every type URL.
const TypeURLPrefix = "type.googleapis.com/"

var byURL = map[string]*resource.Type{}

func init() {
	for _, t := range resource.Types() {
		byURL[TypeURL(t)] = t
	}
}

// TypeURL returns the type URL of a resource type: the full name of its
// spec message, as xDS names its resources.
func TypeURL(t *resource.Type) string {
	return TypeURLPrefix + string(proto.MessageName(t.NewSpec()))
}

// TypeByURL finds the resource type of a type URL.
func TypeByURL(url string) (*resource.Type, bool) {
	t, ok := byURL[url]
	return t, ok
}

// WireName is a resource's name on the stream: "mesh/name" for mesh-scoped
// types, "name" otherwise.
func WireName(t *resource.Type, mesh, name string) string {
	if t.MeshScoped() {
		return mesh + "/" + name
	}
	return name
}

// SplitName parses a wire name of type t into mesh and name.
func SplitName(t *resource.Type, wire string) (mesh, name string, err error) {
	if t.MeshScoped() {
		m, n, ok := strings.Cut(wire, "/")
		if !ok || m == "" || n == "" || strings.Contains(n, "/") {
			return "", "", fmt.Errorf("name %q: %s is mesh-scoped, want \"mesh/name\"", clip(wire), t.Name)
		}
		return m, n, nil
	}
	if wire == "" || strings.Contains(wire, "/") {
		return "", "", fmt.Errorf("name %q: %s is not mesh-scoped, want a plain name", clip(wire), t.Name)
	}
	return "", wire, nil
}

// Version is the content version of a resource: a hash of its wire name,
// labels and serialised spec. Both ends compute it from what they hold, so
// a reconnecting receiver can say what it has without remembering anything
// the sender told it.
func Version(wireName string, labels map[string]string, spec []byte) string {
	h := sha256.New()
	h.Write([]byte(wireName))
	h.Write([]byte{0})
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0})
	}
	h.Write([]byte{1})
	h.Write(spec)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// MarshalSpec serialises a spec deterministically.
func MarshalSpec(spec proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(spec)
}

// ResourceVersion is Version of a stored resource under a wire name.
func ResourceVersion(wireName string, r *resource.Resource) (string, error) {
	spec, err := MarshalSpec(r.Spec)
	if err != nil {
		return "", err
	}
	return Version(wireName, r.Meta.GetLabels(), spec), nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
