package app

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The api-server answers 404, then 200, then 404 again (the Dataplane is
// registered, then deleted): weft-dp says each change once, in order.
func TestSaysWhenTheDataplaneIsRegisteredAndDeleted(t *testing.T) {
	defer func(d time.Duration) { DataplaneCheckEvery = d }(DataplaneCheckEvery)
	DataplaneCheckEvery = 20 * time.Millisecond
	var exists atomic.Bool
	var badAuth atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/meshes/default/dataplanes/backend-1" || r.Header.Get("Authorization") != "Bearer dp-token" {
			badAuth.Store(true)
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		if exists.Load() {
			w.Write([]byte(`{"type":"Dataplane"}`))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	logs := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchDataplane(ctx, srv.URL, "default", "backend-1", "dp-token", slog.New(slog.NewTextHandler(logs, nil)))
	}()
	defer func() { cancel(); <-done }()
	waitLog := func(s string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logs.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q:\n%s", s, logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLog("waiting for the Dataplane: it is not registered")
	exists.Store(true)
	waitLog("the Dataplane is registered")
	exists.Store(false)
	waitLog("the Dataplane was deleted (or its mesh)")
	for _, s := range []string{"waiting for the Dataplane", "the Dataplane is registered", "the Dataplane was deleted"} {
		if n := strings.Count(logs.String(), s); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", s, n, logs)
		}
	}
	if badAuth.Load() {
		t.Error("the check did not send the dataplane token to its Dataplane's URL")
	}
}
