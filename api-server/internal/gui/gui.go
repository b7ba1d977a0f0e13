// Package gui serves the web GUI at /gui/: static assets embedded in the
// binary (plain HTML, CSS and JavaScript modules, no build step) and a
// small read-only JSON API under /gui/api/ that summarises in-memory views
// (store informers, started on the first GUI request) with server-side
// paging and filtering, so a page stays fast with 10,000 dataplanes.
// Everything else the pages show (policies, a dataplane's config dump)
// they read from the REST API itself.
package gui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/ca"
	"github.com/weftmesh/weft/pkg/grpcx"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

//go:embed static
var static embed.FS

// Prefix is where the GUI is served.
const Prefix = "/gui/"

// SyncTimeout bounds how long a GUI API request waits for the views to
// load (the first request after start).
const SyncTimeout = 20 * time.Second

// Config is what the GUI needs.
type Config struct {
	// Auth authenticates a request exactly as the API does (the same
	// function as the gRPC interceptor); it is asked for ResourceService
	// List, so only tokens that may list resources see the GUI's data.
	Auth grpcx.AuthFunc
	// Mode and Zone of this control plane.
	Mode, Zone string
	Log        *slog.Logger
	// CAExpiry reads a mesh's CA backends' root expiry for the overview
	// (nil: not shown). It must be cheap to call per request (cached).
	CAExpiry func(ctx context.Context, mesh string, m *meshv1.Mesh) []ca.BackendExpiry
}

// GUI is the handler plus its lazily started views.
type GUI struct {
	cfg     Config
	readers Readers
	start   chan struct{}
	once    sync.Once
	assets  http.Handler

	// memo keeps recent answers by request while no view has changed:
	// every open tab polls the same request every 2 s.
	memoMu sync.Mutex
	memo   map[string]memoEntry
}

type memoEntry struct {
	revs []int64
	at   time.Time
	body []byte
}

// memoTTL bounds how long an answer is reused even without a change (the
// overview's certificate-expiry problems depend on the time).
const memoTTL = 10 * time.Second

// maxMemo caps the remembered answers (all are dropped past it).
const maxMemo = 256

// New returns the GUI over a store's informers. Its Run must be running
// for the API to answer.
func New(inf *store.Informers, cfg Config) *GUI {
	return NewWithReaders(Readers{
		Meshes: inf.For(resource.MeshType), Dataplanes: inf.For(resource.DataplaneType),
		DataplaneInsights: inf.For(resource.DataplaneInsightType), Zones: inf.For(resource.ZoneType),
		ZoneInsights: inf.For(resource.ZoneInsightType), ZoneIngresses: inf.For(resource.ZoneIngressType),
		VIPs: inf.For(resource.VirtualIPType),
	}, cfg)
}

// NewWithReaders returns the GUI over any readers (tests).
func NewWithReaders(r Readers, cfg Config) *GUI {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	return &GUI{cfg: cfg, readers: r.WithListCache(), start: make(chan struct{}), assets: http.FileServerFS(sub), memo: map[string]memoEntry{}}
}

// Run keeps the views current from the first GUI API request until ctx
// ends (no watch runs while nobody has opened the GUI).
func (g *GUI) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-g.start:
	}
	g.cfg.Log.Info("gui: first request; loading the views it shows (meshes, dataplanes and their insights, zones, ingresses, VIPs)")
	var subs []*store.Subscription
	for _, r := range g.readers.all() {
		subs = append(subs, r.Subscribe(ctx, "gui", nil))
	}
	<-ctx.Done()
	for _, s := range subs {
		<-s.Done()
	}
	return nil
}

// ServeHTTP serves /gui/ (assets) and /gui/api/ (JSON).
func (g *GUI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The sign-in link carries a token in its URL: never send it on as a
	// referrer; no framing; scripts only from here.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, "the GUI is read-only: only GET")
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, Prefix+"api/"); ok {
		h.Set("Cache-Control", "no-store")
		g.serveAPI(w, r, rest)
		return
	}
	h.Set("Cache-Control", "no-cache")
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + strings.TrimPrefix(r.URL.Path, Prefix)
	r2.URL.RawQuery = ""
	g.assets.ServeHTTP(w, r2)
}

func (g *GUI) serveAPI(w http.ResponseWriter, r *http.Request, path string) {
	md := metadata.Pairs()
	if a := r.Header.Get("Authorization"); a != "" {
		md.Set("authorization", a)
	}
	ctx, err := g.cfg.Auth(metadata.NewIncomingContext(r.Context(), md), apiv1.ResourceService_List_FullMethodName)
	if err != nil {
		st, _ := status.FromError(err)
		code := http.StatusForbidden
		switch st.Code() {
		case codes.Unauthenticated:
			code = http.StatusUnauthorized
		case codes.Unavailable:
			code = http.StatusServiceUnavailable
		}
		writeError(w, code, st.Message())
		return
	}
	if len(r.URL.RawQuery) > MaxQueryLength {
		writeError(w, http.StatusBadRequest, "query: too long")
		return
	}
	if err := g.waitSynced(ctx); err != nil {
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	key := path + "?" + r.URL.RawQuery
	revs := g.revisions()
	if body, ok := g.remembered(key, revs); ok {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
		return
	}
	var out any
	switch {
	case path == "overview":
		out = struct {
			Mode string `json:"mode"`
			Zone string `json:"zone,omitempty"`
			Overview
		}{g.cfg.Mode, g.cfg.Zone, g.overview(ctx)}
	case path == "zones":
		out = struct {
			Zones     []Zone    `json:"zones"`
			Ingresses []Ingress `json:"ingresses"`
		}{g.readers.ZoneList(), g.readers.IngressList()}
	case path == "dataplanes":
		q, err := ParseDataplaneQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		out = g.readers.DataplanesPage(q)
	case strings.HasPrefix(path, "meshes/"):
		parts := strings.Split(strings.TrimPrefix(path, "meshes/"), "/")
		if !resource.IsLabel(parts[0]) {
			writeError(w, http.StatusBadRequest, "mesh: not a valid mesh name")
			return
		}
		if _, ok := g.readers.Meshes.Get("", parts[0]); !ok {
			writeError(w, http.StatusNotFound, "mesh "+parts[0]+" not found")
			return
		}
		switch {
		case len(parts) == 2 && parts[1] == "services":
			out = struct {
				Services []Service `json:"services"`
			}{g.readers.Services(parts[0])}
		case len(parts) == 3 && parts[1] == "dataplanes":
			dp, ok := g.readers.Dataplane(parts[0], parts[2])
			if !ok {
				writeError(w, http.StatusNotFound, "dataplane "+parts[0]+"/"+truncate(parts[2], 64)+" not found")
				return
			}
			out = dp
		default:
			writeError(w, http.StatusNotFound, "no such GUI endpoint")
			return
		}
	default:
		writeError(w, http.StatusNotFound, "no such GUI endpoint")
		return
	}
	body, err := json.Marshal(out)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	body = append(body, '\n')
	g.remember(key, revs, body)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// overview is the overview at now, with the meshes' CA expiry when
// configured.
func (g *GUI) overview(ctx context.Context) Overview {
	var expiry CAExpiryFunc
	if g.cfg.CAExpiry != nil {
		expiry = func(mesh string, m *meshv1.Mesh) []ca.BackendExpiry { return g.cfg.CAExpiry(ctx, mesh, m) }
	}
	return g.readers.OverviewWithCAs(time.Now(), expiry)
}

// revisions is every view's revision: an answer computed at these is
// still current while they are unchanged (for at most memoTTL).
func (g *GUI) revisions() []int64 {
	all := g.readers.all()
	revs := make([]int64, len(all))
	for i, r := range all {
		revs[i] = r.Revision()
	}
	return revs
}

func (g *GUI) remembered(key string, revs []int64) ([]byte, bool) {
	g.memoMu.Lock()
	defer g.memoMu.Unlock()
	e, ok := g.memo[key]
	if !ok || !slices.Equal(e.revs, revs) || time.Since(e.at) > memoTTL {
		return nil, false
	}
	return e.body, true
}

func (g *GUI) remember(key string, revs []int64, body []byte) {
	g.memoMu.Lock()
	defer g.memoMu.Unlock()
	if len(g.memo) >= maxMemo {
		clear(g.memo)
	}
	g.memo[key] = memoEntry{revs: revs, at: time.Now(), body: body}
}

// waitSynced starts the views (once) and waits until every one is loaded.
func (g *GUI) waitSynced(ctx context.Context) error {
	g.once.Do(func() { close(g.start) })
	ctx, cancel := context.WithTimeout(ctx, SyncTimeout)
	defer cancel()
	for _, r := range g.readers.all() {
		select {
		case <-r.Synced():
		case <-ctx.Done():
			return errors.New("the GUI's views are still loading from the store; retry in a moment")
		}
	}
	return nil
}

func writeError(w http.ResponseWriter, code int, details string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"title": http.StatusText(code), "details": details})
}

// StripToken removes a "token" query parameter from /gui/ requests before
// anything (access logs, traces, metrics) sees the URL: the sign-in link
// <api>/gui/?token=... carries a token the page's script reads from the
// address bar, never the server.
func StripToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.URL.Path == "/gui" || strings.HasPrefix(r.URL.Path, Prefix)) && r.URL.RawQuery != "" && strings.Contains(r.URL.RawQuery, "token") {
			q := r.URL.Query()
			q.Del("token")
			r = r.Clone(r.Context())
			r.URL.RawQuery = q.Encode()
			r.RequestURI = r.URL.RequestURI()
		}
		next.ServeHTTP(w, r)
	})
}

// RouteLabel names a /gui path for metrics with bounded cardinality.
func RouteLabel(path string) string {
	rest, ok := strings.CutPrefix(path, Prefix+"api/")
	switch {
	case !ok:
		return "/gui/"
	case rest == "overview" || rest == "zones" || rest == "dataplanes":
		return "/gui/api/" + rest
	case strings.HasPrefix(rest, "meshes/") && strings.HasSuffix(rest, "/services"):
		return "/gui/api/meshes/{mesh}/services"
	case strings.HasPrefix(rest, "meshes/") && strings.Contains(rest, "/dataplanes/"):
		return "/gui/api/meshes/{mesh}/dataplanes/{name}"
	}
	return "/gui/api/{unknown}"
}
