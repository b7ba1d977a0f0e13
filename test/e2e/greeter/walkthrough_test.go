// Package greeter tests the README's walkthrough exactly as a user runs it:
// `weftctl up` in one terminal, examples/greeter/run.sh in another (the
// script builds weftctl, weft-dp and the example, registers the mesh and the
// Dataplanes, starts weft-dp and the apps, and calls the greeter: denied,
// then allowed with mTLS).
package greeter

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// upPorts are the default ports of a standalone `weftctl up` (docs: README,
// docs/weftctl.md); --port-offset shifts them all.
var upPorts = []int{5678, 5679, 5680, 5681, 5682, 5653, 5654, 5688, 5689}

// zonePorts are the further ports of `weftctl up --zones 2 --demo`: zone-k
// adds 100*k to upPorts and runs an ingress (10001) and the demo workloads
// (7070, 7071).
func zonePorts() []int {
	ports := append([]int(nil), upPorts...)
	ports = append(ports, 5685, 5686, 5687, 7070, 7071, 10001)
	var all []int
	for k := range 3 {
		for _, p := range ports {
			all = append(all, p+100*k)
		}
	}
	return all
}

// freeOffset finds a --port-offset whose ports are all free on loopback
// (TCP, and UDP for DNS), the way a user picks one when the defaults are
// taken.
func freeOffset(t *testing.T, ports []int) int {
	t.Helper()
	for range 200 {
		off := 10000 + rand.IntN(40000)
		ok := true
		var held []io.Closer
		for _, p := range ports {
			addr := fmt.Sprintf("127.0.0.1:%d", p+off)
			l, err := net.Listen("tcp", addr)
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				ok = false
				break
			}
			held = append(held, u)
		}
		for _, c := range held {
			c.Close()
		}
		if ok {
			return off
		}
	}
	t.Fatal("no free port offset")
	return 0
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lines collects a process's output.
type lines struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// goEnv keeps the Go caches when HOME is a temporary directory.
func goEnv(t *testing.T) []string {
	t.Helper()
	var env []string
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
		out, err := exec.Command("go", "env", k).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", k, err)
		}
		env = append(env, k+"="+strings.TrimSpace(string(out)))
	}
	return env
}

func TestREADMEWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the walkthrough uses curl: install it (apt-get install curl)")
	}
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	env := userEnv(t, tmp)

	offset := freeOffset(t, upPorts)
	startUp(t, repo, bin, env, "up", "--data-dir", filepath.Join(tmp, "up"), "--port-offset", fmt.Sprint(offset))

	// Terminal 2: the example, as the README gives it.
	run := exec.Command("examples/greeter/run.sh")
	run.Dir = repo
	run.Env = append(env, "PORT_OFFSET="+fmt.Sprint(offset), "BIN="+bin, "WORKDIR="+filepath.Join(tmp, "work"),
		"GREETER_PORT="+fmt.Sprint(freePort(t)), "CLIENT_PORT="+fmt.Sprint(freePort(t)))
	outb, err := run.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("run.sh: %v\n%s", err, out)
	}
	// The calls are denied until the permission exists, then allowed with
	// mTLS: the greeter saw the client's SPIFFE ID from its certificate.
	want := []string{
		"spiffeID=spiffe://example/greeter",
		"spiffeID=spiffe://example/client",
		"got PermissionDenied: ",
		"created TrafficPermission example/client-to-greeter",
		"got OK from greeter-1 in standalone: hello client, from greeter-1 in standalone; you are spiffe://example/client",
		"calls to xds:///greeter.mesh: served by standalone: 3; failed: 0",
	}
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("run.sh output lacks %q (in this order):\n%s", w, out)
		}
		rest = rest[i+len(w):]
	}
	// Every command the script ran is printed for the user to copy.
	sc := bufio.NewScanner(strings.NewReader(out))
	n := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "$ ") {
			n++
		}
	}
	if n < 10 {
		t.Errorf("run.sh printed %d commands, want every step:\n%s", n, out)
	}
}

// userEnv is a user's environment with HOME in tmp: weftctl up writes the
// weftctl config there.
func userEnv(t *testing.T, tmp string) []string {
	env := append(os.Environ(), "HOME="+filepath.Join(tmp, "home"))
	return append(env, goEnv(t)...)
}

// startUp builds weftctl and runs `weftctl ARGS` (up) until the test ends,
// returning its output once it printed "Weft is up.".
func startUp(t *testing.T, repo, bin string, env []string, args ...string) *lines {
	t.Helper()
	build := exec.Command("go", "build", "-o", bin+"/", "./weftctl/cmd/weftctl")
	build.Dir, build.Env = repo, env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build weftctl: %v\n%s", err, out)
	}
	upOut := &lines{}
	ctx, cancel := context.WithCancel(context.Background())
	up := exec.CommandContext(ctx, filepath.Join(bin, "weftctl"), args...)
	up.Dir, up.Env, up.Stdout, up.Stderr = repo, env, upOut, upOut
	up.Cancel = func() error { return up.Process.Signal(os.Interrupt) }
	up.WaitDelay = 30 * time.Second
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := up.Wait(); err != nil && ctx.Err() == nil {
			t.Errorf("weftctl up: %v", err)
		}
		if t.Failed() {
			t.Logf("weftctl up output:\n%s", upOut.String())
		}
	})
	waitOutput(t, upOut, 3*time.Minute, func(s string) bool { return strings.Contains(s, "Weft is up.") })
	return upOut
}

func waitOutput(t *testing.T, l *lines, within time.Duration, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok(l.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s; output:\n%s", within, l.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var tallyRe = regexp.MustCompile(`demo: client-1-zone-1 \(zone-1\): calls to xds:///greeter.mesh: served by ([^;]*); failed: (\d+)`)

// lastTally is the client's last printed count by zone, and its failures.
func lastTally(s string) (map[string]int, int) {
	m := tallyRe.FindAllStringSubmatch(s, -1)
	if len(m) == 0 {
		return nil, 0
	}
	last := m[len(m)-1]
	by := map[string]int{}
	for _, part := range strings.Split(last[1], ", ") {
		if zone, n, ok := strings.Cut(part, ": "); ok {
			by[zone], _ = strconv.Atoi(n)
		}
	}
	failed, _ := strconv.Atoi(last[2])
	return by, failed
}

// TestREADMECrossZoneDemo: `weftctl up --zones 2 --demo`; the client in
// zone-1 is served by zone-2; `ZONE=zone-1 MESH=demo NAME=greeter-2-zone-1
// examples/greeter/run.sh greeter` takes the traffic local; stopped (as
// Ctrl-C does), traffic goes back to zone-2 without failed calls.
func TestREADMECrossZoneDemo(t *testing.T) {
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	env := userEnv(t, tmp)
	offset := freeOffset(t, zonePorts())
	upOut := startUp(t, repo, bin, env, "up", "--zones", "2", "--demo", "--data-dir", filepath.Join(tmp, "up"), "--port-offset", fmt.Sprint(offset))
	waitOutput(t, upOut, 3*time.Minute, func(s string) bool { by, _ := lastTally(s); return by["zone-2"] > 0 })
	if !strings.Contains(upOut.String(), "you are spiffe://demo/client") {
		t.Fatalf("the greeter did not see the client's SPIFFE ID:\n%s", upOut.String())
	}

	g := exec.Command("examples/greeter/run.sh", "greeter")
	g.Dir = repo
	g.Env = append(env, "ZONE=zone-1", "MESH=demo", "NAME=greeter-2-zone-1", "PORT_OFFSET="+fmt.Sprint(offset), "BIN="+bin,
		"WORKDIR="+filepath.Join(tmp, "work"), "GREETER_PORT="+fmt.Sprint(freePort(t)))
	gOut := &lines{}
	g.Stdout, g.Stderr = gOut, gOut
	// Its own process group, so a failing test can stop the script and
	// the weft-dp and greeter it started; they hold its output open.
	g.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	g.WaitDelay = 10 * time.Second
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	gDone := make(chan error, 1)
	go func() { gDone <- g.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-g.Process.Pid, syscall.SIGTERM)
		select {
		case <-gDone:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-g.Process.Pid, syscall.SIGKILL)
			<-gDone
		}
		if t.Failed() {
			t.Logf("run.sh greeter output:\n%s", gOut.String())
		}
	})
	// The local greeter takes the traffic: zone-1's count grows.
	waitOutput(t, upOut, 3*time.Minute, func(s string) bool { by, _ := lastTally(s); return by["zone-1"] > 0 })
	by, failedBefore := lastTally(upOut.String())
	localCalls, remoteCalls := by["zone-1"], by["zone-2"]
	waitOutput(t, upOut, time.Minute, func(s string) bool {
		by, _ := lastTally(s)
		return by["zone-1"] >= localCalls+10 && by["zone-2"] <= remoteCalls+1
	})

	// Stopped as Ctrl-C stops it: back to zone-2.
	if err := g.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gDone:
	case <-time.After(time.Minute):
		t.Fatal("run.sh greeter did not stop on SIGTERM")
	}
	by, _ = lastTally(upOut.String())
	remoteCalls = by["zone-2"]
	waitOutput(t, upOut, time.Minute, func(s string) bool { by, _ := lastTally(s); return by["zone-2"] >= remoteCalls+10 })
	// Failover loses at most the calls in flight when the greeter stopped
	// (each call has a 2 s deadline, one every 200 ms).
	if _, failed := lastTally(upOut.String()); failed-failedBefore > 10 {
		t.Errorf("%d calls failed over the failover", failed-failedBefore)
	}
}
