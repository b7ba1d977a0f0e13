// Package proc is what the end-to-end tests share to run the programs they
// build (testapp, xds-server, weft-dp) and talk to them: subprocesses whose
// output lines are kept, a wait for a line, a free loopback port, testapp's
// /call, and the Dataplane of a proxyless gRPC workload.
package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Proc is a subprocess whose output lines are kept.
type Proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

// Start runs bin with args and env added to the test's environment; it is
// killed at the end of the test (and its output logged if the test failed).
func Start(t *testing.T, env []string, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout = pw
	p.cmd.Stderr = pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	go func() {
		_ = p.cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- output of %s %v:\n%s", bin, args, p.Output())
		}
	})
	return p
}

// Kill kills the process and waits for it.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Output is the last 20,000 bytes of output.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := strings.Join(p.lines, "\n")
	if len(out) > 20000 {
		out = out[len(out)-20000:]
	}
	return out
}

// WaitLine waits for a line matching re and returns its submatches.
func (p *Proc) WaitLine(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	var m []string
	Eventually(t, timeout, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.lines {
			if m = re.FindStringSubmatch(l); m != nil {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("process exited")
		default:
		}
		return fmt.Errorf("no line matching %s", re)
	})
	return m
}

// Eventually retries f every 50 ms until it returns nil, failing the test
// after timeout.
func Eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not true within %s: %v", timeout, err)
}

// Call asks a testapp client (its CONTROL address) for one RPC: "OK <reply>"
// or "ERR <code> <message>".
func Call(controlAddr string) string {
	resp, err := http.Get("http://" + controlAddr + "/call")
	if err != nil {
		return "ERR transport " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(bytes.TrimSpace(b))
}

// FreePort is a loopback port free at the time of the call, for a program
// the test starts later. It is picked below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), so neither an outgoing connection nor a
// listener on port 0 can take it in the meantime; a port this process has
// handed out before is never handed out again.
func FreePort(t *testing.T) int {
	t.Helper()
	low := ephemeralLow()
	freeMu.Lock()
	defer freeMu.Unlock()
	for range 500 {
		p := low - 12000 + rand.IntN(12000)
		if p < 1024 || handedOut[p] {
			continue
		}
		lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		lis.Close()
		handedOut[p] = true
		return p
	}
	t.Fatalf("no free loopback port below %d", low)
	return 0
}

var (
	freeMu    sync.Mutex
	handedOut = map[int]bool{}
)

// ephemeralLow is the first port of the kernel's ephemeral range (32768 when
// it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 13024 {
		return 32768
	}
	return n
}

// DataplaneYAML is a proxyless gRPC workload of mesh default on loopback.
func DataplaneYAML(name, service string, port int) string {
	return fmt.Sprintf(`
type: Dataplane
mesh: default
name: %s
networking:
  address: 127.0.0.1
  inbound:
  - port: %d
    tags:
      weft.io/service: %s
      weft.io/protocol: grpc
`, name, port, service)
}
