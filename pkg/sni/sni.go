// Package sni is the one definition of the TLS server name that names a
// mesh service (and optionally a subset of its instances) in upstream TLS.
// Sidecars (Envoy), proxyless grpc-go clients and the xds-server write it;
// ingresses read it from the ClientHello to route a connection without
// terminating TLS. The format is a wire contract pinned by sni_test.go.
//
// Format (every part is a DNS label, so Go's crypto/tls, Envoy and grpc-go
// accept it as a server name):
//
//	<service>.<mesh>.mesh                      every instance of the service
//	<service>.<subset>[.<subset>...].<mesh>.mesh  instances with these tags
//
// The subset is the tag set (without weft.io/service) encoded as
// "k1=v1\x00k2=v2" in key order, base32 (RFC 4648 extended hex alphabet,
// lowercase, no padding) and cut into labels of at most 63 characters. A
// name has at most MaxLen bytes; longer subsets cannot be named.
package sni

import (
	"encoding/base32"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/weftmesh/weft/pkg/resource"
)

// Suffix ends every mesh server name.
const Suffix = ".mesh"

// MaxLen is the longest server name (a DNS name's limit; grpc-go refuses
// SNIs over 255 bytes, Envoy over 255).
const MaxLen = 253

// serviceTag: the service is the first label, not part of the subset.
const serviceTag = resource.ServiceTag

// isLabel is the rule of mesh and service names.
var isLabel = resource.IsLabel

var enc = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// Name is what a server name says: a service of a mesh and, optionally, the
// tags its instances must carry.
type Name struct {
	Mesh    string
	Service string
	// Tags is the subset (nil or empty: every instance). Never holds
	// weft.io/service.
	Tags map[string]string
}

// Format returns the server name of (mesh, service, tags). tags may hold
// weft.io/service (it must then equal service) and is not modified.
func Format(mesh, service string, tags map[string]string) (string, error) {
	if !isLabel(mesh) {
		return "", fmt.Errorf("sni: mesh %q is not a DNS label", mesh)
	}
	if !isLabel(service) {
		return "", fmt.Errorf("sni: service %q is not a DNS label", service)
	}
	var b strings.Builder
	b.WriteString(service)
	if sub, err := subset(service, tags); err != nil {
		return "", err
	} else if sub != "" {
		s := enc.EncodeToString([]byte(sub))
		for len(s) > 0 {
			n := min(len(s), 63)
			b.WriteByte('.')
			b.WriteString(s[:n])
			s = s[n:]
		}
	}
	b.WriteByte('.')
	b.WriteString(mesh)
	b.WriteString(Suffix)
	if b.Len() > MaxLen {
		return "", fmt.Errorf("sni: the name of %s/%s with %d tags is %d bytes, more than %d", mesh, service, len(tags), b.Len(), MaxLen)
	}
	return b.String(), nil
}

// Service is Format without a subset: it cannot fail for valid names.
func Service(mesh, service string) string { return service + "." + mesh + Suffix }

func subset(service string, tags map[string]string) (string, error) {
	keys := make([]string, 0, len(tags))
	for k, v := range tags {
		if k == serviceTag {
			if v != service {
				return "", fmt.Errorf("sni: tag %s=%q differs from the service %q", serviceTag, v, service)
			}
			continue
		}
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) || v == "" {
			return "", fmt.Errorf("sni: tag %q=%q cannot be named", k, v)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(tags[k])
	}
	return b.String(), nil
}

// ErrNotMesh is returned by Parse for a name outside the .mesh domain.
var ErrNotMesh = errors.New("sni: not a mesh service name")

// Parse reads a server name. It accepts exactly what Format writes (so a
// name has one meaning and one spelling) and refuses names over MaxLen.
func Parse(s string) (Name, error) {
	if len(s) > MaxLen {
		return Name{}, fmt.Errorf("sni: name of %d bytes, more than %d", len(s), MaxLen)
	}
	rest, ok := strings.CutSuffix(s, Suffix)
	if !ok {
		return Name{}, ErrNotMesh
	}
	labels := strings.Split(rest, ".")
	if len(labels) < 2 {
		return Name{}, fmt.Errorf("sni: %q is not <service>.<mesh>.mesh", s)
	}
	n := Name{Service: labels[0], Mesh: labels[len(labels)-1]}
	if !isLabel(n.Service) || !isLabel(n.Mesh) {
		return Name{}, fmt.Errorf("sni: %q is not <service>.<mesh>.mesh", s)
	}
	if mid := labels[1 : len(labels)-1]; len(mid) > 0 {
		for i, l := range mid {
			// Every label but the last is full: one spelling per subset.
			if l == "" || len(l) > 63 || (i < len(mid)-1 && len(l) != 63) {
				return Name{}, fmt.Errorf("sni: %q has a malformed subset", s)
			}
		}
		raw, err := enc.DecodeString(strings.Join(mid, ""))
		if err != nil || len(raw) == 0 {
			return Name{}, fmt.Errorf("sni: %q has a malformed subset", s)
		}
		n.Tags = map[string]string{}
		for _, kv := range strings.Split(string(raw), "\x00") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" || v == "" || k == serviceTag {
				return Name{}, fmt.Errorf("sni: %q has a malformed subset", s)
			}
			if _, dup := n.Tags[k]; dup {
				return Name{}, fmt.Errorf("sni: %q repeats tag %q", s, k)
			}
			n.Tags[k] = v
		}
	}
	// One spelling: the name must be what Format writes.
	if again, err := Format(n.Mesh, n.Service, n.Tags); err != nil || again != s {
		return Name{}, fmt.Errorf("sni: %q is not in canonical form", s)
	}
	return n, nil
}
