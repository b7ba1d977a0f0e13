package gateway

import (
	"encoding/json"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/api-server/internal/policymatch"
	"github.com/weftmesh/weft/pkg/resource"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// maxPoliciesRead bounds the policies read for one answer.
const maxPoliciesRead = 10000

// policiesPath parses /meshes/{mesh}/dataplanes/{name}/policies.
func policiesPath(path string) (mesh, name string, ok bool) {
	p := strings.Split(strings.Trim(path, "/"), "/")
	if len(p) != 5 || p[0] != "meshes" || p[2] != resource.DataplaneType.Collection || p[4] != "policies" || p[1] == "" || p[3] == "" {
		return "", "", false
	}
	return p[1], p[3], true
}

// PoliciesResponse is the answer of GET .../dataplanes/{name}/policies.
type PoliciesResponse struct {
	Mesh      string                `json:"mesh"`
	Dataplane string                `json:"dataplane"`
	Total     int                   `json:"total"`
	Policies  []policymatch.Matched `json:"policies"`
}

// servePolicies answers which policies apply to one dataplane
// (policymatch.Match), reading the dataplane and every policy type of its
// mesh through the gRPC service with the caller's credentials.
func servePolicies(w http.ResponseWriter, r *http.Request, conn *grpc.ClientConn, mesh, name string) {
	ctx := outgoing(r)
	c := apiv1.NewResourceServiceClient(conn)
	it, err := c.Get(ctx, &apiv1.GetRequest{Collection: resource.DataplaneType.Collection, Mesh: mesh, Name: name})
	if err != nil {
		writeStatus(w, status.Convert(err))
		return
	}
	dp, err := resource.FromAPI(it, resource.DataplaneType)
	if err != nil {
		writeStatus(w, status.New(codes.Internal, "internal error"))
		return
	}
	var policies []*resource.Resource
	for _, t := range resource.Types() {
		if !t.MeshScoped() || t.System || t.Sensitive || t == resource.DataplaneType {
			continue
		}
		for offset := ""; ; {
			page, err := c.List(ctx, &apiv1.ListRequest{Collection: t.Collection, Mesh: mesh, Size: 1000, Offset: offset})
			if err != nil {
				writeStatus(w, status.Convert(err))
				return
			}
			for _, item := range page.GetItems() {
				if p, err := resource.FromAPI(item, t); err == nil {
					policies = append(policies, p)
				}
			}
			if len(policies) > maxPoliciesRead {
				writeStatus(w, status.Newf(codes.ResourceExhausted, "mesh %q has more than %d policies: ask per type instead", mesh, maxPoliciesRead))
				return
			}
			if offset = page.GetNextOffset(); offset == "" {
				break
			}
		}
	}
	matched := policymatch.Match(dp.Spec.(*meshv1.Dataplane), policies)
	if matched == nil {
		matched = []policymatch.Matched{}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(PoliciesResponse{Mesh: mesh, Dataplane: name, Total: len(matched), Policies: matched})
}
