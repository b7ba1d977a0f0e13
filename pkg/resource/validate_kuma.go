package resource

import (
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// ProxyTemplateProfiles are the profiles a ProxyTemplate may import: the
// configuration Weft generates for a proxy ("default-proxy", Kuma's name
// for it).
var ProxyTemplateProfiles = map[string]bool{"default-proxy": true}

// modOperations are the operations of each ProxyTemplate modification type.
var modOperations = map[string][]string{
	"cluster":       {"add", "patch", "remove"},
	"listener":      {"add", "patch", "remove"},
	"networkFilter": {"addFirst", "addLast", "addBefore", "addAfter", "patch", "remove"},
	"httpFilter":    {"addFirst", "addLast", "addBefore", "addAfter", "patch", "remove"},
	"virtualHost":   {"add", "patch", "remove"},
}

func validateProxyTemplate(p *meshv1.ProxyTemplate, v *Validator) {
	// No selectors: the template applies to every proxy of the mesh.
	checkSelectors(v.Field("selectors"), p.GetSelectors(), false)
	c := v.Field("conf")
	for i, imp := range p.GetConf().GetImports() {
		if !ProxyTemplateProfiles[imp] {
			c.Field("imports").Index(i).Addf("profile %q not found. Available profiles: default-proxy", imp)
		}
	}
	for i, r := range p.GetConf().GetResources() {
		rv := c.Field("resources").Index(i)
		if r.GetName() == "" {
			rv.Field("name").Addf("cannot be empty")
		}
		if r.GetVersion() == "" {
			rv.Field("version").Addf("cannot be empty")
		}
		if r.GetResource() == "" {
			rv.Field("resource").Addf("cannot be empty")
		} else if msg := checkEnvoyResource(r.GetResource()); msg != "" {
			rv.Field("resource").Addf("%s", msg)
		}
	}
	for i, mod := range p.GetConf().GetModifications() {
		mv := c.Field("modifications").Index(i)
		ops, ok := modOperations[mod.GetType()]
		if !ok {
			mv.Addf("must have one of cluster, listener, networkFilter, httpFilter, virtualHost")
			continue
		}
		tv := mv.Field(mod.GetType())
		known := false
		for _, op := range ops {
			known = known || op == mod.GetOperation()
		}
		if !known {
			tv.Field("operation").Addf("invalid operation %q: must be one of %s", mod.GetOperation(), strings.Join(ops, ", "))
			continue
		}
		switch op := mod.GetOperation(); {
		case op == "remove":
		case mod.GetValue() == "":
			tv.Field("value").Addf("cannot be empty")
		case op != "patch" && mod.GetType() != "networkFilter" && mod.GetType() != "httpFilter":
			if msg := checkYAMLObject(mod.GetValue()); msg != "" {
				tv.Field("value").Addf("%s", msg)
			}
		}
		if (mod.GetOperation() == "addBefore" || mod.GetOperation() == "addAfter") && mod.GetMatch().GetName() == "" {
			tv.Field("match").Field("name").Addf("cannot be empty: %s needs the filter to add it next to", mod.GetOperation())
		}
	}
}

// checkEnvoyResource checks a raw resource: a YAML or JSON object whose
// '@type' names an Envoy resource.
func checkEnvoyResource(s string) string {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return "must be an Envoy resource in YAML or JSON (an object with '@type')"
	}
	t, _ := m["@type"].(string)
	if !strings.HasPrefix(t, "type.googleapis.com/envoy.") {
		return "must be an Envoy resource: '@type' must name one (type.googleapis.com/envoy.config.cluster.v3.Cluster, ...)"
	}
	return ""
}

func checkYAMLObject(s string) string {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return "must be a YAML or JSON object"
	}
	return ""
}

// validateHealthCheckExtras checks the Kuma 1.x HealthCheck fields.
func validateHealthCheckExtras(c *Validator, conf *meshv1.HealthCheck_Conf) {
	checkDuration(c.Field("initialJitter"), conf.GetInitialJitter())
	checkDuration(c.Field("intervalJitter"), conf.GetIntervalJitter())
	checkDuration(c.Field("noTrafficInterval"), conf.GetNoTrafficInterval())
	if conf.GetIntervalJitterPercent() > 100 {
		c.Field("intervalJitterPercent").Addf("must be in 0..100")
	}
	if t := conf.GetHealthyPanicThreshold(); t != nil {
		checkPercentage(c.Field("healthyPanicThreshold"), t.GetValue())
	}
	for i, h := range conf.GetHttp().GetRequestHeadersToAdd() {
		if h.GetHeader().GetKey() == "" {
			c.Field("http").Field("requestHeadersToAdd").Index(i).Field("header").Field("key").Addf("cannot be empty")
		}
	}
}

// validateDetectorExtras checks the decimal standard deviation factor and
// the failure detector.
func validateDetectorExtras(c *Validator, d *meshv1.CircuitBreaker_Conf_Detectors) {
	if d.GetStandardDeviation().GetFactor() < 0 {
		c.Field("detectors").Field("standardDeviation").Field("factor").Addf("must not be negative")
	}
	if d.GetFailure().GetThreshold() > 100 {
		c.Field("detectors").Field("failure").Field("threshold").Addf("must be in 0..100")
	}
}

// validateModify checks a TrafficRoute http[].modify.
func validateModify(v *Validator, h *meshv1.TrafficRoute_Http) {
	m := h.GetModify()
	if m == nil {
		return
	}
	if p := m.GetPath(); p != nil {
		pv := v.Field("path")
		switch t := p.GetType().(type) {
		case *meshv1.TrafficRoute_Http_Modify_Path_RewritePrefix:
			if !strings.HasPrefix(t.RewritePrefix, "/") {
				pv.Field("rewritePrefix").Addf("must start with /")
			}
			if h.GetMatch().GetPath().GetPrefix() == "" {
				pv.Field("rewritePrefix").Addf("can only be set when match.path.prefix is specified")
			}
		case *meshv1.TrafficRoute_Http_Modify_Path_Regex:
			checkRegex(pv.Field("regex"), t.Regex)
		default:
			pv.Addf("must have one of rewritePrefix, regex")
		}
	}
	if host := m.GetHost(); host != nil {
		hv := v.Field("host")
		switch t := host.GetType().(type) {
		case *meshv1.TrafficRoute_Http_Modify_Host_Value:
			if t.Value == "" {
				hv.Field("value").Addf("cannot be empty")
			}
		case *meshv1.TrafficRoute_Http_Modify_Host_FromPath:
			checkRegex(hv.Field("fromPath"), t.FromPath)
		default:
			hv.Addf("must have one of value, fromPath")
		}
	}
	for _, hs := range []struct {
		name string
		h    *meshv1.TrafficRoute_Http_Modify_Headers
	}{{"requestHeaders", m.GetRequestHeaders()}, {"responseHeaders", m.GetResponseHeaders()}} {
		for i, a := range hs.h.GetAdd() {
			if a.GetName() == "" {
				v.Field(hs.name).Field("add").Index(i).Field("name").Addf("cannot be empty")
			}
		}
		for i, r := range hs.h.GetRemove() {
			if r.GetName() == "" {
				v.Field(hs.name).Field("remove").Index(i).Field("name").Addf("cannot be empty")
			}
		}
	}
}

func checkRegex(v *Validator, r *meshv1.TrafficRoute_Http_Modify_Regex) {
	if r.GetPattern() == "" {
		v.Field("pattern").Addf("cannot be empty")
	} else if _, err := regexp.Compile(r.GetPattern()); err != nil {
		v.Field("pattern").Addf("is not a valid regular expression: %v", err)
	}
}
