// Package apitest is a test fixture: an in-memory HTTP server speaking just
// enough of the api-server's REST contract (auth, flat resources, paged
// lists, insights, tokens, error shape) to test weftctl's HTTP behaviour
// while the real api-server is built. It is imported only by tests; the
// e2e suite runs weftctl against the real api-server.
package apitest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/pkg/resource"
)

// Server is the fixture. Zero-value fields of Options get defaults.
type Server struct {
	*httptest.Server
	Token string

	mu       sync.Mutex
	rev      int64
	objects  map[string]*resource.Resource // by resource.Key
	insights map[string]json.RawMessage    // by resource.Key of the insight's owner
	requests []Request
	tokens   []TokenCall
	now      func() time.Time
}

// Request is what the fixture saw.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Auth   string
	Body   string
}

// TokenCall records a token request.
type TokenCall struct {
	Kind string
	Body map[string]any
}

// Start starts a fixture requiring token (none required if "") and closes
// it when the test ends.
func Start(t testing.TB, token string) *Server {
	return start(t, token, false)
}

// StartTLS is Start over https with httptest's self-signed certificate
// (Server.Certificate()).
func StartTLS(t testing.TB, token string) *Server {
	return start(t, token, true)
}

func start(t testing.TB, token string, useTLS bool) *Server {
	s := &Server{
		Token:    token,
		objects:  map[string]*resource.Resource{},
		insights: map[string]json.RawMessage{},
		now:      func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
	if useTLS {
		s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	} else {
		s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	}
	t.Cleanup(s.Close)
	return s
}

// Requests returns the requests seen so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// TokenCalls returns the token requests seen so far.
func (s *Server) TokenCalls() []TokenCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TokenCall(nil), s.tokens...)
}

// Put stores a resource directly (bypassing HTTP), stamping metadata.
func (s *Server) Put(r *resource.Resource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store(r.Clone())
}

// Lookup returns a stored resource, or nil.
func (s *Server) Lookup(typ *resource.Type, mesh, name string) *resource.Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.objects[resource.Key(typ.Name, mesh, name)]; r != nil {
		return r.Clone()
	}
	return nil
}

// Len returns how many resources are stored.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.objects)
}

// SetInsight attaches an insight (any JSON) to a stored resource's
// +insights listing item.
func (s *Server) SetInsight(typ *resource.Type, mesh, name string, insight string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.insights[resource.Key(typ.Name, mesh, name)] = json.RawMessage(insight)
}

func (s *Server) store(r *resource.Resource) (created bool) {
	s.rev++
	now := s.now()
	key := r.Key()
	old := s.objects[key]
	if old != nil {
		r.Meta.CreationTime = old.Meta.GetCreationTime()
	} else {
		r.Meta.CreationTime = resource.Timestamp(now)
	}
	r.Meta.ModificationTime = resource.Timestamp(now)
	r.Meta.Version = s.rev
	s.objects[key] = r
	return old == nil
}

type cause struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, title, details string, causes ...cause) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"title": title, "details": details, "causes": causes})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if raw, ok := v.([]byte); ok {
		w.Write(raw)
		return
	}
	json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Auth: r.Header.Get("Authorization"), Body: string(body)})
	s.mu.Unlock()
	if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
		writeError(w, http.StatusUnauthorized, "Unauthenticated", "a valid bearer token is required")
		return
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.URL.Path == "/" {
		segs = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(segs) == 0 && r.Method == http.MethodGet:
		writeJSON(w, 200, map[string]string{"product": "Weft", "version": "1.0.0-test", "mode": "standalone", "instanceId": "cp-1"})
	case len(segs) == 2 && segs[0] == "tokens" && r.Method == http.MethodPost:
		s.serveToken(w, segs[1], body)
	case len(segs) >= 1 && segs[0] == "meshes" && len(segs) >= 3:
		// /meshes/{mesh}/{collection}[/{name}]
		name := ""
		if len(segs) == 4 {
			name = segs[3]
		} else if len(segs) > 4 {
			writeError(w, 404, "Not Found", "no such route")
			return
		}
		s.serveResource(w, r, segs[1], segs[2], name, body, true)
	case len(segs) == 1 || len(segs) == 2:
		name := ""
		if len(segs) == 2 {
			name = segs[1]
		}
		s.serveResource(w, r, "", segs[0], name, body, false)
	default:
		writeError(w, 404, "Not Found", "no such route")
	}
}

func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, mesh, collection, name string, body []byte, meshPath bool) {
	insights := strings.HasSuffix(collection, "+insights")
	t, ok := resource.ByCollection(strings.TrimSuffix(collection, "+insights"))
	if !ok || (insights && t.Insight == nil) {
		writeError(w, 404, "Not Found", fmt.Sprintf("unknown collection %q", collection))
		return
	}
	if meshPath && !t.MeshScoped() {
		writeError(w, 404, "Not Found", fmt.Sprintf("%s is not mesh-scoped", t.Name))
		return
	}
	if name == "" {
		if r.Method != http.MethodGet {
			writeError(w, 405, "Method Not Allowed", "collections are read-only")
			return
		}
		s.serveList(w, r, t, mesh, insights)
		return
	}
	if insights {
		writeError(w, 404, "Not Found", "no such route")
		return
	}
	if t.MeshScoped() && mesh == "" {
		writeError(w, 404, "Not Found", "mesh-scoped resources live under /meshes/{mesh}")
		return
	}
	key := resource.Key(t.Name, mesh, name)
	switch r.Method {
	case http.MethodGet:
		obj := s.objects[key]
		if obj == nil {
			writeError(w, 404, "Not Found", fmt.Sprintf("%s %s not found", t.Name, key))
			return
		}
		js, _ := resource.MarshalJSON(obj)
		writeJSON(w, 200, js)
	case http.MethodDelete:
		if s.objects[key] == nil {
			writeError(w, 404, "Not Found", fmt.Sprintf("%s %s not found", t.Name, key))
			return
		}
		delete(s.objects, key)
		if t == resource.MeshType {
			for k, o := range s.objects {
				if o.Meta.GetMesh() == name {
					delete(s.objects, k)
				}
			}
		}
		writeJSON(w, 200, map[string]any{})
	case http.MethodPut:
		res, err := resource.Unmarshal(body, t)
		if err != nil {
			writeError(w, 400, "Bad Request", "could not decode the resource: "+err.Error())
			return
		}
		var causes []cause
		if res.Meta.GetName() != name {
			causes = append(causes, cause{"name", fmt.Sprintf("must be %q, as in the URL", name)})
		}
		if res.Meta.GetMesh() != mesh {
			causes = append(causes, cause{"mesh", fmt.Sprintf("must be %q, as in the URL", mesh)})
		}
		if err := resource.Validate(res); err != nil {
			if ve, ok := err.(*resource.ValidationError); ok {
				for _, c := range ve.Causes {
					causes = append(causes, cause{c.Field, c.Message})
				}
			}
		}
		if len(causes) > 0 {
			writeError(w, 400, "Invalid resource", "the resource is not valid", causes...)
			return
		}
		if t.MeshScoped() && s.objects[resource.Key(resource.MeshType.Name, "", mesh)] == nil {
			writeError(w, 400, "Invalid resource", fmt.Sprintf("mesh %q does not exist", mesh), cause{"mesh", "mesh does not exist"})
			return
		}
		old := s.objects[key]
		if v := res.Meta.GetVersion(); v != 0 && (old == nil || old.Meta.GetVersion() != v) {
			writeError(w, 409, "Conflict", fmt.Sprintf("%s was changed since version %d", key, v))
			return
		}
		res.Meta.Origin = ""
		created := s.store(res)
		js, _ := resource.MarshalJSON(res)
		if created {
			writeJSON(w, 201, js)
		} else {
			writeJSON(w, 200, js)
		}
	default:
		writeError(w, 405, "Method Not Allowed", r.Method+" is not supported here")
	}
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request, t *resource.Type, mesh string, insights bool) {
	size := 100
	if v := r.URL.Query().Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, 400, "Bad Request", "size must be in 1..1000", cause{"size", "must be in 1..1000"})
			return
		}
		size = n
	}
	var keys []string
	for k, o := range s.objects {
		if o.Meta.GetType() == t.Name && (mesh == "" || o.Meta.GetMesh() == mesh) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	start := 0
	if off := r.URL.Query().Get("offset"); off != "" {
		// The token is the last key of the previous page, so pages stay
		// stable while resources come and go.
		start = sort.SearchStrings(keys, off)
		if start < len(keys) && keys[start] == off {
			start++
		}
	}
	end := min(start+size, len(keys))
	items := []json.RawMessage{}
	for _, k := range keys[start:end] {
		js, _ := resource.MarshalJSON(s.objects[k])
		if insights {
			var m map[string]json.RawMessage
			json.Unmarshal(js, &m)
			if ins, ok := s.insights[k]; ok {
				m["insight"] = ins
			}
			js, _ = json.Marshal(m)
		}
		items = append(items, js)
	}
	out := map[string]any{"total": len(keys), "items": items, "next": "", "nextOffset": ""}
	if end < len(keys) {
		q := r.URL.Query()
		q.Set("offset", keys[end-1])
		u := *r.URL
		u.RawQuery = q.Encode()
		out["next"] = "http://" + r.Host + u.String()
		out["nextOffset"] = keys[end-1]
	}
	writeJSON(w, 200, out)
}

func (s *Server) serveToken(w http.ResponseWriter, kind string, body []byte) {
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, 400, "Bad Request", "body is not JSON")
		return
	}
	s.tokens = append(s.tokens, TokenCall{Kind: kind, Body: req})
	var subject string
	switch kind {
	case "dataplane":
		mesh, _ := req["mesh"].(string)
		name, _ := req["name"].(string)
		if mesh == "" || name == "" {
			writeError(w, 400, "Invalid request", "mesh and name are required",
				cause{"mesh", "must be set"}, cause{"name", "must be set"})
			return
		}
		subject = mesh + "/" + name
	case "zone":
		subject, _ = req["zone"].(string)
	case "ingress":
		zone, _ := req["zone"].(string)
		name, _ := req["name"].(string)
		subject = zone + "/" + name
	case "user":
		subject, _ = req["name"].(string)
	default:
		writeError(w, 404, "Not Found", "unknown token kind")
		return
	}
	writeJSON(w, 200, map[string]string{
		"token":       "tok." + kind + "." + subject,
		"expiresTime": s.now().Add(24 * time.Hour).Format(time.RFC3339),
	})
}
