package client_test

import (
	"testing"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
	"github.com/weftmesh/weft/weftctl/internal/client"
)

// The client parses whatever the network hands it; none of these may panic,
// and what they accept must be usable.

func FuzzDecodeObject(f *testing.F) {
	f.Add([]byte(`{"type":"Dataplane","mesh":"default","name":"dp-1","networking":{"address":"10.0.0.1","inbound":[{"port":80,"tags":{"weft.io/service":"web"}}]},"creationTime":"2026-01-01T00:00:00Z","version":"7","labels":{"a":"b"}}`))
	f.Add([]byte(`{"type":"Gizmo","name":"x"}`))
	f.Add([]byte(`{"name":"x","version":12,"creationTime":"yesterday"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := client.DecodeObject(data)
		if err != nil {
			return
		}
		if o.Meta == nil || o.Meta.GetName() == "" {
			t.Fatalf("accepted an object without a name: %s", data)
		}
		if o.Spec == nil && o.SpecErr == nil {
			t.Fatalf("no spec and no reason: %s", data)
		}
	})
}

func FuzzDecodeInsightObject(f *testing.F) {
	f.Add([]byte(`{"type":"Dataplane","mesh":"m","name":"a","insight":{"subscriptions":[{"connectTime":"2026-01-01T00:00:00Z"}]}}`))
	f.Add([]byte(`{"type":"Zone","name":"z","insight":null}`))
	f.Add([]byte(`{"type":"Zone","name":"z","insight":{"type":"ZoneInsight","name":"z","subscriptions":[{}]}}`))
	f.Add([]byte(`{"type":"Zone","name":"z","insight":[1]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := client.DecodeInsightObject(data)
		if err != nil {
			return
		}
		_ = client.DecodeInsight(o.Insight, &meshv1.DataplaneInsight{})
		_ = client.DecodeInsight(o.Insight, &meshv1.ZoneInsight{})
	})
}

func FuzzDecodePage(f *testing.F) {
	f.Add([]byte(`{"total":3,"items":[{"type":"Mesh","name":"a"}],"next":"http://h/meshes?offset=a","nextOffset":"a"}`))
	f.Add([]byte(`{"total":"3","items":[],"next":null}`))
	f.Add([]byte(`{"total":-1}`))
	f.Add([]byte(`{"next":"%zz"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, total, _, err := client.DecodePage(data)
		if err == nil && total < 0 {
			t.Fatalf("negative total accepted: %s", data)
		}
	})
}

func FuzzParseError(f *testing.F) {
	f.Add(400, []byte(`{"title":"Invalid","details":"d","causes":[{"field":"a","message":"b"}]}`))
	f.Add(502, []byte("<html>bad gateway</html>"))
	f.Add(404, []byte(`{"message":"x"}`))
	f.Add(999, []byte{0xff, 0xfe})
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := client.ParseError(status, body)
		if e.Title == "" {
			t.Fatalf("no title for %d %q", status, body)
		}
		_ = e.Error()
	})
}

func FuzzDecodeToken(f *testing.F) {
	f.Add([]byte(`{"token":"abc","expiresTime":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"token":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := client.DecodeToken(data)
		if err == nil && tok.Token == "" {
			t.Fatalf("empty token accepted: %s", data)
		}
	})
}
