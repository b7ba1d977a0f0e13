package gui_test

import (
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/api-server/internal/gui"
	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestOverviewListsCAsProblemsFirst: every mesh's CA backends are on the
// overview, expired and expiring first; those are problems after zones'
// and NACKs and before dataplane certificates; meshes without mTLS
// backends are not asked.
func TestOverviewListsCAsProblemsFirst(t *testing.T) {
	f := world(t)
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	withMTLS := func(name string, backends ...string) {
		m := resource.New(resource.MeshType, "", name)
		spec := &meshv1.Mesh{Mtls: &meshv1.Mesh_Mtls{EnabledBackend: backends[0]}}
		for _, b := range backends {
			spec.Mtls.Backends = append(spec.Mtls.Backends, &meshv1.CertificateAuthorityBackend{Name: b, Type: ca.TypeBuiltin})
		}
		m.Spec = spec
		f.meshes.Put(m)
	}
	withMTLS("a", "ok-ca", "unread-ca")
	withMTLS("b", "soon-ca")
	withMTLS("c", "gone-ca")
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	expiries := map[string]ca.BackendExpiry{
		"ok-ca":     {NotAfter: at(10 * 365 * 24 * time.Hour)},
		"unread-ca": {Error: "root not created yet by ca-service"},
		"soon-ca":   {NotAfter: at(7 * 24 * time.Hour)},
		"gone-ca":   {NotAfter: at(-time.Hour)},
	}
	var asked []string
	expiry := func(mesh string, m *meshv1.Mesh) []ca.BackendExpiry {
		asked = append(asked, mesh)
		var out []ca.BackendExpiry
		for _, b := range m.GetMtls().GetBackends() {
			e := expiries[b.GetName()]
			e.Name, e.Type, e.Enabled = b.GetName(), b.GetType(), b.GetName() == m.GetMtls().GetEnabledBackend()
			out = append(out, e)
		}
		return out
	}
	o := f.readers().OverviewWithCAs(now, expiry)
	if strings.Join(asked, ",") != "a,b,c" {
		t.Errorf("asked for meshes %v, want a,b,c (default has no mTLS backend)", asked)
	}
	var order []string
	for _, c := range o.CAs {
		order = append(order, c.Mesh+"/"+c.Name+":"+c.State)
	}
	if got, want := strings.Join(order, " "), "c/gone-ca:expired b/soon-ca:expiring a/unread-ca:unknown a/ok-ca:ok"; got != want {
		t.Errorf("CAs: %s, want %s", got, want)
	}
	var kinds []string
	for _, p := range o.Problems {
		kinds = append(kinds, p.Kind)
	}
	if got, want := strings.Join(kinds, ","), "zone offline,NACK,CA expired,CA expiry"; !strings.HasPrefix(got, want) {
		t.Errorf("problems %s, want them to start with %s", got, want)
	}
	if p := o.Problems[2]; !strings.Contains(p.Message, "gone-ca") || p.Link != "#/meshes/c" {
		t.Errorf("CA problem: %+v", p)
	}
	// Without an expiry reader nothing is listed.
	if o := f.readers().Overview(now); len(o.CAs) != 0 {
		t.Errorf("CAs without a reader: %+v", o.CAs)
	}
}

// TestListCacheFollowsChanges: the cached sorted lists are dropped when a
// dataplane is added or removed.
func TestListCacheFollowsChanges(t *testing.T) {
	f := world(t)
	r := f.readers().WithListCache()
	q, _ := gui.ParseDataplaneQuery("mesh=default&size=200")
	if p := r.DataplanesPage(q); p.Total != 31 || p.Items[0].Name != "backend-0" {
		t.Fatalf("first page: total %d, first %s", p.Total, p.Items[0].Name)
	}
	f.dps.Put(dataplane("default", "aaa-new", "zone-1", map[string]string{resource.ServiceTag: "new"}))
	if p := r.DataplanesPage(q); p.Total != 32 || p.Items[0].Name != "aaa-new" {
		t.Fatalf("after a put: total %d, first %s", p.Total, p.Items[0].Name)
	}
	if s := r.Services("default"); len(s) != 3 {
		t.Fatalf("services after a put: %+v", s)
	}
	f.dps.Delete("default", "aaa-new")
	if p := r.DataplanesPage(q); p.Total != 31 || p.Items[0].Name != "backend-0" {
		t.Fatalf("after a delete: total %d, first %s", p.Total, p.Items[0].Name)
	}
	if o := r.Overview(time.Now()); o.Dataplanes.Total != 31 {
		t.Fatalf("overview after a delete: %+v", o.Dataplanes)
	}
}
