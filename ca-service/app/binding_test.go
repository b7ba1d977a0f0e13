package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/token"
	cav1 "github.com/weftmesh/weft/proto/gen/go/weft/ca/v1"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// ca-service signs only services the workload's own dataplane token is
// bound to: a control-plane caller cannot obtain backend's identity for
// web-1 (issue 10), whatever the stored Dataplane says.
func TestSigningIsBoundToTheDataplaneToken(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.put(meshRes("default", "ca-1", builtin("ca-1")))
	a := e.start(e.config())
	c := e.serviceClient(a)
	_, pub := newKey(t)
	webTok := e.dataplaneToken("default", "web-1", token.Claims{Services: []string{"web"}})
	sign := func(tok string) (*cav1.SignWorkloadCertificateResponse, error) {
		return c.SignWorkloadCertificate(ctx, &cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "web-1", PublicKey: pub, DataplaneToken: tok})
	}

	e.put(dataplane("default", "web-1", "web"))
	waitSigned(t, func() error { _, err := sign(webTok); return err })
	r, err := sign(webTok)
	if err != nil || len(r.GetSpiffeIds()) != 1 || r.GetSpiffeIds()[0] != "spiffe://default/web" {
		t.Fatalf("own service: %v %v", r.GetSpiffeIds(), err)
	}
	if got := parseChain(t, r.GetCertificateChainPem())[0].URIs; len(got) != 1 || got[0].String() != "spiffe://default/web" {
		t.Fatalf("leaf URI SANs %v", got)
	}

	// The Dataplane now claims backend and admin-api (written past the
	// API's check, e.g. by an admin or a compromised writer): not signed.
	e.put(dataplane("default", "web-1", "web", "backend", "admin-api"))
	waitCode(t, codes.PermissionDenied, "admin-api", func() error { _, err := sign(webTok); return err })
	// Nor as a gateway of another service.
	gw := resource.New(resource.DataplaneType, "default", "web-1")
	gw.Spec = &meshv1.Dataplane{Networking: &meshv1.Dataplane_Networking{Address: "10.0.0.1",
		Gateway: &meshv1.Dataplane_Networking_Gateway{Tags: map[string]string{resource.ServiceTag: "backend"}}}}
	e.put(gw)
	waitCode(t, codes.PermissionDenied, "backend", func() error { _, err := sign(webTok); return err })

	// No token, another dataplane's token, a user token, a forged one.
	for name, tc := range map[string]struct {
		tok  string
		code codes.Code
	}{
		"no token":        {"", codes.InvalidArgument},
		"other dataplane": {e.dataplaneToken("default", "web-2", token.Claims{Unbound: true}), codes.PermissionDenied},
		"user token":      {e.token(token.KindUser, "admin"), codes.PermissionDenied},
		"forged":          {webTok[:len(webTok)-6] + "AAAAAA", codes.PermissionDenied},
	} {
		_, err := c.SignWorkloadCertificate(context.WithValue(ctx, noAutoToken{}, true),
			&cav1.SignWorkloadCertificateRequest{Mesh: "default", Dataplane: "web-1", PublicKey: pub, DataplaneToken: tc.tok})
		if status.Code(err) != tc.code {
			t.Errorf("%s: got %v, want %s", name, err, tc.code)
		}
	}
}

func waitSigned(t *testing.T, f func() error) {
	t.Helper()
	waitCode(t, codes.OK, "", f)
}

func waitCode(t *testing.T, code codes.Code, msg string, f func() error) {
	t.Helper()
	var last error
	eventually(t, fmt.Sprintf("signing answers %s %q", code, msg), func() bool {
		last = f()
		return status.Code(last) == code && strings.Contains(status.Convert(last).Message(), msg)
	})
}
