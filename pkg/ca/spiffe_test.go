package ca

import (
	"net/url"
	"strings"
	"testing"
)

// TestSPIFFEID pins the identity format shared by ca-service (certificate
// SANs) and the xds-server (RBAC principals, SAN matchers): changing it
// makes every issued certificate fail authorization.
func TestSPIFFEID(t *testing.T) {
	if got := SPIFFEID("default", "web"); got != "spiffe://default/web" {
		t.Fatalf("SPIFFEID = %q", got)
	}
	if got := SPIFFEID("m", "zone-ingress/zi-1"); got != "spiffe://m/zone-ingress/zi-1" {
		t.Fatalf("zone ingress: %q", got)
	}
	// Every identity of a mesh has the mesh prefix; another mesh's does not.
	if !strings.HasPrefix(SPIFFEID("m", "web"), SPIFFEID("m", "")) || strings.HasPrefix(SPIFFEID("m2", "web"), SPIFFEID("m", "")) {
		t.Fatal("mesh prefix")
	}
	u, err := url.Parse(SPIFFEID("m", "web"))
	if err != nil || u.Scheme != "spiffe" || u.Host != "m" || u.Path != "/web" {
		t.Fatalf("not a SPIFFE URI: %v %v", u, err)
	}
}
