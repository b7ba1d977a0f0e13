package policy_test

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/policy"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

const svc = resource.ServiceTag

func tags(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func sels(ms ...map[string]string) []*meshv1.Selector {
	var out []*meshv1.Selector
	for _, m := range ms {
		out = append(out, &meshv1.Selector{Match: m})
	}
	return out
}

func retry(name string, src, dst map[string]string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "Retry", Mesh: "m", Name: name},
		Spec: &meshv1.Retry{Sources: sels(src), Destinations: sels(dst)}}
}

func timeout(name string, src, dst map[string]string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "Timeout", Mesh: "m", Name: name},
		Spec: &meshv1.Timeout{Sources: sels(src), Destinations: sels(dst)}}
}

func trace(name string, sel ...map[string]string) *resource.Resource {
	return &resource.Resource{Meta: &meshv1.Meta{Type: "TrafficTrace", Mesh: "m", Name: name},
		Spec: &meshv1.TrafficTrace{Selectors: sels(sel...)}}
}

func nameOf(r *resource.Resource) string {
	if r == nil {
		return ""
	}
	return r.Meta.GetName()
}

func names(cs []resource.Candidate) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Resource.Meta.GetName())
	}
	return strings.Join(out, ",")
}

func dataplane(inbounds ...map[string]string) *meshv1.Dataplane {
	dp := &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{}}
	for _, t := range inbounds {
		dp.Networking.Inbound = append(dp.Networking.Inbound, &meshv1.Dataplane_Networking_Inbound{Tags: t})
	}
	return dp
}

// TestConnectionSelection pins which Retry wins for a caller (all its
// inbounds count) and a destination service: the most specific sum of the
// best source and destination selectors, ties by name; both sides must
// match.
func TestConnectionSelection(t *testing.T) {
	all := tags(svc, "*")
	set := policy.NewSet([]*resource.Resource{
		retry("z-all", all, all),
		retry("a-all", all, all), // ties with z-all: the name decides
		retry("web-any", tags(svc, "web"), all),
		retry("any-api", all, tags(svc, "api")),
		retry("web-api", tags(svc, "web"), tags(svc, "api")),
		retry("web-v2-api", tags(svc, "web", "version", "v2"), tags(svc, "api")),
		retry("db-only", tags(svc, "db"), tags(svc, "db")),
		timeout("t-web-api", tags(svc, "web"), tags(svc, "api")),
	})
	for _, tc := range []struct {
		name    string
		dp      *meshv1.Dataplane
		dest    string
		ranked  string
		best    string
		timeout string
	}{
		{"exact both sides", dataplane(tags(svc, "web", "version", "v1")), "api", "web-api,any-api,web-any,a-all,z-all", "web-api", "t-web-api"},
		{"an extra source tag is more specific", dataplane(tags(svc, "web", "version", "v2")), "api", "web-v2-api,web-api,any-api,web-any,a-all,z-all", "web-v2-api", "t-web-api"},
		{"wildcards tie: name order", dataplane(tags(svc, "other")), "other", "a-all,z-all", "a-all", ""},
		{"a specific source beats wildcards", dataplane(tags(svc, "web")), "cache", "web-any,a-all,z-all", "web-any", ""},
		{"any inbound of the caller counts", dataplane(tags(svc, "other"), tags(svc, "db")), "db", "db-only,a-all,z-all", "db-only", ""},
		{"a client without inbounds matches wildcards only", dataplane(), "api", "any-api,a-all,z-all", "any-api", ""},
	} {
		src := policy.SourceTags(tc.dp)
		if got := names(set.Ranked(resource.RetryType, src, policy.Destination(tc.dest))); got != tc.ranked {
			t.Errorf("%s: ranked %s, want %s", tc.name, got, tc.ranked)
		}
		o := set.Outbound(src, tc.dest)
		if got := nameOf(o.Retry); got != tc.best {
			t.Errorf("%s: best %s, want %s", tc.name, got, tc.best)
		}
		if b := set.Best(resource.RetryType, src, policy.Destination(tc.dest)); b != o.Retry {
			t.Errorf("%s: Best and Outbound disagree", tc.name)
		}
		if got := nameOf(o.Timeout); got != tc.timeout {
			t.Errorf("%s: timeout %q, want %q", tc.name, got, tc.timeout)
		}
		if o.Route != nil || o.FaultInjection != nil {
			t.Errorf("%s: types with no policies selected something", tc.name)
		}
	}
}

// TestDataplaneSelection: TrafficTrace/ProxyTemplate match through their
// selectors against any of the dataplane's tag sets.
func TestDataplaneSelection(t *testing.T) {
	set := policy.NewSet([]*resource.Resource{
		trace("all", tags(svc, "*")),
		trace("web", tags(svc, "web")),
		trace("web-v1", tags(svc, "web", "version", "v1"), tags(svc, "never")),
	})
	for _, tc := range []struct {
		dp   *meshv1.Dataplane
		want string
	}{
		{dataplane(tags(svc, "web", "version", "v1")), "web-v1,web,all"},
		{dataplane(tags(svc, "api")), "all"},
		{dataplane(tags(svc, "api"), tags(svc, "web")), "web,all"},
		{dataplane(), "all"},
	} {
		if got := names(set.Ranked(resource.TrafficTraceType, policy.SourceTags(tc.dp), nil)); got != tc.want {
			t.Errorf("%v: %s, want %s", policy.SourceTags(tc.dp), got, tc.want)
		}
	}
}

// TestKey: the key changes with the selection and is empty without one.
func TestKey(t *testing.T) {
	all := tags(svc, "*")
	a, b := retry("a", all, all), retry("b", tags(svc, "web"), all)
	set := policy.NewSet([]*resource.Resource{a, b})
	web := set.Outbound(policy.SourceTags(dataplane(tags(svc, "web"))), "api")
	api := set.Outbound(policy.SourceTags(dataplane(tags(svc, "api"))), "api")
	if web.Key() == api.Key() || web.Key() == "" || api.Key() == "" {
		t.Errorf("keys: %q %q", web.Key(), api.Key())
	}
	if k := policy.NewSet().Outbound(nil, "api").Key(); k != "" {
		t.Errorf("empty set key %q", k)
	}
	// Non-policies are ignored; Len counts by type.
	m := &resource.Resource{Meta: &meshv1.Meta{Type: "Mesh", Name: "m"}, Spec: &meshv1.Mesh{}}
	if n := policy.NewSet([]*resource.Resource{a, m}).Len(); n != 1 {
		t.Errorf("Len = %d", n)
	}
	if set.Len(resource.TimeoutType) != 0 || set.Len(resource.RetryType) != 2 {
		t.Error("Len by type")
	}
}
