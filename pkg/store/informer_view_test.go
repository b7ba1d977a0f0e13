package store

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/pkg/resource"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// addressOnly keeps a Dataplane's address and nothing else of its spec.
var addressOnly = &View{Name: "address only", Transform: func(r *resource.Resource) *resource.Resource {
	dp := r.Spec.(*meshv1.Dataplane)
	return &resource.Resource{Meta: r.Meta, Spec: &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: dp.GetNetworking().GetAddress()}}}
}}

func TestInformerViewTransformsWhatIsCachedAndDelivered(t *testing.T) {
	st, _ := newInformerStore(t)
	ctx := infCtx(t)
	for _, r := range []*resource.Resource{testMesh("a"), testDP("a", "dp-1")} {
		if _, err := st.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	f := NewInformers(st)
	inf := f.For(resource.DataplaneType, addressOnly)
	if f.For(resource.DataplaneType, addressOnly) != inf {
		t.Fatal("For with the same view returned another informer")
	}
	rec := newRecorder()
	inf.Subscribe(ctx, "rec", rec.handle)
	if _, err := st.Create(ctx, testDP("a", "dp-2")); err != nil { // after the list: a watch event
		t.Fatal(err)
	}
	waitUntil(t, "both dataplanes delivered", rec.has("a/dp-1", "a/dp-2"))
	stripped := func(r *resource.Resource) bool {
		dp := r.Spec.(*meshv1.Dataplane)
		return dp.GetNetworking().GetAddress() == "10.0.0.1" && len(dp.GetNetworking().GetInbound()) == 0
	}
	for _, name := range []string{"dp-1", "dp-2"} {
		r, ok := inf.Get("a", name)
		if !ok || !stripped(r) {
			t.Fatalf("cached %s = %v, want the view (address, no inbounds)", name, r)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, b := range rec.batches {
		for _, ev := range b.Events {
			for _, r := range append(ev.Resources, ev.Resource) {
				if r != nil && !stripped(r) {
					t.Fatalf("delivered %v, want the view", r)
				}
			}
		}
	}
}

func TestInformersRejectConflictingViews(t *testing.T) {
	other := &View{Name: "other", Transform: addressOnly.Transform} // same code, another view
	mustPanic := func(what, want string, fn func()) {
		t.Helper()
		defer func() {
			p := recover()
			if p == nil {
				t.Fatalf("%s: no panic", what)
			}
			if !strings.Contains(p.(string), want) {
				t.Fatalf("%s: panic %q, want it to mention %q", what, p, want)
			}
		}()
		fn()
	}
	f := NewInformers(nil)
	f.For(resource.DataplaneType, addressOnly)
	mustPanic("whole resources after a view", "same View", func() { f.For(resource.DataplaneType) })
	mustPanic("another view", "holds view address only, a consumer asked for view other", func() { f.For(resource.DataplaneType, other) })
	mustPanic("two views", "more than one view", func() { f.For(resource.DataplaneType, addressOnly, addressOnly) })
	f.For(resource.MeshType)
	mustPanic("a view after whole resources", "holds whole resources", func() { f.For(resource.MeshType, other) })
	mustPanic("a view for every type", "Informers.For", func() { NewInformers(nil, InformerOptions{View: addressOnly}) })
	// The fixed views still hand out the same informers.
	if f.For(resource.DataplaneType, addressOnly) == nil || f.For(resource.MeshType) == nil {
		t.Fatal("no informer")
	}
}
