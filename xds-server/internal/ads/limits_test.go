package ads

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCheckRequest(t *testing.T) {
	if err := checkRequest(resourcev3.ListenerType, "n", "v", []string{"a"}); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"unknown type": checkRequest("type.googleapis.com/made.up", "", "", nil),
		"empty type":   checkRequest("", "", "", nil),
		"long version": checkRequest(resourcev3.ListenerType, "", strings.Repeat("v", MaxVersionLength+1), nil),
		"long nonce":   checkRequest(resourcev3.ListenerType, strings.Repeat("n", MaxVersionLength+1), "", nil),
		"many names":   checkRequest(resourcev3.ListenerType, "", "", make([]string, MaxResourceNames+1)),
	} {
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}

// FuzzCheckRequest: whatever a proxy sends, a request that passes is
// bounded, and what is kept of an error detail is bounded valid text.
func FuzzCheckRequest(f *testing.F) {
	f.Add(resourcev3.ListenerType, "nonce", "version", "name", "detail")
	f.Add("type.googleapis.com/x", "", "", "", strings.Repeat("é", 700))
	f.Fuzz(func(t *testing.T, typeURL, nonce, version, name, detail string) {
		if checkRequest(typeURL, nonce, version, []string{name}) == nil {
			if !KnownTypeURL(typeURL) || len(nonce) > MaxVersionLength || len(version) > MaxVersionLength || len(name) > MaxResourceNameLength {
				t.Fatalf("accepted %q %d %d %d", typeURL, len(nonce), len(version), len(name))
			}
		}
		got := truncate(detail, MaxErrorDetailLength)
		if len(got) > MaxErrorDetailLength {
			t.Fatalf("kept %d bytes", len(got))
		}
		if utf8.ValidString(detail) && !utf8.ValidString(got) {
			t.Fatalf("cut inside a rune: %q", got)
		}
	})
}

func TestCheckDeltaRequest(t *testing.T) {
	ok := &discoveryv3.DeltaDiscoveryRequest{ResourceNamesUnsubscribe: []string{"a"}, InitialResourceVersions: map[string]string{"a": strings.Repeat("f", 64)}}
	if err := checkDeltaRequest(ok); err != nil {
		t.Fatal(err)
	}
	many := map[string]string{}
	for i := range MaxResourceNames + 1 {
		many[strconv.Itoa(i)] = "v"
	}
	for name, req := range map[string]*discoveryv3.DeltaDiscoveryRequest{
		"many unsubscribed":    {ResourceNamesUnsubscribe: make([]string, MaxResourceNames+1)},
		"long unsubscribed":    {ResourceNamesUnsubscribe: []string{strings.Repeat("n", MaxResourceNameLength+1)}},
		"many initial":         {InitialResourceVersions: many},
		"long initial name":    {InitialResourceVersions: map[string]string{strings.Repeat("n", MaxResourceNameLength+1): "v"}},
		"long initial version": {InitialResourceVersions: map[string]string{"a": strings.Repeat("v", MaxVersionLength+1)}},
	} {
		if err := checkDeltaRequest(req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}
