// Package client is weftctl's REST client for the api-server: resources in
// the flat Kuma-shaped form, paged listings, insights and tokens. Every
// failure is an *APIError (the server answered) or a *TransportError (it did
// not); response bodies are size-limited.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/weftmesh/weft/pkg/resource"
)

// MaxResponseSize bounds one response body. A full page (1000 items) of
// large resources stays well below it.
const MaxResponseSize = 64 << 20

// DefaultPageSize is the page size List asks for when none is given; the
// server's maximum.
const DefaultPageSize = 1000

// maxPages bounds ListAll against a server that keeps handing out pages.
const maxPages = 100_000

// Client talks to one api-server.
type Client struct {
	base      *url.URL
	token     string
	http      *http.Client
	userAgent string
	onWarning func(string)
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (timeouts, TLS, test transports).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithWarnings calls fn with the text of every Warning header of a
// response (the server accepted the request but has something to say,
// e.g. a selector that matches nothing).
func WithWarnings(fn func(string)) Option { return func(c *Client) { c.onWarning = fn } }

// maxWarnings bounds the warnings reported per response.
const maxWarnings = 10

// warningText returns the text of a Warning header value (299 - "text"),
// or the value itself when it is not in that form.
// Control characters are dropped: the text goes to a terminal.
func warningText(v string) string {
	if rest, ok := strings.CutPrefix(v, "299 - "); ok {
		if s, err := strconv.Unquote(rest); err == nil {
			v = s
		}
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, v)
}

// New returns a client for the api-server at baseURL (e.g.
// http://127.0.0.1:5681, possibly with a path prefix). token may be empty,
// in which case requests carry no Authorization header.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("control plane address %q must be a URL like http://127.0.0.1:5681", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	c := &Client{
		base:      u,
		token:     token,
		http:      &http.Client{Timeout: 60 * time.Second},
		userAgent: "weftctl",
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// BaseURL returns the api-server's address.
func (c *Client) BaseURL() string { return c.base.String() }

// url builds base + escaped path segments + query.
func (c *Client) url(q url.Values, segments ...string) string {
	u := *c.base
	var esc strings.Builder
	esc.WriteString(c.base.EscapedPath())
	var plain strings.Builder
	plain.WriteString(c.base.Path)
	for _, s := range segments {
		esc.WriteByte('/')
		esc.WriteString(url.PathEscape(s))
		plain.WriteByte('/')
		plain.WriteString(s)
	}
	if len(segments) == 0 {
		esc.WriteByte('/')
		plain.WriteByte('/')
	}
	u.Path = plain.String()
	u.RawPath = esc.String()
	u.RawQuery = q.Encode()
	return u.String()
}

// do sends a request and returns the status and body of a 2xx response, or
// an *APIError / *TransportError.
func (c *Client) do(ctx context.Context, method, rawURL string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, rawURL, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error repeats the method and URL TransportError already shows.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, &TransportError{Method: method, URL: rawURL, Err: err}
	}
	defer resp.Body.Close()
	if c.onWarning != nil {
		for i, v := range resp.Header.Values("Warning") {
			if i == maxWarnings {
				break
			}
			c.onWarning(warningText(v))
		}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return 0, nil, &TransportError{Method: method, URL: rawURL, Err: fmt.Errorf("read response: %w", err)}
	}
	if len(data) > MaxResponseSize {
		return 0, nil, fmt.Errorf("%s %s: response is larger than %d bytes", method, rawURL, MaxResponseSize)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := ParseError(resp.StatusCode, data)
		ae.Method, ae.URL = method, rawURL
		return resp.StatusCode, nil, ae
	}
	return resp.StatusCode, data, nil
}

func (c *Client) getJSON(ctx context.Context, rawURL string, into any) error {
	_, data, err := c.do(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("GET %s: response is not the expected JSON: %w", rawURL, err)
	}
	return nil
}

// Index is the api-server's GET / answer.
type Index struct {
	Product    string `json:"product"`
	Version    string `json:"version"`
	Mode       string `json:"mode"`
	Zone       string `json:"zone,omitempty"`
	InstanceID string `json:"instanceId,omitempty"`
}

// Index describes the control plane.
func (c *Client) Index(ctx context.Context) (*Index, error) {
	var idx Index
	if err := c.getJSON(ctx, c.url(nil), &idx); err != nil {
		return nil, err
	}
	return &idx, nil
}

// GlobalInsight is a zone control plane's link to global
// (GET /global-insight).
type GlobalInsight struct {
	Zone    string          `json:"zone"`
	State   string          `json:"state"`
	Reason  string          `json:"reason"`
	Insight json.RawMessage `json:"insight"`
}

// GlobalInsight returns the control plane's link to global (zone mode
// only; 404 elsewhere).
func (c *Client) GlobalInsight(ctx context.Context) (*GlobalInsight, error) {
	var gi GlobalInsight
	if err := c.getJSON(ctx, c.url(nil, "global-insight"), &gi); err != nil {
		return nil, err
	}
	return &gi, nil
}

// MatchedPolicy is one policy that applies to a dataplane.
type MatchedPolicy struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Role    string `json:"role"`
	Service string `json:"service"`
}

// DataplanePolicies returns the policies that apply to dataplane
// mesh/name (GET /meshes/{mesh}/dataplanes/{name}/policies).
func (c *Client) DataplanePolicies(ctx context.Context, mesh, name string) ([]MatchedPolicy, error) {
	if err := checkIdentity(resource.DataplaneType, mesh, name); err != nil {
		return nil, err
	}
	var out struct {
		Policies []MatchedPolicy `json:"policies"`
	}
	if err := c.getJSON(ctx, c.url(nil, "meshes", mesh, resource.DataplaneType.Collection, name, "policies"), &out); err != nil {
		return nil, err
	}
	return out.Policies, nil
}

// resourcePath returns the path segments of a resource or a collection.
// name "" means the collection. mesh "" on a mesh-scoped type means across
// meshes (collections only).
func resourcePath(t *resource.Type, mesh, name string) []string {
	var segs []string
	if t.MeshScoped() && mesh != "" {
		segs = []string{"meshes", mesh, t.Collection}
	} else {
		segs = []string{t.Collection}
	}
	if name != "" {
		segs = append(segs, name)
	}
	return segs
}

func checkIdentity(t *resource.Type, mesh, name string) error {
	if name == "" {
		return errors.New("a resource name is required")
	}
	if t.MeshScoped() && mesh == "" {
		return fmt.Errorf("%s is mesh-scoped: a mesh is required", t.Name)
	}
	if !t.MeshScoped() && mesh != "" {
		return fmt.Errorf("%s is not mesh-scoped: it has no mesh", t.Name)
	}
	return nil
}

// Get fetches one resource.
func (c *Client) Get(ctx context.Context, t *resource.Type, mesh, name string) (*Object, error) {
	if err := checkIdentity(t, mesh, name); err != nil {
		return nil, err
	}
	rawURL := c.url(nil, resourcePath(t, mesh, name)...)
	_, data, err := c.do(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	o, err := DecodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	return o, nil
}

// PutResult says what a Put did.
type PutResult int

const (
	Updated PutResult = iota
	Created
)

func (r PutResult) String() string {
	if r == Created {
		return "created"
	}
	return "updated"
}

// Put creates or updates a resource. A non-zero Meta.Version makes the
// update conditional: the server answers 409 if it is stale.
func (c *Client) Put(ctx context.Context, r *resource.Resource) (PutResult, error) {
	t := r.Type()
	if t == nil {
		return 0, fmt.Errorf("unknown type %q", r.Meta.GetType())
	}
	if err := checkIdentity(t, r.Meta.GetMesh(), r.Meta.GetName()); err != nil {
		return 0, err
	}
	body, err := resource.MarshalJSON(r)
	if err != nil {
		return 0, err
	}
	rawURL := c.url(nil, resourcePath(t, r.Meta.GetMesh(), r.Meta.GetName())...)
	status, _, err := c.do(ctx, http.MethodPut, rawURL, body)
	if err != nil {
		return 0, err
	}
	if status == http.StatusCreated {
		return Created, nil
	}
	return Updated, nil
}

// Delete deletes a resource.
func (c *Client) Delete(ctx context.Context, t *resource.Type, mesh, name string) error {
	return c.DeleteForce(ctx, t, mesh, name, false)
}

// DeleteForce deletes a resource; force deletes a Mesh even while
// dataplanes in it are online (?force=true).
func (c *Client) DeleteForce(ctx context.Context, t *resource.Type, mesh, name string, force bool) error {
	if err := checkIdentity(t, mesh, name); err != nil {
		return err
	}
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	_, _, err := c.do(ctx, http.MethodDelete, c.url(q, resourcePath(t, mesh, name)...), nil)
	return err
}

// ListOptions selects one page.
type ListOptions struct {
	// Size is the page size; 0 means DefaultPageSize.
	Size int
	// Offset is the server's token for the page, from a previous page.
	Offset string
}

// Page is one page of a listing.
type Page struct {
	Total int
	Items []*Object
	// NextOffset is the token for the next page, "" on the last page.
	NextOffset string
}

// wirePage is the list shape on the wire.
type wirePage struct {
	Total      json.Number       `json:"total"`
	Items      []json.RawMessage `json:"items"`
	Next       *string           `json:"next"`
	NextOffset string            `json:"nextOffset"`
}

// DecodePage decodes a list response body into its items' raw JSON, the
// total, and the next page's offset token ("" on the last page).
func DecodePage(data []byte) (items []json.RawMessage, total int, next string, err error) {
	var w wirePage
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, 0, "", fmt.Errorf("list response is not the expected JSON: %w", err)
	}
	if w.Total != "" {
		n, err := strconv.ParseInt(w.Total.String(), 10, 64)
		if err != nil || n < 0 || n > 1<<31 {
			return nil, 0, "", fmt.Errorf("list response has a bad total %q", w.Total)
		}
		total = int(n)
	}
	next = w.NextOffset
	if next == "" && w.Next != nil && *w.Next != "" {
		// Older shape: only a "next" URL. Take its offset rather than
		// following the URL, whose host may be the server's view of itself.
		u, err := url.Parse(*w.Next)
		if err != nil {
			return nil, 0, "", fmt.Errorf("list response has a bad next URL: %w", err)
		}
		next = u.Query().Get("offset")
		if next == "" {
			return nil, 0, "", fmt.Errorf("list response's next URL %q has no offset", *w.Next)
		}
	}
	return w.Items, total, next, nil
}

func (c *Client) listPage(ctx context.Context, segs []string, opts ListOptions) ([]json.RawMessage, int, string, error) {
	q := url.Values{}
	size := opts.Size
	if size <= 0 {
		size = DefaultPageSize
	}
	q.Set("size", strconv.Itoa(size))
	if opts.Offset != "" {
		q.Set("offset", opts.Offset)
	}
	rawURL := c.url(q, segs...)
	_, data, err := c.do(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, 0, "", err
	}
	items, total, next, err := DecodePage(data)
	if err != nil {
		return nil, 0, "", fmt.Errorf("GET %s: %w", rawURL, err)
	}
	return items, total, next, nil
}

// List fetches one page of resources of type t in mesh, or across meshes if
// mesh is "" (for mesh-scoped types).
func (c *Client) List(ctx context.Context, t *resource.Type, mesh string, opts ListOptions) (*Page, error) {
	if !t.MeshScoped() && mesh != "" {
		return nil, fmt.Errorf("%s is not mesh-scoped: it has no mesh", t.Name)
	}
	items, total, next, err := c.listPage(ctx, resourcePath(t, mesh, ""), opts)
	if err != nil {
		return nil, err
	}
	p := &Page{Total: total, NextOffset: next}
	for i, raw := range items {
		o, err := DecodeObject(raw)
		if err != nil {
			return nil, fmt.Errorf("list %s: item %d: %w", t.Collection, i, err)
		}
		p.Items = append(p.Items, o)
	}
	return p, nil
}

// pageAll follows offsets until the last page, guarding against a server
// that repeats an offset or never ends.
func (c *Client) pageAll(ctx context.Context, segs []string, size int, fn func(json.RawMessage) error) (int, error) {
	var offset string
	seen := map[string]bool{}
	total := 0
	for range maxPages {
		items, t, next, err := c.listPage(ctx, segs, ListOptions{Size: size, Offset: offset})
		if err != nil {
			return 0, err
		}
		total = t
		for _, raw := range items {
			if err := fn(raw); err != nil {
				return 0, err
			}
		}
		if next == "" {
			return total, nil
		}
		if seen[next] {
			return 0, fmt.Errorf("list /%s: the server repeated page offset %q", strings.Join(segs, "/"), next)
		}
		seen[next] = true
		offset = next
	}
	return 0, fmt.Errorf("list /%s: more than %d pages", strings.Join(segs, "/"), maxPages)
}

// ListAll fetches every resource of type t in mesh (or across meshes if
// mesh is ""), page by page. size 0 means DefaultPageSize.
func (c *Client) ListAll(ctx context.Context, t *resource.Type, mesh string, size int) ([]*Object, error) {
	if !t.MeshScoped() && mesh != "" {
		return nil, fmt.Errorf("%s is not mesh-scoped: it has no mesh", t.Name)
	}
	var out []*Object
	_, err := c.pageAll(ctx, resourcePath(t, mesh, ""), size, func(raw json.RawMessage) error {
		o, err := DecodeObject(raw)
		if err != nil {
			return fmt.Errorf("list %s: item %d: %w", t.Collection, len(out), err)
		}
		out = append(out, o)
		return nil
	})
	return out, err
}

// ListDataplaneInsights fetches every Dataplane of mesh with its insight
// (GET /meshes/{mesh}/dataplanes+insights).
func (c *Client) ListDataplaneInsights(ctx context.Context, mesh string, size int) ([]*InsightObject, error) {
	if mesh == "" {
		return nil, errors.New("a mesh is required")
	}
	return c.listInsights(ctx, []string{"meshes", mesh, resource.DataplaneType.Collection + "+insights"}, size)
}

// ListZoneInsights fetches every Zone with its insight (GET /zones+insights).
func (c *Client) ListZoneInsights(ctx context.Context, size int) ([]*InsightObject, error) {
	return c.listInsights(ctx, []string{resource.ZoneType.Collection + "+insights"}, size)
}

func (c *Client) listInsights(ctx context.Context, segs []string, size int) ([]*InsightObject, error) {
	var out []*InsightObject
	_, err := c.pageAll(ctx, segs, size, func(raw json.RawMessage) error {
		o, err := DecodeInsightObject(raw)
		if err != nil {
			return fmt.Errorf("list %s: item %d: %w", segs[len(segs)-1], len(out), err)
		}
		out = append(out, o)
		return nil
	})
	return out, err
}

// BackendExpiry is when one CA backend's root certificate expires.
type BackendExpiry struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Enabled bool   `json:"enabled"`
	// NotAfter is nil when the root could not be read (Error says why).
	NotAfter *time.Time `json:"notAfter,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// MeshCA returns the root expiry of every CA backend of a mesh
// (GET /meshes/{mesh}/ca).
func (c *Client) MeshCA(ctx context.Context, mesh string) ([]BackendExpiry, error) {
	if err := checkIdentity(resource.MeshType, "", mesh); err != nil {
		return nil, err
	}
	var out struct {
		Backends []BackendExpiry `json:"backends"`
	}
	if err := c.getJSON(ctx, c.url(nil, "meshes", mesh, "ca"), &out); err != nil {
		return nil, err
	}
	return out.Backends, nil
}
