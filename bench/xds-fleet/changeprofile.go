package main

// A CPU profile of the started xds-server over the change scenarios only
// (-xds-change-cpuprofile FILE): the fleet signals the child with SIGUSR2
// just before each scenario's change and again once every proxy has ACKed
// it. Each window goes to its own file, named after the scenario:
// FILE "x.pprof" gives "x.a.pprof" ((a) one endpoint added) and
// "x.b.pprof" ((b) mesh-wide policy). `go tool pprof -top x.a.pprof
// x.b.pprof` merges them. The connect storm and the idle phase are left
// out (unlike -xds-cpuprofile, the whole run).

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// changeProfileEnv carries FILE (absolute) to the child.
const changeProfileEnv = "WEFT_XDS_FLEET_CHANGE_CPUPROFILE"

var changeCPUProfile = flag.String("xds-change-cpuprofile", "", "write the started xds-server's CPU profile over the change scenarios to FILE with .a/.b before the extension (one per scenario)")

// changeProfilePath is FILE with the scenario's letter before the extension.
func changeProfilePath(file string, scenario byte) string {
	ext := filepath.Ext(file)
	return strings.TrimSuffix(file, ext) + "." + string(scenario) + ext
}

// exportChangeProfile hands -xds-change-cpuprofile to the children started
// after it (their environment is this process's). A process has one CPU
// profile at a time: it excludes -xds-cpuprofile.
func exportChangeProfile(o options) error {
	if os.Getenv(idleProfileEnv) != "" {
		// The idle profile is also started and stopped by signals.
		if o.apiURL != "" {
			return fmt.Errorf("-xds-idle-cpuprofile needs the xds-server this command starts (no -api-url)")
		}
		if *changeCPUProfile != "" || o.cpuProfile != "" {
			return fmt.Errorf("-xds-idle-cpuprofile excludes -xds-change-cpuprofile and -xds-cpuprofile (one CPU profile at a time)")
		}
	}
	if *changeCPUProfile == "" {
		return nil
	}
	if o.cpuProfile != "" {
		return fmt.Errorf("-xds-change-cpuprofile and -xds-cpuprofile exclude each other")
	}
	if o.apiURL != "" {
		// SIGUSR2 would terminate an xds-server that is not this
		// binary's child.
		return fmt.Errorf("-xds-change-cpuprofile needs the xds-server this command starts (no -api-url)")
	}
	return os.Setenv(changeProfileEnv, abs(*changeCPUProfile))
}

// changeProfiler drives the child's profile from the fleet.
type changeProfiler struct {
	file string
	pid  int
}

func newChangeProfiler(pid int) *changeProfiler {
	if *changeCPUProfile == "" || pid == 0 {
		return nil
	}
	return &changeProfiler{file: abs(*changeCPUProfile), pid: pid}
}

// start asks the child to profile scenario's window and waits until it
// does (its partial file exists).
func (p *changeProfiler) start(scenario byte) error {
	if p == nil {
		return nil
	}
	out := changeProfilePath(p.file, scenario)
	_ = os.Remove(out)
	_ = os.Remove(out + ".part")
	if err := syscall.Kill(p.pid, syscall.SIGUSR2); err != nil {
		return err
	}
	return waitFile(out+".part", 10*time.Second)
}

// stop ends the window and waits until the profile is written.
func (p *changeProfiler) stop(scenario byte) error {
	if p == nil {
		return nil
	}
	if err := syscall.Kill(p.pid, syscall.SIGUSR2); err != nil {
		return err
	}
	return waitFile(changeProfilePath(p.file, scenario), 30*time.Second)
}

func waitFile(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("xds-server wrote no %s in %s", path, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveChangeProfile runs in the child: each SIGUSR2 starts the next
// window's profile (FILE.a, FILE.b, …, first written as .part) or stops
// the running one and renames it into place.
func serveChangeProfile(ctx context.Context) {
	file := os.Getenv(changeProfileEnv)
	if file == "" {
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR2)
	go func() {
		scenario := byte('a')
		var f *os.File
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
			}
			out := changeProfilePath(file, scenario)
			if f == nil {
				var err error
				if f, err = os.Create(out + ".part"); err != nil {
					fmt.Fprintln(os.Stderr, "xds-fleet: change profile:", err)
					continue
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					fmt.Fprintln(os.Stderr, "xds-fleet: change profile:", err)
					f.Close()
					f = nil
				}
				continue
			}
			pprof.StopCPUProfile()
			f.Close()
			f = nil
			_ = os.Rename(out+".part", out)
			scenario++
		}
	}()
}
