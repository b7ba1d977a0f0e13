package cmd

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/weftctl/internal/client"
)

// columns are a type's extra table columns between NAME and AGE.
type columns struct {
	headers []string
	cells   func(spec any) []string
}

// specColumns returns the type's useful spec columns. Cells see the decoded
// spec, or nil when this client could not decode it (then they print "-").
func specColumns(t *resource.Type) columns {
	switch t {
	case resource.MeshType:
		return columns{[]string{"MTLS", "METRICS", "LOGGING", "TRACING"}, func(s any) []string {
			m, _ := s.(*meshv1.Mesh)
			mtls := "off"
			if b := m.GetMtls().GetEnabledBackend(); b != "" {
				mtls = b
				if mode := m.GetMtls().GetMode(); mode != "" {
					mtls += "/" + mode
				}
			}
			return []string{mtls, offIfEmpty(m.GetMetrics().GetEnabledBackend()),
				offIfEmpty(m.GetLogging().GetDefaultBackend()), offIfEmpty(m.GetTracing().GetDefaultBackend())}
		}}
	case resource.DataplaneType:
		return columns{[]string{"ADDRESS", "SERVICES", "INBOUNDS", "OUTBOUNDS"}, func(s any) []string {
			dp, _ := s.(*meshv1.Dataplane)
			if dp == nil {
				return []string{"", "", "", ""}
			}
			return []string{dp.GetNetworking().GetAddress(), strings.Join(dataplaneServices(dp), ","),
				strconv.Itoa(len(dp.GetNetworking().GetInbound())), strconv.Itoa(len(dp.GetNetworking().GetOutbound()))}
		}}
	case resource.ZoneIngressType:
		return columns{[]string{"ZONE", "ADDRESS", "ADVERTISED", "SERVICES"}, func(s any) []string {
			zi, _ := s.(*meshv1.ZoneIngress)
			if zi == nil {
				return []string{"", "", "", ""}
			}
			n := zi.GetNetworking()
			return []string{zi.GetZone(), hostPort(n.GetAddress(), n.GetPort()),
				hostPort(n.GetAdvertisedAddress(), n.GetAdvertisedPort()), strconv.Itoa(len(zi.GetAvailableServices()))}
		}}
	case resource.ZoneType:
		return columns{[]string{"ENABLED"}, func(s any) []string {
			z, _ := s.(*meshv1.Zone)
			if z == nil {
				return []string{""}
			}
			return []string{strconv.FormatBool(z.GetEnabled() == nil || z.GetEnabled().GetValue())}
		}}
	case resource.VirtualIPType:
		return columns{[]string{"SERVICE", "IP", "RELEASED"}, func(s any) []string {
			v, _ := s.(*meshv1.VirtualIP)
			if v == nil {
				return []string{"", "", ""}
			}
			rel := ""
			if v.GetReleasedTime() != nil {
				rel = v.GetReleasedTime().AsTime().UTC().Format(time.RFC3339)
			}
			return []string{v.GetService(), v.GetIp(), rel}
		}}
	case resource.TrafficPermissionType, resource.TrafficRouteType, resource.HealthCheckType,
		resource.CircuitBreakerType, resource.FaultInjectionType, resource.TrafficLogType,
		resource.RetryType, resource.TimeoutType:
		return columns{[]string{"SOURCES", "DESTINATIONS"}, func(s any) []string {
			p, _ := s.(connectionPolicy)
			if p == nil {
				return []string{"", ""}
			}
			return []string{formatSelectors(p.GetSources()), formatSelectors(p.GetDestinations())}
		}}
	case resource.TrafficTraceType, resource.ProxyTemplateType:
		return columns{[]string{"SELECTORS"}, func(s any) []string {
			p, _ := s.(interface{ GetSelectors() []*meshv1.Selector })
			if p == nil {
				return []string{""}
			}
			return []string{formatSelectors(p.GetSelectors())}
		}}
	}
	return columns{}
}

type connectionPolicy interface {
	GetSources() []*meshv1.Selector
	GetDestinations() []*meshv1.Selector
}

func offIfEmpty(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

func hostPort(addr string, port uint32) string {
	if addr == "" {
		return ""
	}
	if port == 0 {
		return addr
	}
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + strconv.FormatUint(uint64(port), 10)
	}
	return addr + ":" + strconv.FormatUint(uint64(port), 10)
}

// dataplaneServices lists a dataplane's services (the identity rule).
func dataplaneServices(dp *meshv1.Dataplane) []string {
	return resource.DataplaneServices(dp)
}

// formatSelectors renders selectors compactly: the service tag alone when
// it is the only tag, else the match map; several selectors joined by ';'.
func formatSelectors(sels []*meshv1.Selector) string {
	parts := make([]string, 0, len(sels))
	for _, s := range sels {
		m := s.GetMatch()
		if len(m) == 1 {
			if v, ok := m[resource.ServiceTag]; ok {
				parts = append(parts, v)
				continue
			}
		}
		parts = append(parts, formatTags(m))
	}
	out := strings.Join(parts, ";")
	if len(out) > 60 {
		out = out[:57] + "..."
	}
	return out
}

// printResourceTable prints objects of type t: [MESH] NAME <spec columns> AGE.
func (a *App) printResourceTable(t *resource.Type, objs []*client.Object) error {
	cols := specColumns(t)
	var headers []string
	if t.MeshScoped() {
		headers = append(headers, "MESH")
	}
	headers = append(headers, "NAME")
	headers = append(headers, cols.headers...)
	headers = append(headers, "AGE")
	tb := newTable(a.Stdout, headers...)
	now := a.Now()
	for _, o := range objs {
		var row []string
		if t.MeshScoped() {
			row = append(row, o.Meta.GetMesh())
		}
		row = append(row, o.Meta.GetName())
		if cols.cells != nil {
			var spec any
			if o.Spec != nil {
				spec = o.Spec
			}
			row = append(row, cols.cells(spec)...)
		}
		var created time.Time
		if ct := o.Meta.GetCreationTime(); ct != nil {
			created = ct.AsTime()
		}
		row = append(row, since(now, created))
		tb.row(row...)
	}
	if err := tb.flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
