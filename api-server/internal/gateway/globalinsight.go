package gateway

import (
	"encoding/json"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/resource"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// GlobalInsightPath is a zone control plane's view of its link to global.
const GlobalInsightPath = "/global-insight"

// GlobalInsight is the answer of GET /global-insight.
type GlobalInsight struct {
	Zone   string          `json:"zone"`
	State  string          `json:"state"`
	Reason string          `json:"reason,omitempty"`
	Link   json.RawMessage `json:"insight,omitempty"`
}

// serveGlobalInsight answers GET /global-insight on a zone control plane:
// the zone's own record of its streams to global (the ZoneInsight named
// after the zone in its etcd, kept by its zone-sync) with its state and
// reason (resource.LinkState). Elsewhere it is 404.
func serveGlobalInsight(w http.ResponseWriter, r *http.Request, conn *grpc.ClientConn) {
	ctx := outgoing(r)
	idx, err := apiv1.NewControlPlaneServiceClient(conn).Index(ctx, &apiv1.IndexRequest{})
	if err != nil {
		writeStatus(w, status.Convert(err))
		return
	}
	if idx.GetMode() != "zone" {
		writeStatus(w, status.Newf(codes.NotFound, "only a zone control plane has a link to global; this one is %s (see GET /zones+insights on global)", idx.GetMode()))
		return
	}
	out := GlobalInsight{Zone: idx.GetZone()}
	var zi *meshv1.ZoneInsight
	it, err := apiv1.NewResourceServiceClient(conn).Get(ctx, &apiv1.GetRequest{Collection: resource.ZoneInsightType.Collection, Name: idx.GetZone()})
	switch {
	case status.Code(err) == codes.NotFound:
	case err != nil:
		writeStatus(w, status.Convert(err))
		return
	default:
		rec, err := resource.FromAPI(it, resource.ZoneInsightType)
		if err != nil {
			writeStatus(w, status.New(codes.Internal, "internal error"))
			return
		}
		zi, _ = rec.Spec.(*meshv1.ZoneInsight)
		if out.Link, err = resource.MarshalJSON(rec); err != nil {
			writeStatus(w, status.New(codes.Internal, "internal error"))
			return
		}
	}
	out.State, out.Reason = resource.LinkState(zi)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(out)
}
