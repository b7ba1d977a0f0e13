package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/weftmesh/weft/pkg/resource"
)

// ConfigDump returns the xDS configuration of dataplane mesh/name as the
// API answers it (GET /meshes/{mesh}/dataplanes/{name}/xds): JSON.
func (c *Client) ConfigDump(ctx context.Context, mesh, name string) (json.RawMessage, error) {
	if err := checkIdentity(resource.DataplaneType, mesh, name); err != nil {
		return nil, err
	}
	_, data, err := c.do(ctx, http.MethodGet, c.url(nil, "meshes", mesh, resource.DataplaneType.Collection, name, "xds"), nil)
	if err != nil {
		return nil, err
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("GET .../%s/xds: response is not JSON", name)
	}
	return data, nil
}

// Preview is the answer of a dry-run write with dryRun=explain.
type Preview struct {
	Mesh              string      `json:"mesh"`
	Type              string      `json:"type"`
	Name              string      `json:"name"`
	ReplacesExisting  bool        `json:"replacesExisting"`
	Impacts           []Impact    `json:"impacts"`
	MatchedDataplanes int         `json:"matchedDataplanes"`
	ChangedProxies    int         `json:"changedProxies"`
	ComparedProxies   int         `json:"comparedProxies"`
	TotalDataplanes   int         `json:"totalDataplanes"`
	Diffs             []ProxyDiff `json:"diffs"`
	InstanceID        string      `json:"instanceId"`
}

// Impact is what a previewed policy does to one dataplane.
type Impact struct {
	Dataplane   string `json:"dataplane"`
	Destination string `json:"destination"`
	Applies     bool   `json:"applies"`
	LosesTo     string `json:"losesTo"`
	Replaces    string `json:"replaces"`
}

// ProxyDiff is how one proxy's generated configuration would change.
type ProxyDiff struct {
	Dataplane string     `json:"dataplane"`
	ProxyKind string     `json:"proxyKind"`
	Types     []TypeDiff `json:"types"`
	Error     string     `json:"error"`
}

// TypeDiff lists the resources of one xDS type added, changed, removed.
type TypeDiff struct {
	TypeURL string   `json:"typeUrl"`
	Added   []string `json:"added"`
	Changed []string `json:"changed"`
	Removed []string `json:"removed"`
}

// PreviewPolicy sends r as a dry run (PUT ...?dryRun=explain): the server
// validates it, stores nothing, and answers its impact. raw is the
// response as sent.
func (c *Client) PreviewPolicy(ctx context.Context, r *resource.Resource) (p *Preview, raw json.RawMessage, err error) {
	t := r.Type()
	if t == nil {
		return nil, nil, fmt.Errorf("unknown type %q", r.Meta.GetType())
	}
	if err := checkIdentity(t, r.Meta.GetMesh(), r.Meta.GetName()); err != nil {
		return nil, nil, err
	}
	body, err := resource.MarshalJSON(r)
	if err != nil {
		return nil, nil, err
	}
	rawURL := c.url(url.Values{"dryRun": {"explain"}}, resourcePath(t, r.Meta.GetMesh(), r.Meta.GetName())...)
	_, data, err := c.do(ctx, http.MethodPut, rawURL, body)
	if err != nil {
		return nil, nil, err
	}
	p = &Preview{}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, nil, fmt.Errorf("PUT %s: response is not the expected JSON: %w", rawURL, err)
	}
	return p, data, nil
}
