package greeter

import (
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

// crossZonePorts are the loopback ports of `weftctl up --zones 2 --demo`
// (README: zone-k adds 100·k): every control plane's upPorts plus
// zone-sync (5685, 5686), the ingress-manager's admin (5687), the demo
// workloads (7070, 7071) and the ingress (10001).
func crossZonePorts() []int {
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

// freeOffsetOf is freeOffset for a list of ports.
func freeOffsetOf(t *testing.T, ports []int) int {
	t.Helper()
	for range 200 {
		// below the ephemeral range (32768), where no outgoing connection
		// or listener on port 0 can take a port before weftctl up binds it
		off := 10000 + rand.IntN(16000)
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

// stampedLines keeps a process's output lines with the time each arrived.
type stampedLines struct {
	mu    sync.Mutex
	part  []byte
	lines []stamped
}

type stamped struct {
	at   time.Time
	text string
}

func (l *stampedLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.part = append(l.part, p...)
	for {
		i := strings.IndexByte(string(l.part), '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, stamped{now, string(l.part[:i])})
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *stampedLines) snapshot() []stamped {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]stamped(nil), l.lines...)
}

func (l *stampedLines) String() string {
	var b strings.Builder
	for _, s := range l.snapshot() {
		b.WriteString(s.text)
		b.WriteByte('\n')
	}
	return b.String()
}

// tally is one of the demo client's summaries: calls served by zone, and
// failed calls, both counted since it started.
type tally struct {
	at     time.Time
	byZone map[string]int
	failed int
	line   string
}

var demoTallyRe = regexp.MustCompile(`demo: client-1-zone-1 \(zone-1\): calls to xds:///greeter\.mesh: served by ([^;]*); failed: (\d+)`)

func tallies(l *stampedLines) []tally {
	var out []tally
	for _, s := range l.snapshot() {
		m := demoTallyRe.FindStringSubmatch(s.text)
		if m == nil {
			continue
		}
		tl := tally{at: s.at, byZone: map[string]int{}, line: s.text}
		for _, part := range strings.Split(m[1], ", ") {
			if zone, n, ok := strings.Cut(part, ": "); ok {
				tl.byZone[zone], _ = strconv.Atoi(n)
			}
		}
		tl.failed, _ = strconv.Atoi(m[2])
		out = append(out, tl)
	}
	return out
}

// waitWindow waits (until the deadline) for two consecutive summaries,
// both printed after since, for which ok holds, and returns them: the
// window between them. With strict, only the first two summaries after
// since count.
func waitWindow(t *testing.T, l *stampedLines, since time.Time, within time.Duration, what string, strict bool, ok func(prev, cur tally) bool) (tally, tally) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var after []tally
		for _, tl := range tallies(l) {
			if tl.at.After(since) {
				after = append(after, tl)
			}
		}
		for i := 1; i < len(after); i++ {
			if ok(after[i-1], after[i]) {
				return after[i-1], after[i]
			}
			if strict {
				t.Fatalf("%s: the first window after the mark: %v then %v", what, after[i-1], after[i])
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startGroup starts cmd in its own process group and makes sure the whole
// group is gone when the test ends (SIGTERM, then SIGKILL after grace):
// scripts leave children (weft-dp, the apps) that hold their output open.
// done is closed when cmd has exited.
func startGroup(t *testing.T, cmd *exec.Cmd, grace time.Duration) (done chan struct{}) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second // output pipes held by leftover children
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(grace):
		}
		// Whatever is left of the group (even after cmd exited).
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not exit after SIGKILL", cmd.Path)
		}
	})
	return done
}

// TestREADMECrossZoneWalkthrough follows the README's cross-zone steps
// with its commands: `weftctl up --zones 2 --demo` (the client in zone-1 is
// served by zone-2 through zone-2's ingress, the greeter seeing the
// client's SPIFFE ID); `ZONE=zone-1 MESH=demo NAME=greeter-2-zone-1
// examples/greeter/run.sh greeter` in a second terminal: the traffic stays
// in zone-1; Ctrl-C on it (SIGINT to its process group, as a terminal
// sends it): the traffic fails over to zone-2 within 5 s, and no call
// fails after that. Every wait has a deadline; every process group is
// killed at the end.
func TestREADMECrossZoneWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs weftctl up --zones 2 --demo (minutes)")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("run.sh uses curl: install it (apt-get install curl)")
	}
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	env := append(os.Environ(), "HOME="+filepath.Join(tmp, "home"))
	env = append(env, goEnv(t)...)
	build := exec.Command("go", "build", "-o", bin+"/", "./weftctl/cmd/weftctl")
	build.Dir, build.Env = repo, env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build weftctl: %v\n%s", err, out)
	}

	// Terminal 1: weftctl up --zones 2 --demo (ports shifted to free ones).
	offset := freeOffsetOf(t, crossZonePorts())
	upOut := &stampedLines{}
	up := exec.Command(filepath.Join(bin, "weftctl"), "up", "--zones", "2", "--demo", "--data-dir", filepath.Join(tmp, "up"), "--port-offset", fmt.Sprint(offset))
	up.Dir, up.Env, up.Stdout, up.Stderr = repo, env, upOut, upOut
	upDone := startGroup(t, up, 30*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("weftctl up output:\n%s", upOut.String())
		}
	})
	begin := time.Now()
	_, first := waitWindow(t, upOut, begin, 5*time.Minute, "the zone-1 client served by zone-2", false, func(_, cur tally) bool { return cur.byZone["zone-2"] > 0 })
	if !strings.Contains(upOut.String(), "you are spiffe://demo/client") {
		t.Fatalf("the greeter did not see the client's SPIFFE ID")
	}
	t.Logf("served by zone-2 %s after start: %v", first.at.Sub(begin).Round(time.Second), first.byZone)

	// Terminal 2: a greeter in zone-1, as the README gives it.
	gOut := &stampedLines{}
	g := exec.Command("examples/greeter/run.sh", "greeter")
	g.Dir = repo
	g.Env = append(env, "ZONE=zone-1", "MESH=demo", "NAME=greeter-2-zone-1", "PORT_OFFSET="+fmt.Sprint(offset), "BIN="+bin,
		"WORKDIR="+filepath.Join(tmp, "work"), "GREETER_PORT="+fmt.Sprint(freePort(t)))
	g.Stdout, g.Stderr = gOut, gOut
	gDone := startGroup(t, g, 30*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run.sh greeter output:\n%s", gOut.String())
		}
	})
	started := time.Now()
	// Traffic stays local: a whole summary window in which only zone-1
	// served (each summary counts since the client started).
	_, local := waitWindow(t, upOut, started, 5*time.Minute, "traffic local to zone-1", false, func(prev, cur tally) bool {
		return prev.byZone["zone-1"] > 0 && cur.byZone["zone-1"] > prev.byZone["zone-1"] && cur.byZone["zone-2"] == prev.byZone["zone-2"]
	})
	t.Logf("local in zone-1 %s after run.sh greeter: %v", local.at.Sub(started).Round(time.Second), local.byZone)

	// Ctrl-C in terminal 2: SIGINT to its foreground process group.
	var atStop tally
	for _, tl := range tallies(upOut) {
		atStop = tl
	}
	if err := syscall.Kill(-g.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	select {
	case <-gDone:
	case <-time.After(time.Minute):
		t.Fatal("run.sh greeter did not stop on Ctrl-C within a minute")
	}
	// Within 5 s of Ctrl-C the traffic is zone-2's: the first window that
	// starts 5 s after it is served by zone-2 only, with no failed call.
	mark, back := waitWindow(t, upOut, stopped.Add(5*time.Second), 2*time.Minute, "traffic back in zone-2 within 5 s", true, func(prev, cur tally) bool {
		return cur.byZone["zone-2"] > prev.byZone["zone-2"] && cur.byZone["zone-1"] == prev.byZone["zone-1"] && cur.failed == prev.failed
	})
	t.Logf("back in zone-2: window %s–%s after Ctrl-C: %v; failed calls: %d before Ctrl-C, %d from Ctrl-C to %s after it, none after",
		mark.at.Sub(stopped).Round(100*time.Millisecond), back.at.Sub(stopped).Round(100*time.Millisecond), back.byZone,
		atStop.failed, mark.failed-atStop.failed, mark.at.Sub(stopped).Round(100*time.Millisecond))
	for _, tl := range tallies(upOut) {
		if tl.failed > 0 {
			t.Logf("the first summary with failed calls: %s", tl.line)
			break
		}
	}
	select {
	case <-upDone:
		t.Fatal("weftctl up exited during the walkthrough")
	default:
	}
}
