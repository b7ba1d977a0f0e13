package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/api-server/internal/server"
	"github.com/weftmesh/weft/pkg/resource"
	apiv1 "github.com/weftmesh/weft/proto/gen/go/weft/api/v1"
	inspectv1 "github.com/weftmesh/weft/proto/gen/go/weft/inspect/v1"
)

// DryRunParam is the query parameter of a dry-run write; DryRunExplain its
// one value: validate, store nothing, answer the policy's impact.
const (
	DryRunParam   = "dryRun"
	DryRunExplain = "explain"
)

// dryRunPath parses PUT/POST /meshes/{mesh}/{collection}[/{name}] (the
// name may come from the body on POST).
func dryRunPath(method, path string) (mesh, collection, name string, ok bool) {
	p := strings.Split(strings.Trim(path, "/"), "/")
	if len(p) < 3 || len(p) > 4 || p[0] != "meshes" || p[1] == "" || p[2] == "" {
		return "", "", "", false
	}
	if len(p) == 3 {
		return p[1], p[2], "", method == http.MethodPost
	}
	return p[1], p[2], p[3], p[3] != ""
}

// serveDryRun answers PUT/POST …?dryRun=explain: the same checks as the
// write (server.Inspect.PreviewPolicy), nothing stored, and the impact
// computed by an xds-server.
func serveDryRun(w http.ResponseWriter, r *http.Request, conn *grpc.ClientConn) {
	q := r.URL.Query()
	if v := q.Get(DryRunParam); v != DryRunExplain {
		WriteError(w, http.StatusBadRequest, `dryRun: only "explain" is supported (validate, store nothing, answer the policy's impact)`)
		return
	}
	mesh, collection, name, ok := dryRunPath(r.Method, r.URL.Path)
	if !ok {
		WriteError(w, http.StatusNotFound, "dryRun=explain: use PUT /meshes/{mesh}/{collection}/{name} or POST /meshes/{mesh}/{collection}")
		return
	}
	var max uint32
	if v := q.Get("maxProxies"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			WriteError(w, http.StatusBadRequest, "maxProxies: not a number")
			return
		}
		max = uint32(n)
	}
	data, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		WriteError(w, http.StatusRequestEntityTooLarge, tooLarge)
		return
	case err != nil:
		WriteError(w, http.StatusBadRequest, "could not read the request body")
		return
	case len(bytes.TrimSpace(data)) == 0:
		WriteError(w, http.StatusBadRequest, "request body is empty: send the policy")
		return
	}
	if name == "" {
		var named struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(data, &named)
		name = named.Name
	}
	var header metadata.MD
	resp, err := inspectv1.NewInspectServiceClient(conn).PreviewPolicy(outgoing(r), &inspectv1.PreviewPolicyRequest{
		Collection: collection, Mesh: mesh, Name: name, MaxProxies: max,
		Policy: &apiv1.Resource{Spec: &anypb.Any{TypeUrl: resource.FlatJSONTypeURL, Value: data}},
	}, grpc.Header(&header))
	if err != nil {
		writeStatus(w, status.Convert(err))
		return
	}
	for _, warning := range header.Get(server.WarningHeader) {
		w.Header().Add("Warning", `299 - `+strconv.Quote(warning))
	}
	js, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(js)
}
