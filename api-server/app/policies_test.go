package app_test

import (
	"strings"
	"testing"
)

// TestBadPolicyInputRefused: policies with bad input get 400 with the
// field path of each problem and are not stored; a TrafficLog or
// TrafficTrace naming a backend the mesh does not have is refused too.
func TestBadPolicyInputRefused(t *testing.T) {
	c := start(t, "standalone", "")
	c.must("PUT", "/meshes/default", `{"type":"Mesh","name":"default",
		"logging":{"backends":[{"name":"file","type":"file","path":"/tmp/access.log"}]},
		"tracing":{"backends":[{"name":"zipkin","type":"zipkin","url":"http://zipkin:9411/api/v2/spans"}]}}`, 201)
	const sd = `"sources":[{"match":{"weft.io/service":"*"}}],"destinations":[{"match":{"weft.io/service":"backend"}}]`
	for name, tc := range map[string]struct{ coll, body, field, message string }{
		"negative weight": {"traffic-routes", `{"type":"TrafficRoute",` + sd + `,"conf":{"split":[{"weight":-20,"destination":{"weft.io/service":"backend"}}]}}`,
			"", "weight"},
		"zero weights": {"traffic-routes", `{"type":"TrafficRoute",` + sd + `,"conf":{"split":[{"weight":0,"destination":{"weft.io/service":"backend"}}]}}`,
			"conf.split", "must not all be zero"},
		"percent over 100": {"fault-injections", `{"type":"FaultInjection",` + sd + `,"conf":{"abort":{"percentage":150,"httpStatus":503}}}`,
			"conf.abort.percentage", "0..100"},
		"malformed duration": {"retries", `{"type":"Retry",` + sd + `,"conf":{"http":{"perTryTimeout":"soon"}}}`,
			"conf.http.perTryTimeout", ""},
		"negative duration": {"timeouts", `{"type":"Timeout",` + sd + `,"conf":{"connectTimeout":"-1s"}}`,
			"conf.connectTimeout", ""},
		"unknown logging backend": {"traffic-logs", `{"type":"TrafficLog",` + sd + `,"conf":{"backend":"logstash"}}`,
			"conf.backend", `logging backend "logstash" is not defined`},
		"unknown tracing backend": {"traffic-traces", `{"type":"TrafficTrace","selectors":[{"match":{"weft.io/service":"*"}}],"conf":{"backend":"jaeger"}}`,
			"conf.backend", `tracing backend "jaeger" is not defined`},
	} {
		path := "/meshes/default/" + tc.coll + "/bad"
		r := c.do("PUT", path, c.admin, tc.body)
		if r.code != 400 {
			t.Errorf("%s: got %d, want 400: %s", name, r.code, r.raw)
			continue
		}
		if tc.field != "" {
			if got, ok := causes(r)[tc.field]; !ok || !strings.Contains(got, tc.message) {
				t.Errorf("%s: cause for %q = %q, want %q: %s", name, tc.field, got, tc.message, r.raw)
			}
		} else if !strings.Contains(r.raw, tc.message) {
			t.Errorf("%s: %s does not mention %q", name, r.raw, tc.message)
		}
		c.must("GET", path, "", 404)
	}
	// The backends the mesh has are accepted.
	c.must("PUT", "/meshes/default/traffic-logs/ok", `{"type":"TrafficLog",`+sd+`,"conf":{"backend":"file"}}`, 201)
	c.must("PUT", "/meshes/default/traffic-traces/ok", `{"type":"TrafficTrace","selectors":[{"match":{"weft.io/service":"*"}}],"conf":{"backend":"zipkin"}}`, 201)
}
