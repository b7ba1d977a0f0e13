package app_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/weftmesh/weft/k8s-controller/app"
)

// Bad configuration exits 2 naming the flag, before anything connects.
func TestMainRejectsBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"--mode=nope":                                "--mode",
		"--mode=zone":                                "--zone: required",
		"--mode=global --zone=a":                     "--zone: must be empty",
		"--webhook-url=http://x":                     "--webhook-url",
		"--resync=10ms":                              "--resync",
		"--webhook-cert-file=/c":                     "--webhook-cert-file and --webhook-key-file",
		"--zone=Not_A_Label --mode=zone":             "--zone",
		"--admin-address=nohostport":                 "--admin-address",
		"--webhook-cert-file=c --webhook-key-file=k": "--webhook-ca-file",
		"--pod-token-validity=10s":                   "--pod-token-validity",
		"--pod-token-validity=100000h":               "--pod-token-validity",
	} {
		var stderr bytes.Buffer
		if code := app.Main(context.Background(), strings.Fields(args), &stderr); code != 2 || !strings.Contains(stderr.String(), want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", args, code, stderr.String(), want)
		}
	}
}
