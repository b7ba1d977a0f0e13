package cmd

import (
	"encoding/json"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestOrderedYAMLKeepsKeyOrder(t *testing.T) {
	got, err := jsonToOrderedYAML([]byte(`{"type":"Dataplane","mesh":"default","name":"web-1","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"weft.io/service":"web"}}]},"creationTime":"2026-01-02T03:04:05Z","version":"2","ratio":0.5,"big":18446744073709551615,"on":true,"none":null}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      weft.io/service: web
creationTime: "2026-01-02T03:04:05Z"
version: "2"
ratio: 0.5
big: 18446744073709551615
"on": true
none: null
`
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

// FuzzOrderedYAML: whatever JSON the server sends, the YAML we print must
// mean the same thing.
func FuzzOrderedYAML(f *testing.F) {
	f.Add([]byte(`{"type":"Mesh","name":"a","x":[1,2.5,"3",true,null,{"y":"yes"}]}`))
	f.Add([]byte(`{"":"","~":"null","0x1":"1e3"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"a":1,"b":2,"a":{"c":3}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want any
		if json.Unmarshal(data, &want) != nil {
			return
		}
		y, err := jsonToOrderedYAML(data)
		if err != nil {
			t.Fatalf("valid JSON %q refused: %v", data, err)
		}
		js, err := yaml.YAMLToJSON(y)
		if err != nil {
			t.Fatalf("YAML for %q does not parse: %v\n%s", data, err, y)
		}
		var got any
		if err := json.Unmarshal(js, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip of %q: got %v, want %v\n%s", data, got, want, y)
		}
	})
}
