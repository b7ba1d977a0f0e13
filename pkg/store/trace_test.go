package store_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/weftmesh/weft/pkg/etcdtest"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
)

// TestSpansUseTheGivenProviderAndACancelledCallerIsNotAnError: store spans
// go to the service's provider; an operation whose caller went away is
// not an ERROR span, a real failure is.
func TestSpansUseTheGivenProviderAndACancelledCallerIsNotAnError(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	st := store.New(etcdtest.Client(t, nil), store.WithTracerProvider(tp))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.Get(ctx, resource.MeshType, "", "m"); err == nil {
		t.Fatal("a cancelled Get succeeded")
	}
	// A Secret without a keyring fails: a real error.
	sec := resource.New(resource.SecretType, "m", "s")
	if _, err := st.Create(context.Background(), sec); err == nil {
		t.Fatal("a sealed type was stored without a keyring")
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	if spans[0].Name() != "store.Get" || spans[0].Status().Code == codes.Error {
		t.Errorf("cancelled %s: status %v", spans[0].Name(), spans[0].Status())
	}
	if spans[1].Name() != "store.Create" || spans[1].Status().Code != codes.Error {
		t.Errorf("failed %s: status %v, want ERROR", spans[1].Name(), spans[1].Status())
	}
}
