package resource

import (
	"strings"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Kuma's universal-mode input shapes, normalised to Weft's canonical form
// on decode (docs/kuma-compatibility.md lists every type and field). The
// normalisers work on the document tree, so a shape that cannot be
// normalised is reported at its Kuma field path and line, and whatever
// they produce is then checked like any other document.

const (
	kumaTagPrefix = "kuma.io/"
	weftTagPrefix = "weft.io/"
)

// KumaOnlyTypes are Kuma's universal types Weft does not have, with what
// to use instead.
var KumaOnlyTypes = map[string]string{
	"ExternalService":       "run a Dataplane (or a gateway Dataplane) in front of the external service",
	"RateLimit":             "rate limits are not implemented yet",
	"MeshGateway":           "use a Dataplane with networking.gateway (type builtin)",
	"MeshGatewayRoute":      "route with TrafficRoute on the gateway's service",
	"VirtualOutbound":       "services are reached as <service>.mesh through dns-server",
	"ZoneEgress":            "egress is not implemented yet",
	"ZoneIngressInsight":    "the control plane writes insights; read them with weftctl inspect",
	"ZoneEgressInsight":     "egress is not implemented yet",
	"ServiceInsight":        "read services with weftctl inspect",
	"MeshInsight":           "read meshes with weftctl inspect",
	"MeshTrafficPermission": "Kuma 2.x policies are not supported; use TrafficPermission",
}

// normaliseKuma rewrites the Kuma shapes of a type's spec in place and
// returns the type the document really is (Kuma 0.6/0.7's ingress
// Dataplane is a ZoneIngress here).
func normaliseKuma(t *Type, meta *meshv1.Meta, spec *node, v *Validator) *Type {
	switch t {
	case MeshType:
		normaliseMesh(spec, v)
	case DataplaneType:
		if ing := spec.get("networking").get("ingress"); ing != nil {
			return ingressDataplane(meta, spec, v)
		}
		normaliseDataplane(spec, v)
	case ZoneType:
		// Kuma 0.7 Zone: ingress.address, the zone's ingress as global
		// dials it. Weft learns ingresses from the zones' ZoneIngress
		// resources, so the field has nothing left to say.
		spec.del("ingress")
	case ZoneIngressType:
		normaliseZoneIngress(spec, "default")
	case TrafficRouteType:
		normaliseTrafficRoute(spec, v)
	case HealthCheckType:
		normaliseHealthCheck(spec, v)
	case CircuitBreakerType:
		normaliseCircuitBreaker(spec)
	case FaultInjectionType:
		normaliseFaultInjection(spec)
	case ProxyTemplateType:
		normaliseProxyTemplate(spec, v)
	}
	return t
}

// dropKeys removes fields Kuma has and Weft accepts without effect (each
// is listed, with why, in docs/kuma-compatibility.md).
func dropKeys(n *node, keys ...string) {
	for _, k := range keys {
		n.del(k)
	}
}

// liftConf moves the fields of a Kuma backend's "conf" into target (the
// backend itself, or a sub-object named into); a field given both ways is
// a cause at conf.<field>.
func liftConf(backend *node, into string, v *Validator) {
	conf := backend.get("conf")
	if conf == nil {
		return
	}
	if !conf.isObject() {
		return // left for the type check to report
	}
	backend.del("conf")
	target := backend
	if into != "" {
		if existing := backend.get(into); existing != nil {
			v.Field("conf").addLine(conf.line, "give either conf (Kuma's shape) or %s, not both", into)
			return
		}
		target = obj(conf.line)
		backend.set(into, target)
	}
	for i, k := range conf.keys {
		if target.get(k) != nil {
			v.Field("conf").Field(k).addLine(conf.vals[i].line, "is also given outside conf")
			continue
		}
		target.set(k, conf.vals[i])
	}
}

func eachItem(list *node, f func(i int, item *node)) {
	if list == nil || list.kind != kindList {
		return
	}
	for i, it := range list.items {
		if it.isObject() {
			f(i, it)
		}
	}
}

func normaliseMesh(spec *node, v *Validator) {
	mtls := spec.get("mtls")
	if mtls.isObject() {
		mv := v.Field("mtls")
		if mode := mtls.get("mode"); mode != nil && mode.kind == kindString {
			mode.text = strings.ToLower(mode.text)
		}
		enabled := ""
		if e := mtls.get("enabledBackend"); e != nil {
			enabled = e.text
		}
		eachItem(mtls.get("backends"), func(i int, b *node) {
			bv := mv.Field("backends").Index(i)
			// Kuma 1.x: the mode is per backend (STRICT, PERMISSIVE);
			// Weft has one mode for the mesh, the enabled backend's.
			if mode := b.del("mode"); mode != nil && mode.kind == kindString && b.get("name") != nil && b.get("name").text == enabled {
				if mtls.get("mode") == nil {
					mode.text = strings.ToLower(mode.text)
					mtls.set("mode", mode)
				}
			}
			// Kuma 1.x: the data plane certificate request timeout and the
			// root chain: ca-service has its own signing deadline.
			dropKeys(b, "rootChain")
			if dp := b.get("dpCert"); dp.isObject() {
				dropKeys(dp, "requestTimeout")
			}
			typ := ""
			if t := b.get("type"); t != nil {
				typ = t.text
			}
			switch typ {
			case "builtin":
				liftConf(b, "builtin", bv)
				if cc := b.get("builtin").get("caCert"); cc.isObject() {
					// Kuma's builtin CA is RSA; its field is RSAbits.
					if cc.rename("RSAbits", "rsaBits") {
						if cc.get("keyType") == nil {
							cc.set("keyType", str("rsa", cc.line))
						}
					}
				}
			case "provided":
				liftConf(b, "provided", bv)
			}
		})
	}
	if lg := spec.get("logging"); lg.isObject() {
		eachItem(lg.get("backends"), func(i int, b *node) {
			liftConf(b, "", v.Field("logging").Field("backends").Index(i))
		})
	}
	if tr := spec.get("tracing"); tr.isObject() {
		eachItem(tr.get("backends"), func(i int, b *node) {
			bv := v.Field("tracing").Field("backends").Index(i)
			if t := b.get("type"); t != nil && t.kind == kindString && t.text != "zipkin" && t.text != "otel" {
				// Kuma's datadog backend (conf.address, conf.port):
				// one cause for the type, not one per field it brings.
				bv.Field("type").addLine(t.line, "%q is not supported: must be zipkin or otel (send to Datadog through an OpenTelemetry collector)", t.text)
				b.del("conf")
				return
			}
			liftConf(b, "", bv)
		})
	}
	if mt := spec.get("metrics"); mt.isObject() {
		eachItem(mt.get("backends"), func(i int, b *node) {
			liftConf(b, "", v.Field("metrics").Field("backends").Index(i))
		})
	}
}

func normaliseDataplane(spec *node, v *Validator) {
	net := spec.get("networking")
	if !net.isObject() {
		return
	}
	// Kuma 0.6: an outbound names its service directly.
	eachItem(net.get("outbound"), func(i int, out *node) {
		if svc := out.del("service"); svc != nil {
			if svc.kind == kindString && svc.text == "" {
				v.Field("networking").Field("outbound").Index(i).Field("service").addLine(svc.line, "cannot be empty")
				return
			}
			tags := out.get("tags")
			if !tags.isObject() {
				tags = obj(svc.line)
				out.set("tags", tags)
			}
			if tags.get(ServiceTag) == nil && tags.get(kumaTagPrefix+"service") == nil {
				tags.set(ServiceTag, svc)
			}
		}
	})
	// Kuma 1.x gateway types are enum names (DELEGATED, BUILTIN).
	if typ := net.get("gateway").get("type"); typ != nil && typ.kind == kindString {
		typ.text = strings.ToLower(typ.text)
	}
	// Kuma 1.x service probes are run by Kuma's own data plane agent; Weft
	// reads inbound health from the workload's readiness (health.ready).
	eachItem(net.get("inbound"), func(_ int, in *node) { dropKeys(in, "serviceProbe") })
}

// ingressDataplane turns Kuma 0.6/0.7's ingress Dataplane
// (networking.ingress) into the ZoneIngress it is in Weft: the first
// inbound's port is the ingress port, the available services belong to the
// Dataplane's mesh.
func ingressDataplane(meta *meshv1.Meta, spec *node, v *Validator) *Type {
	net := spec.get("networking")
	nv := v.Field("networking")
	ing := net.get("ingress")
	zi := obj(spec.line)
	zn := obj(net.line)
	zi.set("networking", zn)
	for _, k := range []string{"address", "advertisedAddress"} {
		if a := net.get(k); a != nil {
			zn.set(k, a)
		}
	}
	inbound := net.get("inbound")
	if inbound == nil || inbound.kind != kindList || len(inbound.items) != 1 || !inbound.items[0].isObject() || inbound.items[0].get("port") == nil {
		nv.Field("inbound").addLine(net.line, "an ingress Dataplane must have exactly one inbound with a port: the ingress port")
	} else {
		zn.set("port", inbound.items[0].get("port"))
	}
	if ing.isObject() {
		if a := ing.get("publicAddress"); a != nil {
			zn.set("advertisedAddress", a)
		}
		if p := ing.get("publicPort"); p != nil {
			zn.set("advertisedPort", p)
		}
		if s := ing.get("availableServices"); s != nil {
			zi.set("availableServices", s)
		}
	}
	for _, k := range net.keys {
		switch k {
		case "address", "advertisedAddress", "inbound", "ingress":
		default:
			nv.Field(k).addLine(net.get(k).line, "is not part of an ingress Dataplane")
		}
	}
	mesh := meta.GetMesh()
	if mesh == "" {
		mesh = "default"
	}
	normaliseZoneIngress(zi, mesh)
	meta.Mesh = ""
	*spec = *zi
	return ZoneIngressType
}

// normaliseZoneIngress gives available services without a mesh (Kuma's
// ingress Dataplane lists them for its own mesh) the mesh they belong to.
func normaliseZoneIngress(spec *node, mesh string) {
	eachItem(spec.get("availableServices"), func(_ int, s *node) {
		if s.get("mesh") == nil {
			s.set("mesh", str(mesh, s.line))
		}
	})
}

// kumaLoadBalancers maps Kuma's one-key load balancer objects to Weft's
// type names.
var kumaLoadBalancers = map[string]string{
	"roundRobin": "round_robin", "leastRequest": "least_request", "random": "random",
	"ringHash": "ring_hash", "maglev": "maglev",
}

func normaliseTrafficRoute(spec *node, v *Validator) {
	conf := spec.get("conf")
	// Kuma 0.6: conf is the list of {weight, destination}.
	if conf != nil && conf.kind == kindList {
		c := obj(conf.line)
		c.set("split", conf)
		spec.set("conf", c)
		return
	}
	if !conf.isObject() {
		return
	}
	if lb := conf.get("loadBalancer"); lb.isObject() && lb.get("type") == nil {
		cv := v.Field("conf").Field("loadBalancer")
		if len(lb.keys) != 1 {
			cv.addLine(lb.line, "must have exactly one of roundRobin, leastRequest, random, ringHash, maglev")
			conf.del("loadBalancer")
			return
		}
		typ, ok := kumaLoadBalancers[lb.keys[0]]
		if !ok {
			cv.Field(lb.keys[0]).addLine(lb.vals[0].line, "unknown load balancer: must be one of roundRobin, leastRequest, random, ringHash, maglev")
			conf.del("loadBalancer")
			return
		}
		// Kuma's tuning (leastRequest.choiceCount, ringHash.hashFunction
		// and ring sizes) is accepted and left to Envoy's defaults.
		conf.set("loadBalancer", &node{kind: kindObject, line: lb.line, keys: []string{"type"}, vals: []*node{str(typ, lb.line)}})
	}
}

func normaliseHealthCheck(spec *node, v *Validator) {
	conf := spec.get("conf")
	if !conf.isObject() {
		return
	}
	// Kuma 0.6: conf.activeChecks holds what 1.x has at conf's top level;
	// conf.passiveChecks is outlier detection, which Weft configures with a
	// CircuitBreaker.
	if ac := conf.get("activeChecks"); ac != nil && !ac.isObject() {
		v.Field("conf").Field("activeChecks").addLine(ac.line, "must be an object, not %s", ac.kind)
		conf.del("activeChecks")
	} else if ac != nil {
		conf.del("activeChecks")
		for i, k := range ac.keys {
			if conf.get(k) == nil {
				conf.set(k, ac.vals[i])
			}
		}
	}
	dropKeys(conf, "passiveChecks")
}

func normaliseCircuitBreaker(spec *node) {}

func normaliseFaultInjection(spec *node) {
	// Kuma writes bandwidth limits with or without a space ("50 mbps").
	if lim := spec.get("conf").get("responseBandwidth").get("limit"); lim != nil && lim.kind == kindString {
		lim.text = strings.Join(strings.Fields(lim.text), "")
	}
}

// kumaModificationTypes are the keys of Kuma 1.x's one-key modification
// objects ({cluster: {operation, match, value}}).
var kumaModificationTypes = []string{"cluster", "listener", "networkFilter", "httpFilter", "virtualHost"}

func normaliseProxyTemplate(spec *node, v *Validator) {
	conf := spec.get("conf")
	if !conf.isObject() {
		return
	}
	eachItem(conf.get("modifications"), func(i int, m *node) {
		if m.get("type") != nil || len(m.keys) != 1 {
			return
		}
		for _, typ := range kumaModificationTypes {
			if m.keys[0] != typ {
				continue
			}
			inner := m.vals[0]
			if !inner.isObject() {
				v.Field("conf").Field("modifications").Index(i).Field(typ).addLine(inner.line, "must be an object, not %s", inner.kind)
				return
			}
			out := obj(m.line)
			out.set("type", str(typ, m.line))
			for j, k := range inner.keys {
				out.set(k, inner.vals[j])
			}
			*m = *out
			return
		}
	})
}
