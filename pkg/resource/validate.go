package resource

import (
	"errors"
	netpkg "net"
	"strconv"

	"google.golang.org/protobuf/proto"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Well-known tags.
const (
	ServiceTag  = "weft.io/service"
	ZoneTag     = "weft.io/zone"
	ProtocolTag = "weft.io/protocol"
)

var validProtocols = map[string]bool{"tcp": true, "http": true, "http2": true, "grpc": true}

// Validate checks a resource's identity and spec and returns a
// *ValidationError listing every problem, or nil.
func Validate(r *Resource) error {
	v := NewValidator()
	t := r.Type()
	if t == nil {
		v.Field("type").Addf("unknown type %q", r.Meta.GetType())
		return v.Err()
	}
	CheckName(v.Field("name"), r.Meta.GetName())
	if t.MeshScoped() {
		CheckLabel(v.Field("mesh"), r.Meta.GetMesh())
	} else if r.Meta.GetMesh() != "" {
		v.Field("mesh").Addf("%s is not mesh-scoped: mesh must be empty", t.Name)
	}
	if t == MeshType || t == ZoneType {
		CheckLabel(v.Field("name"), r.Meta.GetName())
	}
	for k := range r.Meta.GetLabels() {
		if !tagKey.MatchString(k) {
			v.Field("labels").Key(k).Addf("label name %q is not valid", k)
		}
	}
	if r.Spec == nil || proto.MessageName(r.Spec) != proto.MessageName(t.NewSpec()) {
		v.Addf("spec must be a %s", proto.MessageName(t.NewSpec()))
		return v.Err()
	}
	if t.validate != nil {
		t.validate(r.Spec, v)
	}
	return v.Err()
}

func attachValidators() {
	MeshType.validate = func(m proto.Message, v *Validator) { validateMesh(m.(*meshv1.Mesh), v) }
	DataplaneType.validate = func(m proto.Message, v *Validator) { validateDataplane(m.(*meshv1.Dataplane), v) }
	ZoneIngressType.validate = func(m proto.Message, v *Validator) { validateZoneIngress(m.(*meshv1.ZoneIngress), v) }
	VirtualIPType.validate = func(m proto.Message, v *Validator) {
		vip := m.(*meshv1.VirtualIP)
		CheckLabel(v.Field("service"), vip.GetService())
		if ip := netpkg.ParseIP(vip.GetIp()); ip == nil || ip.To4() == nil {
			v.Field("ip").Addf("must be an IPv4 address")
		}
	}
	TrafficPermissionType.validate = func(m proto.Message, v *Validator) {
		p := m.(*meshv1.TrafficPermission)
		checkSelectors(v.Field("sources"), p.GetSources(), true)
		checkSelectors(v.Field("destinations"), p.GetDestinations(), true)
	}
	TrafficRouteType.validate = func(m proto.Message, v *Validator) { validateTrafficRoute(m.(*meshv1.TrafficRoute), v) }
	HealthCheckType.validate = func(m proto.Message, v *Validator) {
		p := m.(*meshv1.HealthCheck)
		checkSourcesDestinations(v, p.GetSources(), p.GetDestinations())
		c := v.Field("conf")
		if p.GetConf() == nil {
			c.Addf("must be set")
			return
		}
		conf := p.GetConf()
		requiredDuration(c.Field("interval"), conf.GetInterval())
		requiredDuration(c.Field("timeout"), conf.GetTimeout())
		if conf.GetUnhealthyThreshold() == 0 {
			c.Field("unhealthyThreshold").Addf("must be at least 1")
		}
		if conf.GetHealthyThreshold() == 0 {
			c.Field("healthyThreshold").Addf("must be at least 1")
		}
		for i, s := range conf.GetHttp().GetExpectedStatuses() {
			if s < 100 || s > 599 {
				c.Field("http").Field("expectedStatuses").Index(i).Addf("must be in 100..599")
			}
		}
		validateHealthCheckExtras(c, conf)
	}
	CircuitBreakerType.validate = func(m proto.Message, v *Validator) {
		p := m.(*meshv1.CircuitBreaker)
		checkSourcesDestinations(v, p.GetSources(), p.GetDestinations())
		c := v.Field("conf")
		if p.GetConf() == nil {
			c.Addf("must be set")
			return
		}
		checkDuration(c.Field("interval"), p.GetConf().GetInterval())
		checkDuration(c.Field("baseEjectionTime"), p.GetConf().GetBaseEjectionTime())
		if p.GetConf().GetMaxEjectionPercent() > 100 {
			c.Field("maxEjectionPercent").Addf("must be in 0..100")
		}
		validateDetectorExtras(c, p.GetConf().GetDetectors())
	}
	FaultInjectionType.validate = func(m proto.Message, v *Validator) {
		p := m.(*meshv1.FaultInjection)
		checkSourcesDestinations(v, p.GetSources(), p.GetDestinations())
		// Faults are HTTP filters: like Kuma, the destination must say it
		// speaks HTTP.
		for i, d := range p.GetDestinations() {
			switch proto := d.GetMatch()[ProtocolTag]; proto {
			case "http", "http2", "grpc":
			case "":
				if d.GetMatch()[kumaTagPrefix+"protocol"] == "" {
					v.Field("destinations").Index(i).Field("match").Addf("mandatory tag %q is missing: faults apply to HTTP traffic (http, http2 or grpc)", ProtocolTag)
				}
			default:
				if validProtocols[proto] {
					v.Field("destinations").Index(i).Field("match").Key(ProtocolTag).Addf("must be http, http2 or grpc: faults apply to HTTP traffic, not %s", proto)
				}
			}
		}
		c := v.Field("conf")
		conf := p.GetConf()
		if conf.GetDelay() == nil && conf.GetAbort() == nil && conf.GetResponseBandwidth() == nil {
			c.Addf("must have at least one of delay, abort, responseBandwidth")
		}
		if d := conf.GetDelay(); d != nil {
			checkPercentage(c.Field("delay").Field("percentage"), d.GetPercentage())
			requiredDuration(c.Field("delay").Field("value"), d.GetValue())
		}
		if a := conf.GetAbort(); a != nil {
			checkPercentage(c.Field("abort").Field("percentage"), a.GetPercentage())
			if a.GetHttpStatus() < 100 || a.GetHttpStatus() > 599 {
				c.Field("abort").Field("httpStatus").Addf("must be in 100..599")
			}
		}
		if b := conf.GetResponseBandwidth(); b != nil {
			checkPercentage(c.Field("responseBandwidth").Field("percentage"), b.GetPercentage())
			if !bandwidthRe.MatchString(b.GetLimit()) {
				c.Field("responseBandwidth").Field("limit").Addf("must be a number followed by kbps, mbps or gbps")
			}
		}
	}
	TrafficLogType.validate = func(m proto.Message, v *Validator) {
		p := m.(*meshv1.TrafficLog)
		checkSourcesDestinations(v, p.GetSources(), p.GetDestinations())
	}
	TrafficTraceType.validate = func(m proto.Message, v *Validator) {
		checkSelectors(v.Field("selectors"), m.(*meshv1.TrafficTrace).GetSelectors(), true)
	}
	RetryType.validate = func(m proto.Message, v *Validator) {
		p := m.(*meshv1.Retry)
		checkSourcesDestinations(v, p.GetSources(), p.GetDestinations())
		c := v.Field("conf")
		conf := p.GetConf()
		if conf.GetHttp() == nil && conf.GetTcp() == nil && conf.GetGrpc() == nil {
			c.Addf("must have at least one of http, tcp, grpc")
		}
		if h := conf.GetHttp(); h != nil {
			checkDuration(c.Field("http").Field("perTryTimeout"), h.GetPerTryTimeout())
			checkBackOff(c.Field("http").Field("backOff"), h.GetBackOff())
		}
		if g := conf.GetGrpc(); g != nil {
			checkDuration(c.Field("grpc").Field("perTryTimeout"), g.GetPerTryTimeout())
			checkBackOff(c.Field("grpc").Field("backOff"), g.GetBackOff())
			for i, r := range g.GetRetryOn() {
				if !grpcRetryOn[r] {
					c.Field("grpc").Field("retryOn").Index(i).Addf("%q is not one of cancelled, deadline_exceeded, internal, resource_exhausted, unavailable", r)
				}
			}
		}
	}
	TimeoutType.validate = func(m proto.Message, v *Validator) {
		p := m.(*meshv1.Timeout)
		checkSourcesDestinations(v, p.GetSources(), p.GetDestinations())
		c := v.Field("conf")
		conf := p.GetConf()
		checkDuration(c.Field("connectTimeout"), conf.GetConnectTimeout())
		checkDuration(c.Field("tcp").Field("idleTimeout"), conf.GetTcp().GetIdleTimeout())
		checkDuration(c.Field("http").Field("requestTimeout"), conf.GetHttp().GetRequestTimeout())
		checkDuration(c.Field("http").Field("idleTimeout"), conf.GetHttp().GetIdleTimeout())
		checkDuration(c.Field("grpc").Field("streamIdleTimeout"), conf.GetGrpc().GetStreamIdleTimeout())
		checkDuration(c.Field("grpc").Field("maxStreamDuration"), conf.GetGrpc().GetMaxStreamDuration())
	}
	ProxyTemplateType.validate = func(m proto.Message, v *Validator) {
		validateProxyTemplate(m.(*meshv1.ProxyTemplate), v)
	}
	SecretType.validate = func(m proto.Message, v *Validator) {
		if len(m.(*meshv1.Secret).GetData()) == 0 {
			v.Field("data").Addf("must not be empty")
		}
	}
	GlobalSecretType.validate = func(m proto.Message, v *Validator) {
		if len(m.(*meshv1.GlobalSecret).GetData()) == 0 {
			v.Field("data").Addf("must not be empty")
		}
	}
}

var grpcRetryOn = map[string]bool{"cancelled": true, "deadline_exceeded": true, "internal": true, "resource_exhausted": true, "unavailable": true}

func requiredDuration(v *Validator, s string) {
	if s == "" {
		v.Addf("must be set")
		return
	}
	checkDuration(v, s)
}

func checkBackOff(v *Validator, b *meshv1.Retry_Conf_BackOff) {
	if b == nil {
		return
	}
	requiredDuration(v.Field("baseInterval"), b.GetBaseInterval())
	checkDuration(v.Field("maxInterval"), b.GetMaxInterval())
}

func checkSelectors(v *Validator, sels []*meshv1.Selector, required bool) {
	if len(sels) == 0 && required {
		v.Addf("must have at least one selector")
	}
	for i, s := range sels {
		sv := v.Index(i).Field("match")
		if len(s.GetMatch()) == 0 {
			sv.Addf("must have at least one tag")
		}
		checkTags(sv, s.GetMatch(), true)
	}
}

// checkSourcesDestinations checks a policy's selectors; like Kuma, every
// selector of these policies must name the service (weft.io/service, "*"
// for all).
func checkSourcesDestinations(v *Validator, src, dst []*meshv1.Selector) {
	checkSelectors(v.Field("sources"), src, true)
	checkSelectors(v.Field("destinations"), dst, true)
	requireService(v.Field("sources"), src)
	requireService(v.Field("destinations"), dst)
}

func requireService(v *Validator, sels []*meshv1.Selector) {
	for i, s := range sels {
		if len(s.GetMatch()) == 0 {
			continue // "must have at least one tag" already
		}
		if _, ok := s.GetMatch()[ServiceTag]; !ok && s.GetMatch()[kumaTagPrefix+"service"] == "" {
			v.Index(i).Field("match").Addf("mandatory tag %q is missing", ServiceTag)
		}
	}
}

func validateMesh(m *meshv1.Mesh, v *Validator) {
	mt := v.Field("mtls")
	names := map[string]bool{}
	for i, b := range m.GetMtls().GetBackends() {
		bv := mt.Field("backends").Index(i)
		CheckLabel(bv.Field("name"), b.GetName())
		if names[b.GetName()] {
			bv.Field("name").Addf("duplicate backend name %q", b.GetName())
		}
		names[b.GetName()] = true
		switch b.GetType() {
		case "builtin":
			cc := b.GetBuiltin().GetCaCert()
			switch cc.GetKeyType() {
			case "", "ecdsa-p256":
				if cc.GetRsaBits() != 0 {
					bv.Field("builtin").Field("caCert").Field("rsaBits").Addf("only applies to keyType rsa")
				}
			case "rsa":
				if cc.GetRsaBits() != 0 && cc.GetRsaBits() != 2048 && cc.GetRsaBits() != 4096 {
					bv.Field("builtin").Field("caCert").Field("rsaBits").Addf("must be 2048 or 4096")
				}
			default:
				bv.Field("builtin").Field("caCert").Field("keyType").Addf("must be ecdsa-p256 or rsa")
			}
			checkDuration(bv.Field("builtin").Field("caCert").Field("expiration"), cc.GetExpiration())
			if b.GetProvided() != nil {
				bv.Field("provided").Addf("must not be set for a builtin backend")
			}
		case "provided":
			pv := bv.Field("provided")
			if b.GetProvided() == nil {
				pv.Addf("must be set for a provided backend")
			} else {
				checkDataSource(pv.Field("cert"), b.GetProvided().GetCert())
				checkDataSource(pv.Field("key"), b.GetProvided().GetKey())
			}
			if b.GetBuiltin() != nil {
				bv.Field("builtin").Addf("must not be set for a provided backend")
			}
		default:
			bv.Field("type").Addf("must be builtin or provided")
		}
		checkDuration(bv.Field("dpCert").Field("rotation").Field("expiration"), b.GetDpCert().GetRotation().GetExpiration())
	}
	if eb := m.GetMtls().GetEnabledBackend(); eb != "" && !names[eb] {
		mt.Field("enabledBackend").Addf("backend %q is not defined in mtls.backends", eb)
	}
	switch m.GetMtls().GetMode() {
	case "", "strict", "permissive":
	default:
		mt.Field("mode").Addf("must be strict or permissive")
	}
	checkBackendNames(v.Field("logging"), "defaultBackend", m.GetLogging().GetDefaultBackend(), len(m.GetLogging().GetBackends()), func(i int) (string, string, []string) {
		b := m.GetLogging().GetBackends()[i]
		return b.GetName(), b.GetType(), []string{"file", "tcp"}
	})
	checkBackendNames(v.Field("tracing"), "defaultBackend", m.GetTracing().GetDefaultBackend(), len(m.GetTracing().GetBackends()), func(i int) (string, string, []string) {
		b := m.GetTracing().GetBackends()[i]
		checkPercentage(v.Field("tracing").Field("backends").Index(i).Field("sampling"), b.GetSampling())
		switch b.GetApiVersion() {
		case "", "httpJson", "httpProto":
		default:
			v.Field("tracing").Field("backends").Index(i).Field("apiVersion").Addf("must be httpJson or httpProto")
		}
		return b.GetName(), b.GetType(), []string{"zipkin", "otel"}
	})
	checkBackendNames(v.Field("metrics"), "enabledBackend", m.GetMetrics().GetEnabledBackend(), len(m.GetMetrics().GetBackends()), func(i int) (string, string, []string) {
		b := m.GetMetrics().GetBackends()[i]
		checkPort(v.Field("metrics").Field("backends").Index(i).Field("port"), b.GetPort(), false)
		return b.GetName(), b.GetType(), []string{"prometheus"}
	})
}

func checkBackendNames(v *Validator, defField, def string, n int, get func(int) (name, typ string, types []string)) {
	names := map[string]bool{}
	for i := 0; i < n; i++ {
		name, typ, types := get(i)
		bv := v.Field("backends").Index(i)
		CheckLabel(bv.Field("name"), name)
		if names[name] {
			bv.Field("name").Addf("duplicate backend name %q", name)
		}
		names[name] = true
		ok := false
		for _, t := range types {
			ok = ok || t == typ
		}
		if !ok {
			bv.Field("type").Addf("must be one of %v", types)
		}
	}
	if def != "" && !names[def] {
		v.Field(defField).Addf("backend %q is not defined in backends", def)
	}
}

// InlineKeyMessage is the error for private key material given inline in a
// Mesh: a Mesh is readable by every user and synced to every zone, so keys
// live in a sealed Secret (or a file on ca-service's host) instead.
const InlineKeyMessage = "inline key material is not accepted in a Mesh (it would be stored unsealed and readable by every user): " +
	"store the key in a Secret of the mesh and reference it with provided.key.secret, or use provided.key.file on ca-service's host"

// ValidateWrite is Validate plus the rules for new writes through the API
// that stored resources from older versions may break (they stay readable
// and keep syncing): no inline provided-CA key in a Mesh.
func ValidateWrite(r *Resource) error {
	err := Validate(r)
	m, ok := r.Spec.(*meshv1.Mesh)
	if !ok {
		return err
	}
	v := NewValidator()
	for i, b := range m.GetMtls().GetBackends() {
		if b.GetType() == "provided" {
			checkNoInlineKey(v.Field("mtls").Field("backends").Index(i).Field("provided").Field("key"), b.GetProvided().GetKey())
		}
	}
	for i, b := range m.GetLogging().GetBackends() {
		if b.GetType() == "tcp" {
			checkLogAddress(v.Field("logging").Field("backends").Index(i).Field("address"), b.GetAddress())
		}
	}
	extra := v.Err()
	if extra == nil {
		return err
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		return &ValidationError{Causes: append(append([]Cause(nil), ve.Causes...), extra.(*ValidationError).Causes...)}
	}
	if err != nil {
		return err
	}
	return extra
}

// checkLogAddress: a TCP logging backend is dialled as host:port (a
// hostname or IP and a port 1..65535); anything else would never get a line.
func checkLogAddress(v *Validator, addr string) {
	host, port, err := netpkg.SplitHostPort(addr)
	if err != nil || host == "" || len(addr) > 255 {
		v.Addf("must be host:port, e.g. logstash.example.com:5000")
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		v.Addf("port %q must be 1..65535", port)
	}
}

func checkNoInlineKey(v *Validator, ds *meshv1.DataSource) {
	switch ds.GetType().(type) {
	case *meshv1.DataSource_Inline:
		v.Field("inline").Addf("%s", InlineKeyMessage)
	case *meshv1.DataSource_InlineString:
		v.Field("inlineString").Addf("%s", InlineKeyMessage)
	}
}

func checkDataSource(v *Validator, ds *meshv1.DataSource) {
	if ds == nil || ds.GetType() == nil {
		v.Addf("must have one of secret, file, inline, inlineString")
		return
	}
	if s, ok := ds.GetType().(*meshv1.DataSource_Secret); ok {
		CheckName(v.Field("secret"), s.Secret)
	}
}

func validateDataplane(dp *meshv1.Dataplane, v *Validator) {
	n := v.Field("networking")
	net := dp.GetNetworking()
	if net == nil {
		n.Addf("must be set")
		return
	}
	checkIP(n.Field("address"), net.GetAddress(), true)
	checkIP(n.Field("advertisedAddress"), net.GetAdvertisedAddress(), false)
	gw := net.GetGateway()
	if gw == nil && len(net.GetInbound()) == 0 {
		n.Addf("has to contain at least one inbound or a gateway")
	}
	if gw != nil {
		if len(net.GetInbound()) > 0 {
			n.Field("inbound").Addf("must be empty for a gateway")
		}
		gv := n.Field("gateway").Field("tags")
		if _, ok := gw.GetTags()[ServiceTag]; !ok && gw.GetTags()[kumaTagPrefix+"service"] == "" {
			gv.Addf("must contain %s", ServiceTag)
		}
		checkTags(gv, gw.GetTags(), false)
		if gw.GetType() != "" && gw.GetType() != "delegated" && gw.GetType() != "builtin" {
			n.Field("gateway").Field("type").Addf("must be delegated or builtin")
		}
	}
	ports := map[uint32]bool{}
	for i, in := range net.GetInbound() {
		iv := n.Field("inbound").Index(i)
		checkPort(iv.Field("port"), in.GetPort(), true)
		if in.GetPort() != 0 && ports[in.GetPort()] {
			iv.Field("port").Addf("port %d is used by another inbound", in.GetPort())
		}
		ports[in.GetPort()] = true
		checkPort(iv.Field("servicePort"), in.GetServicePort(), false)
		checkIP(iv.Field("serviceAddress"), in.GetServiceAddress(), false)
		checkIP(iv.Field("address"), in.GetAddress(), false)
		tv := iv.Field("tags")
		checkServiceTag(tv, in.GetTags())
		checkTags(tv, in.GetTags(), false)
	}
	for i, out := range net.GetOutbound() {
		ov := n.Field("outbound").Index(i)
		checkPort(ov.Field("port"), out.GetPort(), true)
		checkIP(ov.Field("address"), out.GetAddress(), false)
		tv := ov.Field("tags")
		checkServiceTag(tv, out.GetTags())
		checkTags(tv, out.GetTags(), false)
	}
	if tp := net.GetTransparentProxying(); tp != nil {
		tv := n.Field("transparentProxying")
		checkPort(tv.Field("redirectPortInbound"), tp.GetRedirectPortInbound(), true)
		checkPort(tv.Field("redirectPortOutbound"), tp.GetRedirectPortOutbound(), true)
	}
	checkPort(n.Field("admin").Field("port"), net.GetAdmin().GetPort(), false)
}

// checkIP checks a Dataplane address: an IP, as in Kuma. The addresses
// become EDS endpoints and listener addresses, which Envoy and grpc-go use
// as given, without resolving names.
func checkIP(v *Validator, addr string, required bool) {
	if addr == "" {
		if required {
			v.Addf("must not be empty")
		}
		return
	}
	if netpkg.ParseIP(addr) == nil {
		v.Addf("%q must be a valid IP address", addr)
	}
}

func checkAddress(v *Validator, addr string, required bool) {
	if addr == "" {
		if required {
			v.Addf("must not be empty")
		}
		return
	}
	if netpkg.ParseIP(addr) != nil {
		return
	}
	vv := NewValidator()
	CheckName(vv, addr)
	if vv.Err() != nil {
		v.Addf("%q must be an IP address or a hostname", addr)
	}
}

func validateZoneIngress(zi *meshv1.ZoneIngress, v *Validator) {
	n := v.Field("networking")
	checkAddress(n.Field("address"), zi.GetNetworking().GetAddress(), true)
	checkPort(n.Field("port"), zi.GetNetworking().GetPort(), true)
	checkAddress(n.Field("advertisedAddress"), zi.GetNetworking().GetAdvertisedAddress(), false)
	checkPort(n.Field("advertisedPort"), zi.GetNetworking().GetAdvertisedPort(), false)
	if zi.GetZone() != "" {
		CheckLabel(v.Field("zone"), zi.GetZone())
	}
	for i, s := range zi.GetAvailableServices() {
		sv := v.Field("availableServices").Index(i)
		CheckLabel(sv.Field("mesh"), s.GetMesh())
		checkServiceTag(sv.Field("tags"), s.GetTags())
		checkTags(sv.Field("tags"), s.GetTags(), false)
	}
}

func validateTrafficRoute(p *meshv1.TrafficRoute, v *Validator) {
	checkSourcesDestinations(v, p.GetSources(), p.GetDestinations())
	c := v.Field("conf")
	conf := p.GetConf()
	if conf == nil {
		c.Addf("must be set")
		return
	}
	if len(conf.GetSplit()) == 0 && len(conf.GetDestination()) == 0 {
		c.Addf("must have split or destination")
	}
	if len(conf.GetSplit()) > 0 && len(conf.GetDestination()) > 0 {
		c.Addf("must have only one of split and destination")
	}
	checkSplit(c.Field("split"), conf.GetSplit())
	if len(conf.GetDestination()) > 0 {
		checkRouteDestination(c.Field("destination"), conf.GetDestination())
	}
	switch conf.GetLoadBalancer().GetType() {
	case "", "round_robin", "least_request", "random", "ring_hash", "maglev":
	default:
		c.Field("loadBalancer").Field("type").Addf("must be one of round_robin, least_request, random, ring_hash, maglev")
	}
	for i, h := range conf.GetHttp() {
		hv := c.Field("http").Index(i)
		if h.GetMatch() == nil {
			hv.Field("match").Addf("must be set")
		}
		if len(h.GetSplit()) == 0 && len(h.GetDestination()) == 0 {
			hv.Addf("must have split or destination")
		}
		checkSplit(hv.Field("split"), h.GetSplit())
		if len(h.GetDestination()) > 0 {
			checkDestination(hv.Field("destination"), h.GetDestination())
		}
		validateModify(hv.Field("modify"), h)
	}
}

func checkSplit(v *Validator, split []*meshv1.TrafficRoute_Split) {
	var total uint32
	for i, s := range split {
		checkDestination(v.Index(i).Field("destination"), s.GetDestination())
		total += s.GetWeight()
	}
	if len(split) > 0 && total == 0 {
		v.Addf("weights must not all be zero")
	}
}

func checkDestination(v *Validator, d map[string]string) {
	checkServiceTag(v, d)
	checkTags(v, d, false)
}

// checkRouteDestination checks conf.destination, where weft.io/service "*"
// means the service the request was for (Kuma's default route,
// route-all-default, is written so).
func checkRouteDestination(v *Validator, d map[string]string) {
	if d[ServiceTag] != "*" {
		checkDestination(v, d)
		return
	}
	rest := make(map[string]string, len(d))
	for k, val := range d {
		if k != ServiceTag {
			rest[k] = val
		}
	}
	checkTags(v, rest, false)
}
