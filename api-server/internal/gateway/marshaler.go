// Package gateway is the api-server's REST face: grpc-gateway with a
// marshaler for Weft's flat resource form and Kuma-shaped errors.
package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/pkg/resource"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// MaxBodySize bounds a request body.
const MaxBodySize = resource.MaxDocumentSize

// Marshaler renders resources in the flat form and everything else as
// protojson (camelCase field names).
type Marshaler struct {
	runtime.JSONPb
}

// NewMarshaler returns the marshaler.
func NewMarshaler() *Marshaler {
	return &Marshaler{JSONPb: runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

// Marshal renders v.
func (m *Marshaler) Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case *apiv1.Resource:
		return flat(x)
	case *apiv1.ListResponse:
		return flatList(x)
	}
	return m.JSONPb.Marshal(v)
}

func flat(a *apiv1.Resource) ([]byte, error) {
	r, err := resource.FromAPI(a, nil)
	if err != nil {
		return nil, err
	}
	return resource.MarshalJSON(r)
}

// flatList renders {total, items, next, nextOffset}; "+insights" lists put
// each item's insight under "insight".
func flatList(l *apiv1.ListResponse) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"total":%d,"items":[`, l.GetTotal())
	for i, it := range l.GetItems() {
		if i > 0 {
			b.WriteByte(',')
		}
		var ins *apiv1.Resource
		if i < len(l.GetInsights()) {
			ins = l.GetInsights()[i]
		}
		js, err := withInsight(it, ins, len(l.GetInsights()) > 0)
		if err != nil {
			return nil, err
		}
		b.Write(js)
	}
	// Like Kuma: the next page's full URL, or null on the last page.
	next := []byte("null")
	if l.GetNext() != "" {
		next, _ = json.Marshal(l.GetNext())
	}
	nextOff, _ := json.Marshal(l.GetNextOffset())
	fmt.Fprintf(&b, `],"next":%s,"nextOffset":%s}`, next, nextOff)
	return b.Bytes(), nil
}

// withInsight renders an item of a "+insights" listing (or GET): the flat
// item with its insight under "insight" (an absent insight is an empty
// Resource), and for zones their "state" and "reason"
// (resource.ZoneState). joined is false for plain listings.
func withInsight(it, ins *apiv1.Resource, joined bool) ([]byte, error) {
	js, err := flat(it)
	if err != nil || !joined {
		return js, err
	}
	var insight *resource.Resource
	if ins.GetMeta() != nil {
		if insight, err = resource.FromAPI(ins, nil); err != nil {
			return nil, err
		}
		ijs, err := resource.MarshalJSON(insight)
		if err != nil {
			return nil, err
		}
		js = append(js[:len(js)-1], `,"insight":`...)
		js = append(append(js, ijs...), '}')
	}
	if it.GetMeta().GetType() == resource.ZoneType.Name {
		z, err := resource.FromAPI(it, resource.ZoneType)
		if err != nil {
			return nil, err
		}
		var zi *meshv1.ZoneInsight
		if insight != nil {
			zi, _ = insight.Spec.(*meshv1.ZoneInsight)
		}
		zone, _ := z.Spec.(*meshv1.Zone)
		state, reason := resource.ZoneState(zone, zi)
		sj, _ := json.Marshal(state)
		js = append(js[:len(js)-1], `,"state":`...)
		js = append(js, sj...)
		if reason != "" {
			rj, _ := json.Marshal(reason)
			js = append(append(js, `,"reason":`...), rj...)
		}
		js = append(js, '}')
	}
	return js, nil
}

// NewDecoder decodes request bodies. A resource body is passed through as
// raw flat JSON for the server to decode (so its errors carry field paths).
func (m *Marshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		if rp, ok := v.(**apiv1.Resource); ok {
			data, err := io.ReadAll(io.LimitReader(r, MaxBodySize+1))
			if err != nil {
				return err
			}
			if len(data) > MaxBodySize {
				return fmt.Errorf("request body is larger than %d bytes", MaxBodySize)
			}
			if len(bytes.TrimSpace(data)) == 0 {
				return errors.New("request body is empty: send the resource")
			}
			*rp = &apiv1.Resource{Spec: &anypb.Any{TypeUrl: resource.FlatJSONTypeURL, Value: data}}
			return nil
		}
		return m.JSONPb.NewDecoder(io.LimitReader(r, MaxBodySize)).Decode(v)
	})
}

// ContentType is JSON.
func (m *Marshaler) ContentType(any) string { return "application/json" }
