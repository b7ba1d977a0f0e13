package sni

import (
	"crypto/tls"
	"maps"
	"net"
	"strings"
	"testing"
)

// TestWireFormat pins the spelling: it is what deployed proxies send and
// ingresses route by, so changing it is a protocol break.
func TestWireFormat(t *testing.T) {
	for _, tc := range []struct {
		mesh, svc string
		tags      map[string]string
		want      string
	}{
		{"default", "greeter", nil, "greeter.default.mesh"},
		{"default", "greeter", map[string]string{"weft.io/service": "greeter"}, "greeter.default.mesh"},
		{"m", "web", map[string]string{"version": "v1"}, "web." + enc.EncodeToString([]byte("version=v1")) + ".m.mesh"},
		{"m", "web", map[string]string{"version": "v1", "env": "prod"}, "web." + enc.EncodeToString([]byte("env=prod\x00version=v1")) + ".m.mesh"},
	} {
		got, err := Format(tc.mesh, tc.svc, tc.tags)
		if err != nil || got != tc.want {
			t.Errorf("Format(%q, %q, %v) = %q, %v; want %q", tc.mesh, tc.svc, tc.tags, got, err, tc.want)
			continue
		}
		n, err := Parse(got)
		if err != nil || n.Mesh != tc.mesh || n.Service != tc.svc {
			t.Errorf("Parse(%q) = %+v, %v", got, n, err)
		}
		want := maps.Clone(tc.tags)
		delete(want, serviceTag)
		if len(want) == 0 {
			want = nil
		}
		if !maps.Equal(n.Tags, want) {
			t.Errorf("Parse(%q).Tags = %v, want %v", got, n.Tags, want)
		}
	}
	if got := enc.EncodeToString([]byte("version=v1")); got != "epin4sr9dtn3qthh" {
		t.Errorf("subset alphabet changed: %q", got)
	}
	if Service("default", "greeter") != "greeter.default.mesh" {
		t.Error("Service changed")
	}
}

func TestLongSubsetSpansLabels(t *testing.T) {
	tags := map[string]string{"version": strings.Repeat("v", 60)}
	s, err := Format("m", "web", tags)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(s, ".") != 4 { // web.<63>.<rest>.m.mesh
		t.Errorf("%q: want the subset in two labels", s)
	}
	n, err := Parse(s)
	if err != nil || n.Tags["version"] != tags["version"] {
		t.Fatalf("Parse(%q) = %+v, %v", s, n, err)
	}
	if _, err := Format("m", "web", map[string]string{"k": strings.Repeat("x", 200)}); err == nil {
		t.Error("a name over 253 bytes was formatted")
	}
}

func TestRejects(t *testing.T) {
	for _, s := range []string{
		"", "mesh", ".mesh", "greeter.mesh", "greeter.default.mesh.", "greeter.default.com",
		"Greeter.default.mesh", "greeter..default.mesh", "-a.default.mesh",
		"web.zz.m.mesh",                // not base32hex
		"web.epin4sr9dtn3qthhx.m.mesh", // trailing bits
		"web." + enc.EncodeToString([]byte("weft.io/service=web")) + ".m.mesh",
		"web." + enc.EncodeToString([]byte("b=1\x00a=2")) + ".m.mesh", // not sorted
		"web." + enc.EncodeToString([]byte("a=1\x00a=1")) + ".m.mesh", // repeated
		"web." + enc.EncodeToString([]byte("novalue")) + ".m.mesh",
		strings.Repeat("a.", 130) + "m.mesh",
	} {
		if n, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", s, n)
		}
	}
	for _, tc := range []struct {
		mesh, svc string
		tags      map[string]string
	}{
		{"", "web", nil}, {"m", "", nil}, {"M", "web", nil}, {"m", "we.b", nil},
		{"m", "web", map[string]string{"weft.io/service": "other"}},
		{"m", "web", map[string]string{"a=b": "1"}},
		{"m", "web", map[string]string{"a": ""}},
	} {
		if s, err := Format(tc.mesh, tc.svc, tc.tags); err == nil {
			t.Errorf("Format(%q, %q, %v) = %q, want an error", tc.mesh, tc.svc, tc.tags, s)
		}
	}
}

// TestGoTLSCarriesName: a Go TLS client sends the name unchanged and a Go
// TLS server reads it back (grpc-go uses crypto/tls; Envoy takes any DNS
// name of labels).
func TestGoTLSCarriesName(t *testing.T) {
	name, err := Format("default", "greeter", map[string]string{"version": "v2", "weft.io/zone": "zone-2"})
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	got := make(chan string, 1)
	go func() {
		srv := tls.Server(c2, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			got <- h.ServerName
			return nil, net.ErrClosed
		}})
		_ = srv.Handshake()
		c2.Close()
	}()
	_ = tls.Client(c1, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
	if g := <-got; g != name {
		t.Fatalf("server read %q, client sent %q", g, name)
	}
}

// FuzzParse: server names come from the network (every ClientHello an
// ingress reads). Whatever the input, Parse either refuses it or returns a
// name that Format spells back byte for byte.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"greeter.default.mesh", "web.epin4sr9dtn3qthh.m.mesh", "", ".mesh", "a.b.c.mesh", "web.zz.m.mesh"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Format(n.Mesh, n.Service, n.Tags)
		if err != nil || again != s {
			t.Fatalf("Parse(%q) = %+v, Format gives %q, %v", s, n, again, err)
		}
		if _, ok := n.Tags[serviceTag]; ok {
			t.Fatalf("Parse(%q) kept %s in the subset", s, serviceTag)
		}
	})
}
