package ads

import (
	"strings"
	"testing"
	"unicode/utf8"

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
