package generator

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/xdsnames"
)

// TestRequestedSelects: for every proxyless golden input, a Requested
// naming everything the full configuration holds gives exactly it (same
// resources, same versions), and one naming a single service's client
// resources gives those, the server listeners and the secrets, and no other
// service's.
func TestRequestedSelects(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.input.yaml")
	ran := 0
	for _, in := range inputs {
		s, p := loadInput(t, in)
		if p.Kind != KindGRPC {
			continue
		}
		ran++
		t.Run(strings.TrimSuffix(filepath.Base(in), ".input.yaml"), func(t *testing.T) {
			full, err := Generate(s, p)
			if err != nil {
				t.Fatal(err)
			}
			all := NewRequested()
			for _, typ := range requestedTypes {
				var names []string
				for _, res := range full[typ] {
					names = append(names, cachev3.GetResourceName(res))
				}
				all, _ = all.With(typ, names)
			}
			q := *p
			q.Requested = all
			got, err := Generate(s, &q)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := fmt.Sprint(s.Versions(full)), fmt.Sprint(s.Versions(got)); a != b {
				t.Fatalf("every name requested: versions %s, want %s", b, a)
			}
			for _, typ := range TypeURLs {
				if len(got[typ]) != len(full[typ]) {
					t.Fatalf("%s: %d resources, want %d", typ, len(got[typ]), len(full[typ]))
				}
				for i := range got[typ] {
					if !proto.Equal(got[typ][i], full[typ][i]) {
						t.Fatalf("%s[%d]: %s differs", typ, i, cachev3.GetResourceName(got[typ][i]))
					}
				}
			}

			// One service, by listener name only: nothing else of the
			// mesh's client resources.
			svc := ""
			for _, res := range full[resourcev3.ListenerType] {
				if n := cachev3.GetResourceName(res); !strings.HasPrefix(n, "grpc/server") {
					svc = strings.TrimSuffix(n, ".mesh")
					break
				}
			}
			if svc == "" {
				t.Skip("no client listener")
			}
			one, _ := NewRequested().With(resourcev3.ListenerType, []string{xdsnames.ClientListenerName(svc), "unknown.mesh"})
			q.Requested = one
			got, err = Generate(s, &q)
			if err != nil {
				t.Fatal(err)
			}
			// Its versions are the full configuration's, on this snapshot
			// and on one built anew (another replica).
			want := s.Versions(full)
			for _, snap := range []*Snapshot{s, func() *Snapshot { s2, _ := loadInput(t, in); return s2 }()} {
				v, err := snap.VersionsFor(&q, got)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(v) != fmt.Sprint(want) {
					t.Fatalf("versions of one service's configuration: %v, want the full configuration's %v", v, want)
				}
			}
			for _, typ := range TypeURLs {
				want := 0
				for _, res := range full[typ] {
					n := cachev3.GetResourceName(res)
					if typ == resourcev3.SecretType || n == xdsnames.ClientListenerName(svc) && typ == resourcev3.ListenerType || strings.HasPrefix(n, "grpc/server") {
						want++
					}
				}
				if len(got[typ]) != want {
					t.Errorf("%s: got %v, want %d (%s's listener, server listeners, secrets)", typ, names(got[typ]), want, svc)
				}
			}
			none := NewRequested()
			q.Requested = none
			got, err = Generate(s, &q)
			if err != nil {
				t.Fatal(err)
			}
			for _, typ := range []string{resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
				if len(got[typ]) != 0 {
					t.Errorf("nothing requested: %s holds %v", typ, names(got[typ]))
				}
			}
			if v, err := s.VersionsFor(&q, got); err != nil || fmt.Sprint(v) != fmt.Sprint(s.Versions(full)) {
				t.Errorf("nothing requested: versions %v (%v), want the full configuration's %v", v, err, s.Versions(full))
			}
		})
	}
	if ran == 0 {
		t.Fatal("no proxyless golden input")
	}
}

func names(list []types.Resource) []string {
	var out []string
	for _, r := range list {
		out = append(out, cachev3.GetResourceName(r))
	}
	return out
}

func TestRequestedWith(t *testing.T) {
	q := NewRequested()
	q1, changed := q.With(resourcev3.ListenerType, []string{"a.mesh", "a.mesh"})
	if !changed || q1.Len() != 1 || q.Len() != 0 {
		t.Fatalf("first name: changed %v, len %d (old %d)", changed, q1.Len(), q.Len())
	}
	if q2, changed := q1.With(resourcev3.ListenerType, []string{"a.mesh"}); changed || q2 != q1 {
		t.Fatal("an ACK repeating the names changed the Requested")
	}
	if _, changed := q1.With(resourcev3.SecretType, []string{"x"}); changed {
		t.Fatal("secret names are not tracked")
	}
	if q2, changed := q1.With(resourcev3.RouteType, nil); changed || q2 != q1 {
		t.Fatal("an RDS request without names is not a wildcard")
	}
	if q2, changed := q1.With(resourcev3.ClusterType, nil); !changed || q2 != nil {
		t.Fatal("a CDS wildcard must give everything")
	}
	big := make([]string, MaxRequestedNames)
	for i := range big {
		big[i] = fmt.Sprint("s", i)
	}
	if q2, changed := q1.With(resourcev3.ClusterType, big); !changed || q2 != nil {
		t.Fatal("past MaxRequestedNames: must give everything")
	}
	if q2, _ := (*Requested)(nil).With(resourcev3.ListenerType, []string{"a"}); q2 != nil {
		t.Fatal("everything stays everything")
	}
}
