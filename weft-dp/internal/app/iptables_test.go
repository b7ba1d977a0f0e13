package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIptablesCommand(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"iptables", "--print", "--inbound-ports=8080", "--exclude-uids=1000", "--dns-server=10.0.0.10:5653"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"-A WEFT_INBOUND -p tcp --dport 8080 -j WEFT_IN_REDIRECT", "--uid-owner 1000 -j RETURN",
		"-p udp --dport 53 -j DNAT --to-destination 10.0.0.10:5653", "COMMIT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in\n%s", want, out.String())
		}
	}

	// --apply runs iptables-restore with the same rules on stdin.
	dir := t.TempDir()
	got := filepath.Join(dir, "got")
	restore := filepath.Join(dir, "iptables-restore")
	if err := os.WriteFile(restore, []byte("#!/bin/sh\ncat > "+got+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	printed := out.String()
	out.Reset()
	if code := Main(context.Background(), []string{"iptables", "--apply", "--iptables-restore", restore, "--inbound-ports=8080",
		"--exclude-uids=1000", "--dns-server=10.0.0.10:5653"}, &out, &errb); code != 0 {
		t.Fatalf("apply exit %d: %s", code, errb.String())
	}
	if b, err := os.ReadFile(got); err != nil || string(b) != printed {
		t.Fatalf("applied %q (%v), printed %q", b, err, printed)
	}
	if out.Len() != 0 {
		t.Errorf("--apply alone printed %q", out.String())
	}
}

func TestIptablesCommandRejects(t *testing.T) {
	for _, args := range [][]string{
		{"iptables"}, // neither --print nor --apply
		{"iptables", "--print", "--inbound-ports=0"},
		{"iptables", "--print", "--dns-server=dns:53"},
		{"iptables", "--print", "--redirect-inbound-port=15001"}, // equals the outbound one
		{"iptables", "--print", "extra"},
	} {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), args, &out, &errb); code != 2 || out.Len() != 0 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}
