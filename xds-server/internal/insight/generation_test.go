package insight

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// TestGenerationError: a generation error reported before the stream is
// recorded still reaches the insight once it is; every stream of the
// dataplane carries it; it is bounded, cleared by "", and forgotten with
// the last stream.
func TestGenerationError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	st := store.New(etcdtest.Client(t, nil))
	if _, err := st.Create(ctx, resource.New(resource.MeshType, "", "m")); err != nil {
		t.Fatal(err)
	}
	rec := New(st, "replica-1", 5*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), func(string, string) (CertInfo, bool) { return CertInfo{}, false })
	done := make(chan struct{})
	go func() { _ = rec.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	subs := func() []*meshv1.DiscoverySubscription {
		r, err := st.Get(ctx, resource.DataplaneInsightType, "m", "web-1")
		if err != nil {
			return nil
		}
		return r.Spec.(*meshv1.DataplaneInsight).GetSubscriptions()
	}

	// Long, and cut inside a multi-byte rune unless cut with care.
	long := "ProxyTemplate tpl leaves the configuration invalid: x" + strings.Repeat("é", MaxGenerationError)
	rec.GenerationFailed("m", "web-1", long) // the reconciler was first
	rec.Opened("s1", "m", "web-1", "envoy")
	rec.Opened("s2", "m", "web-1", "envoy")
	waitFor(t, "both streams with the error", func() bool {
		s := subs()
		return len(s) == 2 && s[0].GetGenerationError() != "" && s[1].GetGenerationError() != ""
	})
	for _, s := range subs() {
		if got := s.GetGenerationError(); len(got) > MaxGenerationError || len(got) < MaxGenerationError-1 || !utf8.ValidString(got) || !strings.HasPrefix(got, "ProxyTemplate tpl") || s.GetGenerationErrorTime() == nil {
			t.Fatalf("subscription %s: error of %d bytes (want ≤ %d, cut on a rune), time %v", s.GetId(), len(got), MaxGenerationError, s.GetGenerationErrorTime())
		}
	}

	rec.GenerationFailed("m", "web-1", "")
	waitFor(t, "the error cleared", func() bool {
		s := subs()
		return len(s) == 2 && s[0].GetGenerationError() == "" && s[1].GetGenerationError() == "" && s[0].GetGenerationErrorTime() == nil
	})

	// Forgotten with the last stream: a new stream starts clean.
	rec.GenerationFailed("m", "web-1", "dataplane m/web-1 does not exist")
	rec.Closed("s1")
	rec.Closed("s2")
	waitFor(t, "the insight removed", func() bool { return subs() == nil })
	rec.Opened("s3", "m", "web-1", "envoy")
	waitFor(t, "the new stream", func() bool { return len(subs()) == 1 })
	if e := subs()[0].GetGenerationError(); e != "" {
		t.Fatalf("new stream inherited %q", e)
	}
}
