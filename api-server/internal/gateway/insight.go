package gateway

import (
	"context"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/api-server/internal/server"
	"github.com/weftmesh/weft/pkg/resource"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
)

// insightPath parses the GET of one item with its insight, in either
// form: /zones+insights/{name} or /zones/{name}+insights, and
// /meshes/{mesh}/dataplanes+insights/{name} or .../dataplanes/{name}+insights.
func insightPath(path string) (mesh, collection, name string, ok bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) == 4 && parts[0] == "meshes" {
		mesh, parts = parts[1], parts[2:]
	}
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", "", false
	}
	switch {
	case strings.HasSuffix(parts[0], "+insights"):
		collection, name = strings.TrimSuffix(parts[0], "+insights"), parts[1]
	case strings.HasSuffix(parts[1], "+insights"):
		collection, name = parts[0], strings.TrimSuffix(parts[1], "+insights")
	default:
		return "", "", "", false
	}
	if t, found := resource.ByCollection(collection); !found || t.Insight == nil || name == "" {
		return "", "", "", false
	}
	return mesh, collection, name, true
}

// outgoing is the context of a gRPC call made for the REST request r:
// the caller's credentials and the request URL, as the gateway sends them.
func outgoing(r *http.Request) context.Context {
	ctx := metadata.AppendToOutgoingContext(r.Context(), server.RequestURLHeader, r.URL.RequestURI())
	if auth := r.Header.Get("Authorization"); auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
	}
	return ctx
}

// serveInsightItem answers the GET of one item with its insight, shaped
// like an item of the "+insights" listing. Both reads go through the gRPC
// service with the caller's credentials (the same authorisation).
func serveInsightItem(w http.ResponseWriter, r *http.Request, conn *grpc.ClientConn, mesh, collection, name string) {
	ctx := outgoing(r)
	c := apiv1.NewResourceServiceClient(conn)
	it, err := c.Get(ctx, &apiv1.GetRequest{Collection: collection, Mesh: mesh, Name: name})
	if err != nil {
		writeStatus(w, status.Convert(err))
		return
	}
	t, _ := resource.ByCollection(collection)
	ins, err := c.Get(ctx, &apiv1.GetRequest{Collection: t.Insight.Collection, Mesh: mesh, Name: name})
	switch {
	case status.Code(err) == codes.NotFound:
		ins = &apiv1.Resource{}
	case err != nil:
		writeStatus(w, status.Convert(err))
		return
	}
	js, err := withInsight(it, ins, true)
	if err != nil {
		writeStatus(w, status.New(codes.Internal, "internal error"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(js)
}
