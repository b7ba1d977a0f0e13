package gui

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Readers are the in-memory views the GUI summarises. Every field is
// required.
type Readers struct {
	Meshes, Dataplanes, DataplaneInsights, Zones, ZoneInsights, ZoneIngresses, VIPs store.Reader

	// lists, when set (WithListCache), keeps each mesh's sorted dataplane
	// list until the dataplanes change.
	lists *listCache
}

func (r Readers) all() []store.Reader {
	return []store.Reader{r.Meshes, r.Dataplanes, r.DataplaneInsights, r.Zones, r.ZoneInsights, r.ZoneIngresses, r.VIPs}
}

// CertWarning is how close to expiry a certificate is listed as a problem.
const CertWarning = 24 * time.Hour

// Dataplane is one row of the dataplane list.
type Dataplane struct {
	Mesh string `json:"mesh"`
	Name string `json:"name"`
	// Zone owning the dataplane ("" standalone).
	Zone   string `json:"zone"`
	Status string `json:"status"`
	// Services are the weft.io/service values of its inbounds and gateway.
	Services []string          `json:"services"`
	Tags     map[string]string `json:"tags"`
	// Replica is the xds-server instance serving it, when online.
	Replica        string     `json:"replica,omitempty"`
	ConnectedSince *time.Time `json:"connectedSince,omitempty"`
	CertExpiry     *time.Time `json:"certExpiry,omitempty"`
	ProxyKind      string     `json:"proxyKind,omitempty"`
	// Nacks counts rejected configurations on its current stream;
	// LastError is the last rejection's reason.
	Nacks     uint64 `json:"nacks,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// DataplanePage is the answer of GET /gui/api/dataplanes.
type DataplanePage struct {
	// Total counts the dataplanes of the mesh (or all), Matched those
	// matching the filters; Items is the page of them from Offset.
	Total   int         `json:"total"`
	Matched int         `json:"matched"`
	Offset  int         `json:"offset"`
	Size    int         `json:"size"`
	Items   []Dataplane `json:"items"`
}

func ts(t interface{ AsTime() time.Time }, valid bool) *time.Time {
	if !valid {
		return nil
	}
	v := t.AsTime().UTC()
	return &v
}

// dataplaneRow describes one dataplane with its insight (nil: offline).
func dataplaneRow(dp, ins *resource.Resource) Dataplane {
	spec, _ := dp.Spec.(*meshv1.Dataplane)
	d := Dataplane{Mesh: dp.Meta.GetMesh(), Name: dp.Meta.GetName(), Zone: dp.Meta.GetOrigin(), Status: StatusOffline,
		Services: resource.DataplaneServices(spec), Tags: dataplaneTags(spec)}
	if ins == nil {
		return d
	}
	di, _ := ins.Spec.(*meshv1.DataplaneInsight)
	if exp := di.GetMtls().GetCertificateExpirationTime(); exp != nil {
		d.CertExpiry = ts(exp, true)
	}
	if sub := current(di.GetSubscriptions()); sub != nil {
		d.Status, d.Replica, d.ProxyKind = StatusOnline, sub.GetControlPlaneInstanceId(), sub.GetProxyKind()
		d.ConnectedSince = ts(sub.GetConnectTime(), sub.GetConnectTime() != nil)
		for _, url := range sortedKeys(sub.GetTypes()) {
			st := sub.GetTypes()[url]
			d.Nacks += st.GetNacks()
			if st.GetLastError() != "" {
				d.LastError = st.GetLastError()
			}
		}
	}
	return d
}

// current is the connected subscription of an insight (the newest one
// without a disconnect time), nil when none is.
func current(subs []*meshv1.DiscoverySubscription) *meshv1.DiscoverySubscription {
	var best *meshv1.DiscoverySubscription
	for _, s := range subs {
		if s.GetDisconnectTime() != nil {
			continue
		}
		if best == nil || s.GetConnectTime().AsTime().After(best.GetConnectTime().AsTime()) {
			best = s
		}
	}
	return best
}

// dataplaneTags merges the tags of every inbound and the gateway.
func dataplaneTags(spec *meshv1.Dataplane) map[string]string {
	tags := map[string]string{}
	for _, in := range spec.GetNetworking().GetInbound() {
		for k, v := range in.GetTags() {
			tags[k] = v
		}
	}
	for k, v := range spec.GetNetworking().GetGateway().GetTags() {
		tags[k] = v
	}
	return tags
}

// hasTags reports whether spec has every tag of want ("*" any value) on
// one of its inbounds or its gateway.
func hasTags(spec *meshv1.Dataplane, want map[string]string) bool {
	if len(want) == 0 {
		return true
	}
	match := func(tags map[string]string) bool {
		for k, v := range want {
			got, ok := tags[k]
			if !ok || (v != "*" && got != v) {
				return false
			}
		}
		return true
	}
	for _, in := range spec.GetNetworking().GetInbound() {
		if match(in.GetTags()) {
			return true
		}
	}
	return match(spec.GetNetworking().GetGateway().GetTags())
}

// Dataplanes answers a query from the readers.
func (r Readers) DataplanesPage(q DataplaneQuery) DataplanePage {
	all := r.dataplanes(q.Mesh)
	page := DataplanePage{Total: len(all), Offset: q.Offset, Size: q.Size, Items: []Dataplane{}}
	for _, dp := range all {
		if q.Name != "" && !strings.Contains(dp.Meta.GetName(), q.Name) {
			continue
		}
		if q.Zone != "" && dp.Meta.GetOrigin() != q.Zone {
			continue
		}
		spec, _ := dp.Spec.(*meshv1.Dataplane)
		if !hasTags(spec, q.Tags) {
			continue
		}
		ins, _ := r.DataplaneInsights.Get(dp.Meta.GetMesh(), dp.Meta.GetName())
		if q.Status != "" {
			online := ins != nil && current(ins.Spec.(*meshv1.DataplaneInsight).GetSubscriptions()) != nil
			if online != (q.Status == StatusOnline) {
				continue
			}
		}
		if page.Matched >= q.Offset && len(page.Items) < q.Size {
			page.Items = append(page.Items, dataplaneRow(dp, ins))
		}
		page.Matched++
	}
	return page
}

// Dataplane returns one dataplane's row.
func (r Readers) Dataplane(mesh, name string) (Dataplane, bool) {
	dp, ok := r.Dataplanes.Get(mesh, name)
	if !ok {
		return Dataplane{}, false
	}
	ins, _ := r.DataplaneInsights.Get(mesh, name)
	return dataplaneRow(dp, ins), true
}

// Counts are online/offline totals.
type Counts struct {
	Total   int `json:"total"`
	Online  int `json:"online"`
	Offline int `json:"offline"`
}

func (c *Counts) add(online bool) {
	c.Total++
	if online {
		c.Online++
	} else {
		c.Offline++
	}
}

// MeshSummary is one mesh on the overview.
type MeshSummary struct {
	Name       string `json:"name"`
	MTLS       string `json:"mtls"`
	Dataplanes Counts `json:"dataplanes"`
	Services   int    `json:"services"`
}

// Zone is one zone: its sync stream to global.
type Zone struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	Online  bool   `json:"online"`
	// Reason says why an offline zone is offline.
	Reason         string     `json:"reason,omitempty"`
	ConnectedSince *time.Time `json:"connectedSince,omitempty"`
	LastSync       *time.Time `json:"lastSync,omitempty"`
	GlobalReplica  string     `json:"globalReplica,omitempty"`
	// Dataplanes and Ingresses count the resources the zone owns here.
	Dataplanes int    `json:"dataplanes"`
	Ingresses  int    `json:"ingresses"`
	Nacks      uint64 `json:"nacks,omitempty"`
	LastError  string `json:"lastError,omitempty"`
}

// Ingress is one zone ingress.
type Ingress struct {
	Name     string           `json:"name"`
	Zone     string           `json:"zone"`
	Address  string           `json:"address"`
	Services []IngressService `json:"services"`
}

// IngressService is one service an ingress offers.
type IngressService struct {
	Mesh      string            `json:"mesh"`
	Tags      map[string]string `json:"tags"`
	Instances uint32            `json:"instances"`
}

// Problem is one thing an operator should look at, most urgent first.
type Problem struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	// Link is the GUI route of the resource concerned.
	Link string `json:"link"`
}

// Overview is the answer of GET /gui/api/overview.
type Overview struct {
	Meshes     []MeshSummary `json:"meshes"`
	Zones      Counts        `json:"zones"`
	Dataplanes Counts        `json:"dataplanes"`
	Ingresses  int           `json:"ingresses"`
	Problems   []Problem     `json:"problems"`
	// ProblemsTruncated counts problems left out past MaxProblems.
	ProblemsTruncated int `json:"problemsTruncated,omitempty"`
	// CAs are the meshes' CA backends with their roots' expiry, problems
	// first (see sortCAs); at most MaxCAs.
	CAs []MeshCA `json:"cas"`
}

// MaxCAs caps the CA backends the overview lists.
const MaxCAs = 100

// MaxProblems caps the problems the overview lists.
const MaxProblems = 50

// Overview summarises everything, at now.
func (r Readers) Overview(now time.Time) Overview { return r.OverviewWithCAs(now, nil) }

// OverviewWithCAs is Overview with every mesh's CA expiry read by expiry
// (nil: none): expired and expiring CAs are problems after zones' and
// NACKs, before dataplane certificates.
func (r Readers) OverviewWithCAs(now time.Time, expiry CAExpiryFunc) Overview {
	o := Overview{Meshes: []MeshSummary{}, Problems: []Problem{}, CAs: []MeshCA{}}
	var problems []Problem
	for _, z := range r.ZoneList() {
		o.Zones.add(z.Online)
		if !z.Online {
			problems = append(problems, Problem{Kind: "zone offline", Message: fmt.Sprintf("zone %s is offline: %s", z.Name, z.Reason), Link: "#/zones/" + z.Name})
		}
		if z.Nacks > 0 {
			problems = append(problems, Problem{Kind: "zone NACK", Message: fmt.Sprintf("zone %s rejected %d changes: %s", z.Name, z.Nacks, z.LastError), Link: "#/zones/" + z.Name})
		}
	}
	var later []Problem
	for _, m := range r.Meshes.List("") {
		spec, _ := m.Spec.(*meshv1.Mesh)
		ms := MeshSummary{Name: m.Meta.GetName(), MTLS: spec.GetMtls().GetEnabledBackend()}
		if expiry != nil && len(spec.GetMtls().GetBackends()) > 0 {
			for _, e := range expiry(ms.Name, spec) {
				o.CAs = append(o.CAs, MeshCA{Mesh: ms.Name, BackendExpiry: e, State: caState(e, now)})
			}
		}
		services := map[string]bool{}
		for _, dp := range r.dataplanes(ms.Name) {
			// The full row (maps, slices, times) only for a dataplane with
			// a problem: with 10,000 dataplanes the overview stays cheap.
			ins, _ := r.DataplaneInsights.Get(ms.Name, dp.Meta.GetName())
			var sub *meshv1.DiscoverySubscription
			var di *meshv1.DataplaneInsight
			if ins != nil {
				di, _ = ins.Spec.(*meshv1.DataplaneInsight)
				sub = current(di.GetSubscriptions())
			}
			ms.Dataplanes.add(sub != nil)
			spec, _ := dp.Spec.(*meshv1.Dataplane)
			for _, in := range spec.GetNetworking().GetInbound() {
				if s := in.GetTags()[resource.ServiceTag]; s != "" {
					services[s] = true
				}
			}
			if s := spec.GetNetworking().GetGateway().GetTags()[resource.ServiceTag]; s != "" {
				services[s] = true
			}
			if sub == nil {
				continue
			}
			nacked := false
			for _, st := range sub.GetTypes() {
				nacked = nacked || st.GetNacks() > 0
			}
			exp := di.GetMtls().GetCertificateExpirationTime()
			expiring := exp != nil && exp.AsTime().Sub(now) < CertWarning
			if !nacked && !expiring {
				continue
			}
			row := dataplaneRow(dp, ins)
			link := "#/meshes/" + row.Mesh + "/dataplanes/" + row.Name
			if row.Nacks > 0 {
				problems = append(problems, Problem{Kind: "NACK", Message: fmt.Sprintf("dataplane %s/%s rejected its configuration: %s", row.Mesh, row.Name, row.LastError), Link: link})
			}
			if row.CertExpiry != nil && row.Status == StatusOnline && row.CertExpiry.Sub(now) < CertWarning {
				later = append(later, Problem{Kind: "certificate expiry", Message: fmt.Sprintf("the certificate of dataplane %s/%s expires %s", row.Mesh, row.Name, row.CertExpiry.Format(time.RFC3339)), Link: link})
			}
		}
		ms.Services = len(services)
		o.Dataplanes.Total += ms.Dataplanes.Total
		o.Dataplanes.Online += ms.Dataplanes.Online
		o.Dataplanes.Offline += ms.Dataplanes.Offline
		o.Meshes = append(o.Meshes, ms)
	}
	o.Ingresses = r.ZoneIngresses.Len()
	sortCAs(o.CAs)
	for _, c := range o.CAs {
		if p := caProblem(c); p != nil {
			problems = append(problems, *p)
		}
	}
	if len(o.CAs) > MaxCAs {
		o.CAs = o.CAs[:MaxCAs]
	}
	problems = append(problems, later...)
	if len(problems) > MaxProblems {
		o.ProblemsTruncated = len(problems) - MaxProblems
		problems = problems[:MaxProblems]
	}
	o.Problems = append(o.Problems, problems...)
	return o
}

// ZoneList describes every zone known here: the Zone resources, plus
// zones seen only through their insight or their resources.
func (r Readers) ZoneList() []Zone {
	byName := map[string]*Zone{}
	get := func(name string) *Zone {
		if z := byName[name]; z != nil {
			return z
		}
		z := &Zone{Name: name, Enabled: true, Reason: "it has never connected"}
		byName[name] = z
		return z
	}
	for _, zr := range r.Zones.List("") {
		z := get(zr.Meta.GetName())
		if e := zr.Spec.(*meshv1.Zone).GetEnabled(); e != nil && !e.GetValue() {
			z.Enabled, z.Reason = false, "it is disabled"
		}
	}
	for _, zi := range r.ZoneInsights.List("") {
		z := get(zi.Meta.GetName())
		subs := zi.Spec.(*meshv1.ZoneInsight).GetSubscriptions()
		var last *meshv1.ZoneInsight_Subscription
		for _, s := range subs {
			if last == nil || s.GetConnectTime().AsTime().After(last.GetConnectTime().AsTime()) {
				last = s
			}
		}
		if last == nil {
			continue
		}
		if last.GetDisconnectTime() == nil {
			z.Online, z.Reason = true, ""
			z.ConnectedSince = ts(last.GetConnectTime(), last.GetConnectTime() != nil)
			z.GlobalReplica = last.GetGlobalInstanceId()
		} else if z.Enabled {
			z.Reason = "disconnected at " + last.GetDisconnectTime().AsTime().UTC().Format(time.RFC3339)
		}
		for _, url := range sortedKeys(last.GetTypes()) {
			st := last.GetTypes()[url]
			z.Nacks += st.GetNacks()
			if st.GetLastError() != "" {
				z.LastError = st.GetLastError()
			}
			if lu := st.GetLastUpdateTime(); lu != nil && (z.LastSync == nil || lu.AsTime().After(*z.LastSync)) {
				z.LastSync = ts(lu, true)
			}
		}
	}
	for _, dp := range r.dataplanes("") {
		if o := dp.Meta.GetOrigin(); o != "" && o != "global" {
			if z := byName[o]; z != nil {
				z.Dataplanes++
			}
		}
	}
	for _, in := range r.ZoneIngresses.List("") {
		zone := in.Spec.(*meshv1.ZoneIngress).GetZone()
		if z := byName[zone]; z != nil {
			z.Ingresses++
		}
	}
	out := make([]Zone, 0, len(byName))
	for _, name := range sortedKeys(byName) {
		out = append(out, *byName[name])
	}
	return out
}

// IngressList describes every zone ingress.
func (r Readers) IngressList() []Ingress {
	out := []Ingress{}
	for _, in := range r.ZoneIngresses.List("") {
		spec := in.Spec.(*meshv1.ZoneIngress)
		n := spec.GetNetworking()
		addr, port := n.GetAdvertisedAddress(), n.GetAdvertisedPort()
		if addr == "" {
			addr, port = n.GetAddress(), n.GetPort()
		}
		ing := Ingress{Name: in.Meta.GetName(), Zone: spec.GetZone(), Address: fmt.Sprintf("%s:%d", addr, port), Services: []IngressService{}}
		for _, s := range spec.GetAvailableServices() {
			ing.Services = append(ing.Services, IngressService{Mesh: s.GetMesh(), Tags: s.GetTags(), Instances: s.GetInstances()})
		}
		out = append(out, ing)
	}
	return out
}

// Service is one service of a mesh.
type Service struct {
	Name string `json:"name"`
	VIP  string `json:"vip,omitempty"`
	// Zones counts instances per zone ("" standalone/local).
	Zones   map[string]ServiceZone `json:"zones"`
	Healthy int                    `json:"healthy"`
	Total   int                    `json:"total"`
}

// ServiceZone is a service's instances in one zone.
type ServiceZone struct {
	Online  int `json:"online"`
	Offline int `json:"offline"`
}

// Services lists a mesh's services: one per weft.io/service of its
// dataplanes' inbounds (healthy: online with a ready inbound).
func (r Readers) Services(mesh string) []Service {
	byName := map[string]*Service{}
	for _, dp := range r.dataplanes(mesh) {
		ins, _ := r.DataplaneInsights.Get(mesh, dp.Meta.GetName())
		online := ins != nil && current(ins.Spec.(*meshv1.DataplaneInsight).GetSubscriptions()) != nil
		for _, in := range dp.Spec.(*meshv1.Dataplane).GetNetworking().GetInbound() {
			name := in.GetTags()[resource.ServiceTag]
			if name == "" {
				continue
			}
			s := byName[name]
			if s == nil {
				s = &Service{Name: name, Zones: map[string]ServiceZone{}}
				if vip, ok := r.VIPs.Get(mesh, name); ok {
					s.VIP = vip.Spec.(*meshv1.VirtualIP).GetIp()
				}
				byName[name] = s
			}
			z := s.Zones[dp.Meta.GetOrigin()]
			s.Total++
			if online {
				z.Online++
				if in.GetHealth() == nil || in.GetHealth().GetReady() {
					s.Healthy++
				}
			} else {
				z.Offline++
			}
			s.Zones[dp.Meta.GetOrigin()] = z
		}
	}
	out := make([]Service, 0, len(byName))
	for _, name := range sortedKeys(byName) {
		out = append(out, *byName[name])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
