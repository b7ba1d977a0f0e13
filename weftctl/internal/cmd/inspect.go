package cmd

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/weftctl/internal/client"
)

const inspectDataplanesUsage = `Usage:
  weftctl inspect dataplanes [-m MESH] [-o table|wide|yaml|json]
  weftctl inspect dataplane NAME --policies [-m MESH] [-o table|yaml|json]
  weftctl inspect dataplane NAME --config-dump [-m MESH] [-o json|yaml|table]

Shows every dataplane with its connection status: online or offline, since
when, which xds-server instance serves it, and when its certificate expires.
Without -m it goes through every mesh. With NAME and --policies it shows
the policies that apply to that dataplane (mesh "default" unless -m) and
in which role: destination, source, or selected. With NAME and
--config-dump it prints the xDS resources the xds-server serves that
dataplane (GET /meshes/{mesh}/dataplanes/{name}/xds): per type the version,
whether the proxy ACKed or NACKed it, and the resources as JSON, private
keys redacted (JSON unless -o; -o table summarises the types).`

const inspectZonesUsage = `Usage:
  weftctl inspect zones [-o table|yaml|json]

Shows every zone with its sync status: online or offline, since when,
which global and zone control-plane instances hold the stream, and why an
offline zone is offline (disabled on global, never connected, disconnected
since T).`

func inspectCommand() *Command {
	return &Command{Name: "inspect", Summary: "Show resources with their live status", Subcommands: []*Command{
		{Name: "dataplanes", Aliases: []string{"dataplane", "dp"}, Summary: "Dataplanes: online/offline, xds-server instance, certificate expiry", Run: watchable(runInspectDataplanes)},
		{Name: "zones", Aliases: []string{"zone"}, Summary: "Zones: online/offline, control-plane instances", Run: watchable(runInspectZones)},
		{Name: "meshes", Aliases: []string{"mesh"}, Summary: "Meshes: dataplanes online/total, policies, mTLS backend", Run: watchable(runInspectMeshes)},
		{Name: "services", Aliases: []string{"service", "svc"}, Summary: "Services: instances online/total per zone, virtual IP", Run: watchable(runInspectServices)},
		{Name: "global", Summary: "On a zone: its link to global (state, reason)", Run: watchable(runInspectGlobal)},
	}}
}

func runInspectDataplanes(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("inspect dataplanes")
	mesh := meshFlag(fs)
	out := outputFlag(fs)
	policies := fs.Bool("policies", false, "with NAME: the policies that apply to the dataplane")
	configDump := fs.Bool("config-dump", false, "with NAME: the xDS configuration the xds-server serves the dataplane")
	pos, err := a.Parse(fs, inspectDataplanesUsage, args)
	if err != nil {
		return err
	}
	if *policies && *configDump {
		return usageErrorf("--policies and --config-dump exclude each other")
	}
	if len(pos) == 1 && *policies {
		return inspectDataplanePolicies(ctx, a, *mesh, pos[0], *out)
	}
	if len(pos) == 1 && *configDump {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "o" || f.Name == "output" })
		if !explicit {
			*out = formatJSON
		}
		return inspectDataplaneConfigDump(ctx, a, *mesh, pos[0], *out)
	}
	if len(pos) > 0 || *policies || *configDump {
		return usageErrorf("inspect dataplanes takes NAME only with --policies or --config-dump (see 'weftctl inspect dataplanes --help')")
	}
	wide := *out == formatWide
	if wide {
		*out = formatTable
	}
	if err := checkFormat(*out); err != nil {
		return err
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	meshes := []string{*mesh}
	if *mesh == "" {
		ms, err := c.ListAll(ctx, resource.MeshType, "", 0)
		if err != nil {
			return fmt.Errorf("list meshes: %w", err)
		}
		meshes = meshes[:0]
		for _, m := range ms {
			meshes = append(meshes, m.Meta.GetName())
		}
	}
	var items []*client.InsightObject
	for _, m := range meshes {
		got, err := c.ListDataplaneInsights(ctx, m, 0)
		if err != nil {
			return fmt.Errorf("inspect dataplanes in mesh %s: %w", m, err)
		}
		items = append(items, got...)
	}
	if *out != formatTable {
		return writeInsightItems(a.Stdout, *out, items)
	}
	now := a.Now()
	headers := []string{"MESH", "NAME", "STATUS", "SINCE", "XDS-SERVER", "SERVICES", "CERT-EXPIRY", "CERT-BACKEND"}
	if wide {
		headers = append(headers, "ADDRESS", "ZONE", "CONFIG-ERROR")
	}
	tb := newTable(a.Stdout, headers...)
	for _, it := range items {
		ins := &meshv1.DataplaneInsight{}
		insErr := client.DecodeInsight(it.Insight, ins)
		st := subscriptionStatus(now, lastDataplaneSub(ins))
		services, address, zone := "", "", ""
		if dp, ok := it.Spec.(*meshv1.Dataplane); ok {
			services = strings.Join(dataplaneServices(dp), ",")
			address, zone = dp.GetNetworking().GetAddress(), dataplaneZone(dp, it.Meta.GetOrigin())
		}
		expiry := ""
		if t := ins.GetMtls().GetCertificateExpirationTime(); t != nil {
			expiry = until(now, t.AsTime())
		}
		status := st.status
		if insErr != nil {
			status = "unknown"
		}
		row := []string{it.Meta.GetMesh(), it.Meta.GetName(), status, st.since, st.instance, services, expiry,
			ins.GetMtls().GetIssuedBackend()}
		if wide {
			row = append(row, address, zone, latestGenerationError(ins))
		}
		tb.row(row...)
	}
	return tb.flush()
}

func runInspectZones(ctx context.Context, a *App, args []string) error {
	fs := a.FlagSet("inspect zones")
	out := outputFlag(fs)
	pos, err := a.Parse(fs, inspectZonesUsage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("inspect zones takes no arguments (got %q)", pos[0])
	}
	if err := checkFormat(*out); err != nil {
		return err
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	items, err := c.ListZoneInsights(ctx, 0)
	if err != nil {
		return fmt.Errorf("inspect zones: %w", err)
	}
	if *out != formatTable {
		return writeInsightItems(a.Stdout, *out, items)
	}
	now := a.Now()
	tb := newTable(a.Stdout, "NAME", "ENABLED", "STATUS", "SINCE", "GLOBAL-INSTANCE", "ZONE-INSTANCE", "REASON")
	for _, it := range items {
		ins := &meshv1.ZoneInsight{}
		insErr := client.DecodeInsight(it.Insight, ins)
		var last *meshv1.ZoneInsight_Subscription
		for _, s := range ins.GetSubscriptions() {
			if last == nil || laterSub(s.GetConnectTime(), last.GetConnectTime()) {
				last = s
			}
		}
		st := subscriptionStatus(now, sub{connect: last.GetConnectTime(), disconnect: last.GetDisconnectTime(), instance: last.GetGlobalInstanceId()})
		enabled := ""
		z, _ := it.Spec.(*meshv1.Zone)
		if z != nil {
			enabled = fmt.Sprint(z.GetEnabled() == nil || z.GetEnabled().GetValue())
		}
		// The server's state and reason; the same rule computed here for
		// servers that do not send them.
		var server struct{ State, Reason string }
		_ = json.Unmarshal(it.Item, &server)
		status, reason := server.State, server.Reason
		if status == "" {
			status, reason = resource.ZoneState(z, ins)
		}
		if insErr != nil {
			status, reason = "unknown", "the insight cannot be read: "+insErr.Error()
		}
		tb.row(it.Meta.GetName(), enabled, status, st.since, st.instance, last.GetZoneInstanceId(), reason)
	}
	return tb.flush()
}

// sub is the part of a subscription the status needs.
type sub struct {
	connect, disconnect *timestamppb.Timestamp
	instance            string
}

type subStatus struct {
	status   string // online or offline
	since    string // age of the last connect (online) or disconnect (offline)
	instance string // control-plane instance of the last subscription
}

// subscriptionStatus: online while the latest subscription has connected and
// not disconnected. Insights live under etcd leases, so a crashed
// xds-server's subscriptions disappear rather than stay "online".
func subscriptionStatus(now time.Time, s sub) subStatus {
	switch {
	case s.connect == nil:
		return subStatus{status: "offline"}
	case s.disconnect == nil:
		return subStatus{status: "online", since: since(now, s.connect.AsTime()), instance: s.instance}
	default:
		return subStatus{status: "offline", since: since(now, s.disconnect.AsTime()), instance: s.instance}
	}
}

// latestGenerationError is why the xds-server of the latest subscription
// cannot generate the dataplane's configuration (the proxy keeps its
// previous one), cut to fit a table; "" when there is none.
func latestGenerationError(ins *meshv1.DataplaneInsight) string {
	var last *meshv1.DiscoverySubscription
	for _, s := range ins.GetSubscriptions() {
		if last == nil || laterSub(s.GetConnectTime(), last.GetConnectTime()) {
			last = s
		}
	}
	msg := last.GetGenerationError()
	if r := []rune(msg); len(r) > 80 {
		msg = string(r[:79]) + "…"
	}
	return msg
}

func lastDataplaneSub(ins *meshv1.DataplaneInsight) sub {
	var last *meshv1.DiscoverySubscription
	for _, s := range ins.GetSubscriptions() {
		if last == nil || laterSub(s.GetConnectTime(), last.GetConnectTime()) {
			last = s
		}
	}
	return sub{connect: last.GetConnectTime(), disconnect: last.GetDisconnectTime(), instance: last.GetControlPlaneInstanceId()}
}

// laterSub orders subscriptions by connect time; on a tie the later in the
// list wins, as writers append.
func laterSub(a, b *timestamppb.Timestamp) bool {
	if b == nil {
		return true
	}
	if a == nil {
		return false
	}
	return !a.AsTime().Before(b.AsTime())
}

// writeInsightItems prints items as the server sent them, insight included.
func writeInsightItems(w io.Writer, format string, items []*client.InsightObject) error {
	objs := make([]*client.Object, len(items))
	for i, it := range items {
		objs[i] = &client.Object{Resource: it.Resource, Raw: json.RawMessage(it.Item)}
	}
	return writeObjects(w, format, objs, false)
}

// inspectDataplanePolicies prints the policies that apply to one dataplane.
func inspectDataplanePolicies(ctx context.Context, a *App, mesh, name, out string) error {
	if err := checkFormat(out); err != nil {
		return err
	}
	if mesh == "" {
		mesh = DefaultMesh
	}
	c, err := a.Client()
	if err != nil {
		return err
	}
	ps, err := c.DataplanePolicies(ctx, mesh, name)
	if err != nil {
		return fmt.Errorf("inspect dataplane %s/%s --policies: %w", mesh, name, err)
	}
	switch out {
	case formatJSON, formatYAML:
		if ps == nil {
			ps = []client.MatchedPolicy{}
		}
		js, err := json.Marshal(struct {
			Mesh      string                 `json:"mesh"`
			Dataplane string                 `json:"dataplane"`
			Policies  []client.MatchedPolicy `json:"policies"`
		}{mesh, name, ps})
		if err != nil {
			return err
		}
		if out == formatJSON {
			return writeJSON(a.Stdout, js)
		}
		return writeYAML(a.Stdout, js)
	}
	tb := newTable(a.Stdout, "TYPE", "NAME", "ROLE", "SERVICE")
	for _, p := range ps {
		tb.row(p.Type, p.Name, p.Role, p.Service)
	}
	return tb.flush()
}
