package resource_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
)

// Selector fragments for policies.
const (
	anySrc = `"sources":[{"match":{"weft.io/service":"*"}}]`
	anyDst = `"destinations":[{"match":{"weft.io/service":"*"}}]`
	srcDst = anySrc + "," + anyDst
	// srcDstHTTP is srcDst to an HTTP destination, which faults need.
	srcDstHTTP = anySrc + `,"destinations":[{"match":{"weft.io/service":"*","weft.io/protocol":"http"}}]`
)

// validCase is one document and the exact field paths Validate must report
// (none for a valid document).
type validCase struct {
	name string
	doc  string
	want []string
}

// TestValidateRules has a case for every validation rule: the smallest
// document that breaks it, and the field path each problem must be
// reported at (sorted; tag problems come from maps and have no order).
func TestValidateRules(t *testing.T) {
	long := strings.Repeat("a", 64)
	cases := []validCase{
		// Identity of every resource.
		{"unknown type", `{"type":"Nope","name":"x"}`, []string{"type"}},
		{"empty name", `{"type":"Mesh","name":""}`, []string{"name", "name"}},
		{"name too long", `{"type":"Secret","mesh":"m","name":"` + strings.Repeat("a", 254) + `","data":"eA=="}`, []string{"name"}},
		{"name uppercase", `{"type":"Secret","mesh":"m","name":"Abc","data":"eA=="}`, []string{"name"}},
		{"name with dots ok", `{"type":"Secret","mesh":"m","name":"a.b-c","data":"eA=="}`, nil},
		{"mesh missing", `{"type":"Secret","name":"s","data":"eA=="}`, []string{"mesh"}},
		{"mesh not a label", `{"type":"Secret","mesh":"a.b","name":"s","data":"eA=="}`, []string{"mesh"}},
		{"mesh label too long", `{"type":"Secret","mesh":"` + long + `","name":"s","data":"eA=="}`, []string{"mesh"}},
		{"global with mesh", `{"type":"GlobalSecret","mesh":"m","name":"s","data":"eA=="}`, []string{"mesh"}},
		{"zone name is a label", `{"type":"Zone","name":"a.b"}`, []string{"name"}},
		{"bad label name", `{"type":"Mesh","name":"m","labels":{"-bad":"x","ok/key":"y"}}`, []string{`labels["-bad"]`}},

		// Mesh.
		{"mesh valid", `{"type":"Mesh","name":"m","mtls":{"enabledBackend":"ca","backends":[{"name":"ca","type":"builtin"}]}}`, nil},
		{"backend name not a label", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"Ca","type":"builtin"}]}}`, []string{"mtls.backends[0].name"}},
		{"duplicate backend", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"builtin"},{"name":"ca","type":"builtin"}]}}`, []string{"mtls.backends[1].name"}},
		{"backend type", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"vault"}]}}`, []string{"mtls.backends[0].type"}},
		{"rsaBits without rsa", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"builtin","builtin":{"caCert":{"rsaBits":2048}}}]}}`, []string{"mtls.backends[0].builtin.caCert.rsaBits"}},
		{"rsaBits value", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"builtin","builtin":{"caCert":{"keyType":"rsa","rsaBits":3072}}}]}}`, []string{"mtls.backends[0].builtin.caCert.rsaBits"}},
		{"rsa 4096 ok", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"builtin","builtin":{"caCert":{"keyType":"rsa","rsaBits":4096}}}]}}`, nil},
		{"keyType", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"builtin","builtin":{"caCert":{"keyType":"dsa"}}}]}}`, []string{"mtls.backends[0].builtin.caCert.keyType"}},
		{"ca expiration", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"builtin","builtin":{"caCert":{"expiration":"forever"}}}]}}`, []string{"mtls.backends[0].builtin.caCert.expiration"}},
		{"ca expiration days ok", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"builtin","builtin":{"caCert":{"expiration":"10y"}}}]}}`, nil},
		{"builtin with provided", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"builtin","provided":{"cert":{"secret":"c"},"key":{"secret":"k"}}}]}}`, []string{"mtls.backends[0].provided"}},
		{"provided missing", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"provided"}]}}`, []string{"mtls.backends[0].provided"}},
		{"provided with builtin", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"provided","provided":{"cert":{"secret":"c"},"key":{"inlineString":"k"}},"builtin":{}}]}}`, []string{"mtls.backends[0].builtin"}},
		{"provided bad secret name", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"provided","provided":{"cert":{"secret":"C_1"},"key":{"secret":"k"}}}]}}`, []string{"mtls.backends[0].provided.cert.secret"}},
		{"provided both missing", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"provided","provided":{}}]}}`, []string{"mtls.backends[0].provided.cert", "mtls.backends[0].provided.key"}},
		{"dp cert rotation", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"ca","type":"builtin","dpCert":{"rotation":{"expiration":"0s"}}}]}}`, []string{"mtls.backends[0].dpCert.rotation.expiration"}},
		{"enabledBackend undefined", `{"type":"Mesh","name":"m","mtls":{"enabledBackend":"x"}}`, []string{"mtls.enabledBackend"}},
		{"mtls mode", `{"type":"Mesh","name":"m","mtls":{"mode":"lax"}}`, []string{"mtls.mode"}},
		{"mtls permissive ok", `{"type":"Mesh","name":"m","mtls":{"mode":"permissive"}}`, nil},
		{"logging backend type", `{"type":"Mesh","name":"m","logging":{"backends":[{"name":"l","type":"syslog"}]}}`, []string{"logging.backends[0].type"}},
		{"logging duplicate and default", `{"type":"Mesh","name":"m","logging":{"defaultBackend":"x","backends":[{"name":"l","type":"file"},{"name":"l","type":"tcp"}]}}`, []string{"logging.backends[1].name", "logging.defaultBackend"}},
		{"tracing sampling", `{"type":"Mesh","name":"m","tracing":{"defaultBackend":"z","backends":[{"name":"z","type":"zipkin","sampling":101}]}}`, []string{"tracing.backends[0].sampling"}},
		{"tracing name", `{"type":"Mesh","name":"m","tracing":{"backends":[{"name":"","type":"otel"}]}}`, []string{"tracing.backends[0].name"}},
		{"metrics port and type", `{"type":"Mesh","name":"m","metrics":{"enabledBackend":"p","backends":[{"name":"p","type":"statsd","port":70000}]}}`, []string{"metrics.backends[0].port", "metrics.backends[0].type"}},
		{"metrics enabled undefined", `{"type":"Mesh","name":"m","metrics":{"enabledBackend":"p"}}`, []string{"metrics.enabledBackend"}},

		// Dataplane.
		{"dataplane valid", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"web","weft.io/protocol":"http"}}],"outbound":[{"port":9000,"tags":{"weft.io/service":"api"}}]}}`, nil},
		{"no networking", `{"type":"Dataplane","mesh":"m","name":"d"}`, []string{"networking"}},
		{"no address", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"inbound":[{"port":80,"tags":{"weft.io/service":"web"}}]}}`, []string{"networking.address"}},
		{"hostname address refused", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"web.default.svc","inbound":[{"port":80,"tags":{"weft.io/service":"web"}}]}}`, []string{"networking.address"}},
		{"bad address", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"not an address","advertisedAddress":"-x-","inbound":[{"port":80,"tags":{"weft.io/service":"web"}}]}}`, []string{"networking.address", "networking.advertisedAddress"}},
		{"no inbound", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1"}}`, []string{"networking"}},
		{"gateway valid", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","gateway":{"type":"builtin","tags":{"weft.io/service":"edge"}}}}`, nil},
		{"gateway with inbound", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","gateway":{"tags":{"weft.io/service":"edge"}},"inbound":[{"port":80,"tags":{"weft.io/service":"web"}}]}}`, []string{"networking.inbound"}},
		{"gateway without service", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","gateway":{"tags":{"a":"b"}}}}`, []string{"networking.gateway.tags"}},
		{"gateway wildcard tag", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","gateway":{"tags":{"weft.io/service":"*"}}}}`, []string{`networking.gateway.tags["weft.io/service"]`}},
		{"gateway type", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","gateway":{"type":"edge","tags":{"weft.io/service":"edge"}}}}`, []string{"networking.gateway.type"}},
		{"duplicate inbound port", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"a"}},{"port":80,"tags":{"weft.io/service":"b"}}]}}`, []string{"networking.inbound[1].port"}},
		{"inbound ports and addresses", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","inbound":[{"port":80,"servicePort":70000,"serviceAddress":"*","address":"_","tags":{"weft.io/service":"a"}}]}}`,
			[]string{"networking.inbound[0].address", "networking.inbound[0].serviceAddress", "networking.inbound[0].servicePort"}},
		{"inbound tag problems", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"a","bad key!":"x","empty":"","weft.io/zone":"*"}}]}}`,
			[]string{`networking.inbound[0].tags["bad key!"]`, `networking.inbound[0].tags["empty"]`, `networking.inbound[0].tags["weft.io/zone"]`}},
		{"outbound", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"a"}}],"outbound":[{"port":0,"address":"?","tags":{}}]}}`,
			[]string{"networking.outbound[0].address", "networking.outbound[0].port", `networking.outbound[0].tags["weft.io/service"]`}},
		{"transparent proxying", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"a"}}],"transparentProxying":{"redirectPortInbound":15006}}}`,
			[]string{"networking.transparentProxying.redirectPortOutbound"}},
		{"admin port", `{"type":"Dataplane","mesh":"m","name":"d","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"a"}}],"admin":{"port":65536}}}`,
			[]string{"networking.admin.port"}},

		// ZoneIngress.
		{"zone ingress valid", `{"type":"ZoneIngress","name":"zi","zone":"z1","networking":{"address":"10.0.0.1","port":10001},"availableServices":[{"mesh":"m","tags":{"weft.io/service":"web"}}]}`, nil},
		{"zone ingress problems", `{"type":"ZoneIngress","name":"zi","zone":"Z.1","networking":{"advertisedAddress":"!","advertisedPort":70000},"availableServices":[{"mesh":"","tags":{}}]}`,
			[]string{"availableServices[0].mesh", `availableServices[0].tags["weft.io/service"]`, "networking.address", "networking.advertisedAddress", "networking.advertisedPort", "networking.port", "zone"}},

		// VirtualIP.
		{"vip valid", `{"type":"VirtualIP","mesh":"m","name":"web","service":"web","ip":"240.0.0.1"}`, nil},
		{"vip problems", `{"type":"VirtualIP","mesh":"m","name":"web","service":"a.b","ip":"::1"}`, []string{"ip", "service"}},

		// TrafficPermission and selectors.
		{"permission valid", `{"type":"TrafficPermission","mesh":"m","name":"p",` + srcDst + `}`, nil},
		{"permission no selectors", `{"type":"TrafficPermission","mesh":"m","name":"p"}`, []string{"destinations", "sources"}},
		{"selector tags", `{"type":"TrafficPermission","mesh":"m","name":"p","sources":[{"match":{"weft.io/service":"A"}}],"destinations":[{"match":{"weft.io/protocol":"udp"}},{"match":{"weft.io/protocol":"*","k":""}}]}`,
			[]string{`destinations[0].match["weft.io/protocol"]`, `destinations[1].match["k"]`, `sources[0].match["weft.io/service"]`}},

		// TrafficRoute.
		{"route valid", `{"type":"TrafficRoute","mesh":"m","name":"r",` + srcDst + `,"conf":{"destination":{"weft.io/service":"web"},"loadBalancer":{"type":"maglev"}}}`, nil},
		{"route no conf", `{"type":"TrafficRoute","mesh":"m","name":"r",` + srcDst + `}`, []string{"conf"}},
		{"route neither", `{"type":"TrafficRoute","mesh":"m","name":"r",` + srcDst + `,"conf":{"loadBalancer":{"type":"random"}}}`, []string{"conf"}},
		{"route both", `{"type":"TrafficRoute","mesh":"m","name":"r",` + srcDst + `,"conf":{"split":[{"weight":1,"destination":{"weft.io/service":"a"}}],"destination":{"weft.io/service":"b"}}}`, []string{"conf"}},
		{"route destination", `{"type":"TrafficRoute","mesh":"m","name":"r",` + srcDst + `,"conf":{"destination":{"version":"v1"}}}`, []string{`conf.destination["weft.io/service"]`}},
		{"route lb", `{"type":"TrafficRoute","mesh":"m","name":"r",` + srcDst + `,"conf":{"destination":{"weft.io/service":"a"},"loadBalancer":{"type":"fastest"}}}`, []string{"conf.loadBalancer.type"}},
		{"route http", `{"type":"TrafficRoute","mesh":"m","name":"r",` + srcDst + `,"conf":{"destination":{"weft.io/service":"a"},"http":[{"destination":{"weft.io/service":"b"}},{"match":{"path":{"prefix":"/"}},"split":[{"weight":0,"destination":{"weft.io/service":"c"}}]},{"match":{"path":{"prefix":"/x"}}}]}}`,
			[]string{"conf.http[0].match", "conf.http[1].split", "conf.http[2]"}},

		// HealthCheck.
		{"health check valid", `{"type":"HealthCheck","mesh":"m","name":"h",` + srcDst + `,"conf":{"interval":"10s","timeout":"2s","unhealthyThreshold":3,"healthyThreshold":1,"http":{"expectedStatuses":[200]}}}`, nil},
		{"health check no conf", `{"type":"HealthCheck","mesh":"m","name":"h",` + srcDst + `}`, []string{"conf"}},
		{"health check problems", `{"type":"HealthCheck","mesh":"m","name":"h",` + srcDst + `,"conf":{"timeout":"x","http":{"expectedStatuses":[99,600]}}}`,
			[]string{"conf.healthyThreshold", "conf.http.expectedStatuses[0]", "conf.http.expectedStatuses[1]", "conf.interval", "conf.timeout", "conf.unhealthyThreshold"}},

		// CircuitBreaker.
		{"circuit breaker valid", `{"type":"CircuitBreaker","mesh":"m","name":"c",` + srcDst + `,"conf":{"interval":"1s","baseEjectionTime":"30s","maxEjectionPercent":20}}`, nil},
		{"circuit breaker no conf", `{"type":"CircuitBreaker","mesh":"m","name":"c",` + srcDst + `}`, []string{"conf"}},
		{"circuit breaker problems", `{"type":"CircuitBreaker","mesh":"m","name":"c",` + srcDst + `,"conf":{"interval":"-1s","baseEjectionTime":"soon","maxEjectionPercent":101}}`,
			[]string{"conf.baseEjectionTime", "conf.interval", "conf.maxEjectionPercent"}},

		// FaultInjection.
		{"fault valid", `{"type":"FaultInjection","mesh":"m","name":"f",` + srcDstHTTP + `,"conf":{"delay":{"percentage":50,"value":"5s"},"abort":{"percentage":10,"httpStatus":503},"responseBandwidth":{"percentage":1,"limit":"100kbps"}}}`, nil},
		{"fault empty", `{"type":"FaultInjection","mesh":"m","name":"f",` + srcDstHTTP + `}`, []string{"conf"}},
		{"fault not http", `{"type":"FaultInjection","mesh":"m","name":"f",` + srcDst + `,"conf":{"delay":{"percentage":50,"value":"5s"}}}`, []string{"destinations[0].match"}},
		{"fault problems", `{"type":"FaultInjection","mesh":"m","name":"f",` + srcDstHTTP + `,"conf":{"delay":{"percentage":-1},"abort":{"percentage":200,"httpStatus":42},"responseBandwidth":{"limit":"fast"}}}`,
			[]string{"conf.abort.httpStatus", "conf.abort.percentage", "conf.delay.percentage", "conf.delay.value", "conf.responseBandwidth.limit"}},

		// TrafficLog, TrafficTrace.
		{"traffic log", `{"type":"TrafficLog","mesh":"m","name":"l",` + anySrc + `}`, []string{"destinations"}},
		{"traffic trace", `{"type":"TrafficTrace","mesh":"m","name":"t","selectors":[{"match":{}}]}`, []string{"selectors[0].match"}},
		{"traffic trace none", `{"type":"TrafficTrace","mesh":"m","name":"t"}`, []string{"selectors"}},

		// Retry.
		{"retry valid", `{"type":"Retry","mesh":"m","name":"r",` + srcDst + `,"conf":{"http":{"perTryTimeout":"1s","backOff":{"baseInterval":"25ms","maxInterval":"1s"}},"grpc":{"retryOn":["unavailable"]}}}`, nil},
		{"retry empty", `{"type":"Retry","mesh":"m","name":"r",` + srcDst + `,"conf":{}}`, []string{"conf"}},
		{"retry problems", `{"type":"Retry","mesh":"m","name":"r",` + srcDst + `,"conf":{"http":{"perTryTimeout":"x","backOff":{"maxInterval":"y"}},"grpc":{"backOff":{"baseInterval":"-1s"},"retryOn":["unavailable","teapot"]}}}`,
			[]string{"conf.grpc.backOff.baseInterval", "conf.grpc.retryOn[1]", "conf.http.backOff.baseInterval", "conf.http.backOff.maxInterval", "conf.http.perTryTimeout"}},

		// Timeout.
		{"timeout valid", `{"type":"Timeout","mesh":"m","name":"t",` + srcDst + `,"conf":{"connectTimeout":"5s","tcp":{"idleTimeout":"1h"},"http":{"requestTimeout":"15s","idleTimeout":"1h"},"grpc":{"streamIdleTimeout":"5m","maxStreamDuration":"30m"}}}`, nil},
		{"timeout problems", `{"type":"Timeout","mesh":"m","name":"t",` + srcDst + `,"conf":{"tcp":{"idleTimeout":"0s"},"http":{"idleTimeout":"x"},"grpc":{"streamIdleTimeout":"1q","maxStreamDuration":"-5m"}}}`,
			[]string{"conf.grpc.maxStreamDuration", "conf.grpc.streamIdleTimeout", "conf.http.idleTimeout", "conf.tcp.idleTimeout"}},

		// ProxyTemplate.
		{"proxy template valid", `{"type":"ProxyTemplate","mesh":"m","name":"p","selectors":[{"match":{"weft.io/service":"*"}}],"conf":{"modifications":[{"type":"cluster","operation":"patch","value":"connectTimeout: 5s"}],"resources":[{"name":"x","version":"v1","resource":"'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster"}]}}`, nil},
		{"proxy template problems", `{"type":"ProxyTemplate","mesh":"m","name":"p","selectors":[{"match":{"weft.io/service":"*"}}],"conf":{"modifications":[{"type":"route","operation":"replace"}],"resources":[{"name":""}]}}`,
			[]string{"conf.modifications[0]", "conf.resources[0].name", "conf.resources[0].resource", "conf.resources[0].version"}},

		// Secrets.
		{"secret empty", `{"type":"Secret","mesh":"m","name":"s"}`, []string{"data"}},
		{"global secret empty", `{"type":"GlobalSecret","name":"s"}`, []string{"data"}},
		{"global secret valid", `{"type":"GlobalSecret","name":"s","data":"eA=="}`, nil},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			r, err := resource.Unmarshal([]byte(tc.doc), nil)
			if err != nil {
				if tc.want != nil && tc.want[0] == "type" {
					return // unknown types are refused by the decoder already
				}
				t.Fatalf("decode: %v", err)
			}
			err = resource.Validate(r)
			var got []string
			if err != nil {
				for _, c := range err.(*resource.ValidationError).Causes {
					if c.Message == "" {
						t.Errorf("%s: empty message", c.Field)
					}
					got = append(got, c.Field)
				}
			}
			sort.Strings(got)
			want := append([]string(nil), tc.want...)
			sort.Strings(want)
			if strings.Join(got, " | ") != strings.Join(want, " | ") {
				t.Fatalf("field paths\n got %q\nwant %q\n(%v)", got, want, err)
			}
		})
	}
}
