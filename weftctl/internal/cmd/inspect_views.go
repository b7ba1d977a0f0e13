package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/weftctl/internal/client"
)

// formatWide is a table with more columns (inspect meshes and services).
const formatWide = "wide"

const inspectMeshesUsage = `Usage:
  weftctl inspect meshes [-o table|wide]

Shows every mesh with its dataplanes online/total, its policies (by type
with -o wide), its mTLS backend and when the enabled backend's root
certificate expires (CA-EXPIRY; "-" with mTLS off, "?" when unreadable;
-o wide lists every backend as name(type):expiry under CAS).`

const inspectServicesUsage = `Usage:
  weftctl inspect services [-m MESH] [-o table|wide]

Shows every service (weft.io/service value of an inbound or gateway) with
its instances online/total, per zone, and its virtual IP (the address
<service>.mesh resolves to). -o wide adds the dataplanes.`

// parseInspectTable parses the flags of an inspect view that prints tables
// only (table or wide).
func parseInspectTable(a *App, name, usage string, args []string, withMesh bool) (mesh, out string, err error) {
	fs := a.FlagSet("inspect " + name)
	var m *string
	if withMesh {
		m = meshFlag(fs)
	}
	o := new(string)
	fs.StringVar(o, "o", formatTable, "output format: table or wide")
	fs.StringVar(o, "output", formatTable, "output format: table or wide (same as -o)")
	pos, err := a.Parse(fs, usage, args)
	if err != nil {
		return "", "", err
	}
	if len(pos) > 0 {
		return "", "", usageErrorf("inspect %s takes no arguments (got %q)", name, pos[0])
	}
	if *o != formatTable && *o != formatWide {
		return "", "", usageErrorf("unknown output format %q: use table or wide", *o)
	}
	if m != nil {
		mesh = *m
	}
	return mesh, *o, nil
}

// policyTypes are the mesh-scoped types users write besides Dataplanes and
// Secrets: the policies.
func policyTypes() []*resource.Type {
	var out []*resource.Type
	for _, t := range resource.Types() {
		if t.MeshScoped() && !t.System && !t.Sensitive && t != resource.DataplaneType {
			out = append(out, t)
		}
	}
	return out
}

// meshNames lists the meshes, or just the one given.
func meshNames(ctx context.Context, c *client.Client, mesh string) ([]string, []*client.Object, error) {
	ms, err := c.ListAll(ctx, resource.MeshType, "", 0)
	if err != nil {
		return nil, nil, fmt.Errorf("list meshes: %w", err)
	}
	var names []string
	var objs []*client.Object
	for _, m := range ms {
		if mesh == "" || m.Meta.GetName() == mesh {
			names = append(names, m.Meta.GetName())
			objs = append(objs, m)
		}
	}
	if mesh != "" && len(names) == 0 {
		return nil, nil, fmt.Errorf("mesh %q not found", mesh)
	}
	return names, objs, nil
}

// online reports whether a dataplane's latest xDS subscription is live.
func online(it *client.InsightObject) bool {
	ins := &meshv1.DataplaneInsight{}
	if client.DecodeInsight(it.Insight, ins) != nil {
		return false
	}
	return resource.DataplaneOnline(ins)
}

func runInspectMeshes(ctx context.Context, a *App, args []string) error {
	_, out, err := parseInspectTable(a, "meshes", inspectMeshesUsage, args, false)
	if err != nil {
		return err
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	_, meshes, err := meshNames(ctx, c, "")
	if err != nil {
		return err
	}
	headers := []string{"NAME", "DATAPLANES", "POLICIES", "MTLS", "CA-EXPIRY"}
	if out == formatWide {
		headers = append(headers, "POLICIES-BY-TYPE", "CAS")
	}
	tb := newTable(a.Stdout, headers...)
	for _, m := range meshes {
		name := m.Meta.GetName()
		dps, err := c.ListDataplaneInsights(ctx, name, 0)
		if err != nil {
			return fmt.Errorf("inspect mesh %s: %w", name, err)
		}
		up := 0
		for _, it := range dps {
			if online(it) {
				up++
			}
		}
		total := 0
		var byType []string
		for _, t := range policyTypes() {
			ps, err := c.ListAll(ctx, t, name, 0)
			if err != nil {
				return fmt.Errorf("inspect mesh %s: list %s: %w", name, t.Collection, err)
			}
			if len(ps) > 0 {
				total += len(ps)
				byType = append(byType, t.Collection+":"+strconv.Itoa(len(ps)))
			}
		}
		mtls := meshColumnsMTLS(m.Spec)
		expiry, all := meshCAColumns(ctx, c, name, m.Spec)
		row := []string{name, fmt.Sprintf("%d/%d", up, len(dps)), strconv.Itoa(total), mtls, expiry}
		if out == formatWide {
			row = append(row, strings.Join(byType, ","), all)
		}
		tb.row(row...)
	}
	return tb.flush()
}

// meshCAColumns are the CA-EXPIRY column (the enabled backend's root
// expiry) and the wide CAS column (every backend) of a mesh; "-" without
// backends, "?" for what could not be read.
func meshCAColumns(ctx context.Context, c *client.Client, mesh string, spec any) (expiry, all string) {
	m, _ := spec.(*meshv1.Mesh)
	if len(m.GetMtls().GetBackends()) == 0 {
		return "-", "-"
	}
	backends, err := c.MeshCA(ctx, mesh)
	if err != nil {
		return "?", "?"
	}
	expiry = "-"
	var cells []string
	for _, b := range backends {
		at := "?"
		if b.NotAfter != nil {
			at = b.NotAfter.UTC().Format(time.RFC3339)
		}
		if b.Enabled {
			expiry = at
		}
		cells = append(cells, b.Name+"("+b.Type+"):"+at)
	}
	return expiry, strings.Join(cells, ",")
}

// meshColumnsMTLS is the MTLS column of `get meshes`.
func meshColumnsMTLS(spec any) string {
	return specColumns(resource.MeshType).cells(spec)[0]
}

// serviceView is one row of `inspect services`.
type serviceView struct {
	mesh, name    string
	online, total int
	zones         map[string]int // zone → instances
	dataplanes    []string
}

func runInspectServices(ctx context.Context, a *App, args []string) error {
	mesh, out, err := parseInspectTable(a, "services", inspectServicesUsage, args, true)
	if err != nil {
		return err
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	meshes, _, err := meshNames(ctx, c, mesh)
	if err != nil {
		return err
	}
	headers := []string{"MESH", "SERVICE", "INSTANCES", "ZONES", "VIP"}
	if out == formatWide {
		headers = append(headers, "DATAPLANES")
	}
	tb := newTable(a.Stdout, headers...)
	for _, m := range meshes {
		dps, err := c.ListDataplaneInsights(ctx, m, 0)
		if err != nil {
			return fmt.Errorf("inspect services in mesh %s: %w", m, err)
		}
		vips, err := c.ListAll(ctx, resource.VirtualIPType, m, 0)
		if err != nil {
			return fmt.Errorf("inspect services in mesh %s: list vips: %w", m, err)
		}
		vipOf := map[string]string{}
		for _, v := range vips {
			if vip, ok := v.Spec.(*meshv1.VirtualIP); ok && vip.GetReleasedTime() == nil {
				vipOf[vip.GetService()] = vip.GetIp()
			}
		}
		views := map[string]*serviceView{}
		for _, it := range dps {
			dp, ok := it.Spec.(*meshv1.Dataplane)
			if !ok {
				continue
			}
			zone := dataplaneZone(dp, it.Meta.GetOrigin())
			for _, svc := range dataplaneServices(dp) {
				v := views[svc]
				if v == nil {
					v = &serviceView{mesh: m, name: svc, zones: map[string]int{}}
					views[svc] = v
				}
				v.total++
				if online(it) {
					v.online++
				}
				v.zones[zone]++
				v.dataplanes = append(v.dataplanes, it.Meta.GetName())
			}
		}
		names := make([]string, 0, len(views))
		for n := range views {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			v := views[n]
			zones := make([]string, 0, len(v.zones))
			for z, k := range v.zones {
				zones = append(zones, z+":"+strconv.Itoa(k))
			}
			sort.Strings(zones)
			row := []string{v.mesh, v.name, fmt.Sprintf("%d/%d", v.online, v.total), strings.Join(zones, ","), vipOf[n]}
			if out == formatWide {
				slices.Sort(v.dataplanes)
				row = append(row, strings.Join(v.dataplanes, ","))
			}
			tb.row(row...)
		}
	}
	return tb.flush()
}

// dataplaneZone is the zone a dataplane runs in: its weft.io/zone tag, else
// the zone it was synced from, else "local" (standalone, or this zone).
func dataplaneZone(dp *meshv1.Dataplane, origin string) string {
	for _, in := range dp.GetNetworking().GetInbound() {
		if z := in.GetTags()[resource.ZoneTag]; z != "" {
			return z
		}
	}
	if origin != "" && origin != "global" {
		return origin
	}
	return "local"
}

const inspectGlobalUsage = `Usage:
  weftctl inspect global [-o table|yaml|json]

On a zone control plane: its link to global, from GET /global-insight —
STATE (online or offline), SINCE, GLOBAL-INSTANCE and, when offline, the
REASON (never connected, refused since T with global's answer, e.g. an
expired zone token, or disconnected since T).`

func runInspectGlobal(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("inspect global")
	out := outputFlag(fs)
	pos, err := a.Parse(fs, inspectGlobalUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("inspect global takes no arguments (got %q)", pos[0])
	}
	if err := checkFormat(*out); err != nil {
		return err
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	gi, err := c.GlobalInsight(ctx)
	if err != nil {
		return fmt.Errorf("inspect global: %w", err)
	}
	if *out != formatTable {
		js, err := json.Marshal(gi)
		if err != nil {
			return err
		}
		if *out == formatJSON {
			return writeJSON(a.Stdout, js)
		}
		return writeYAML(a.Stdout, js)
	}
	ins := &meshv1.ZoneInsight{}
	_ = client.DecodeInsight(gi.Insight, ins)
	var last *meshv1.ZoneInsight_Subscription
	for _, s := range ins.GetSubscriptions() {
		last = s // the zone appends its streams in order
	}
	when := ""
	switch {
	case last.GetDisconnectTime() != nil:
		when = since(a.Now(), last.GetDisconnectTime().AsTime())
	case last.GetConnectTime() != nil:
		when = since(a.Now(), last.GetConnectTime().AsTime())
	}
	tb := newTable(a.Stdout, "ZONE", "STATE", "SINCE", "GLOBAL-INSTANCE", "REASON")
	tb.row(gi.Zone, gi.State, when, last.GetGlobalInstanceId(), gi.Reason)
	return tb.flush()
}
