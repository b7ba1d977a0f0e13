package gui_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/weftmesh/weft/api-server/internal/gui"
	"github.com/weftmesh/weft/pkg/resource"
)

// tenThousand is one mesh of 10,000 dataplanes in 4 zones, half online.
func tenThousand(b *testing.B) gui.Readers {
	f := newFakes()
	f.meshes.Put(resource.New(resource.MeshType, "", "default"))
	for i := 0; i < 10000; i++ {
		name := fmt.Sprintf("svc-%03d-%05d", i%500, i)
		f.dps.Put(dataplane("default", name, fmt.Sprint("zone-", i%4), map[string]string{resource.ServiceTag: fmt.Sprint("svc-", i%500), "version": fmt.Sprint("v", i%3)}))
		if i%2 == 0 {
			f.insights.Put(online("default", name, "xds-1", time.Now().Add(720*time.Hour)))
		}
	}
	return f.readers()
}

// The GUI API's work per request with 10,000 dataplanes (JSON encoding
// excluded): the first dataplane page, a filtered page, the last page, the
// overview and a mesh's services; "cached" is the GUI's own readers
// (WithListCache: sorted lists kept while no dataplane changes), "uncached"
// sorts the informer's list on every call.
func BenchmarkGUI10kDataplanes(b *testing.B) {
	plain := tenThousand(b)
	for _, variant := range []struct {
		name string
		r    gui.Readers
	}{{"uncached", plain}, {"cached", plain.WithListCache()}} {
		r := variant.r
		for _, bc := range []struct{ name, query string }{
			{"page", "mesh=default"},
			{"filtered", "mesh=default&name=svc-42&tag=version:v1&status=online"},
			{"last-page", "mesh=default&offset=9950"},
		} {
			q, err := gui.ParseDataplaneQuery(bc.query)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(variant.name+"/"+bc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					_ = r.DataplanesPage(q)
				}
			})
		}
		b.Run(variant.name+"/overview", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = r.Overview(time.Now())
			}
		})
		b.Run(variant.name+"/services", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = r.Services("default")
			}
		})
	}
}
