package resource_test

import (
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
)

// The decoder's cost per document: a Dataplane as REST clients send it
// (JSON, the fast path) and as weftctl reads it (YAML).
const (
	benchDataplaneJSON = `{"type":"Dataplane","mesh":"default","name":"web-1","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"servicePort":18080,"tags":{"weft.io/service":"web","weft.io/protocol":"http","version":"v1"}}],"outbound":[{"port":33033,"tags":{"weft.io/service":"redis"}},{"port":33034,"tags":{"weft.io/service":"api"}}]}}`
	benchDataplaneYAML = `type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    servicePort: 18080
    tags:
      weft.io/service: web
      weft.io/protocol: http
      version: v1
  outbound:
  - port: 33033
    tags:
      weft.io/service: redis
  - port: 33034
    tags:
      weft.io/service: api
`
)

func BenchmarkUnmarshal(b *testing.B) {
	for _, c := range []struct{ name, doc string }{{"json", benchDataplaneJSON}, {"yaml", benchDataplaneYAML}} {
		b.Run(c.name, func(b *testing.B) {
			doc := []byte(c.doc)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := resource.Unmarshal(doc, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
