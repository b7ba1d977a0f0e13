package cmd_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/weftmesh/weft/weftctl/internal/client"
	"github.com/weftmesh/weft/weftctl/internal/cmd"
)

func TestFormatError(t *testing.T) {
	apiErr := func(status int, body string) error { return client.ParseError(status, []byte(body)) }
	tests := []struct {
		name string
		err  error
		want string
	}{
		{
			name: "causes with and without field, wrapped",
			err: fmt.Errorf("apply Dataplane default/web (f.yaml): %w", apiErr(400,
				`{"title":"Could not process the resource","details":"validation failed","causes":[{"field":"networking.inbound[0].port","message":"must be in 1..65535"},{"field":"","message":"general"}]}`)),
			want: "Error: apply Dataplane default/web (f.yaml): Could not process the resource: validation failed (HTTP 400)\n" +
				"  * networking.inbound[0].port: must be in 1..65535\n  * general\n",
		},
		{
			name: "401 hint",
			err:  apiErr(401, `{"title":"Unauthorized","details":"missing bearer token"}`),
			want: "Error: Unauthorized: missing bearer token (HTTP 401)\nHint: pass a token with --token or WEFT_TOKEN, or add one with 'weftctl config control-planes add --token'.\n",
		},
		{
			name: "409 hint",
			err:  apiErr(409, `{"title":"Conflict","details":"stale"}`),
			want: "Error: Conflict: stale (HTTP 409)\nHint: it changed since the version you sent; get it again ('weftctl get TYPE NAME -o yaml') and reapply your change.\n",
		},
		{
			name: "409 in use hint",
			err:  apiErr(409, `{"title":"Conflict","details":"secret \"k\" is used by mesh \"m\": its enabled CA backend \"ca-1\" reads it"}`),
			want: "Error: Conflict: secret \"k\" is used by mesh \"m\": its enabled CA backend \"ca-1\" reads it (HTTP 409)\nHint: the mesh's enabled CA reads it; switch the mesh to another backend or secret first.\n",
		},
		{
			name: "503 hint",
			err:  apiErr(503, `{"title":"Service Unavailable","details":"the store did not confirm the write in time; it may or may not have been applied: read the resource before retrying"}`),
			want: "Error: Service Unavailable: the store did not confirm the write in time; it may or may not have been applied: read the resource before retrying (HTTP 503)\n" +
				"Hint: the control plane's store (etcd) is unavailable for now; retry shortly. If a write 'may have been applied', get the resource before retrying.\n",
		},
		{
			name: "405 hint",
			err:  apiErr(405, `{"title":"Method Not Allowed","details":"owned by global"}`),
			want: "Error: Method Not Allowed: owned by global (HTTP 405)\nHint: it is owned by another control plane (global or a zone); change it there.\n",
		},
		{
			name: "details equal to title are not repeated",
			err:  apiErr(404, `{"title":"Not Found","details":"Not Found"}`),
			want: "Error: Not Found (HTTP 404)\n",
		},
		{
			name: "transport",
			err:  &client.TransportError{Method: "GET", URL: "http://x/", Err: errors.New("connection refused")},
			want: "Error: cannot reach the control plane (GET http://x/): connection refused\nHint: is the control plane running? Check --cp, WEFT_CP or 'weftctl config control-planes list'.\n",
		},
		{name: "plain", err: errors.New("boom"), want: "Error: boom\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := cmd.FormatError(tc.err); got != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
