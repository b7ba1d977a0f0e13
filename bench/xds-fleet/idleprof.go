package main

import (
	"flag"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
)

// idleProfileEnv names the file the started xds-server writes a CPU profile
// of the idle window to (-xds-idle-cpuprofile): the fleet connected and
// configured, nothing changing — what runs periodically per stream.
const idleProfileEnv = "WEFT_XDS_FLEET_IDLE_CPUPROFILE"

func init() {
	flag.Func("xds-idle-cpuprofile", "write the started xds-server's CPU profile of the idle window only (after -settle, for -idle) to this file", func(p string) error {
		p, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		// The xds-server child inherits the environment.
		return os.Setenv(idleProfileEnv, p)
	})
}

// idleProfile tells the started xds-server (pid) to start (on) or stop its
// idle-window CPU profile; nothing without -xds-idle-cpuprofile.
func idleProfile(pid int, on bool) {
	if os.Getenv(idleProfileEnv) == "" || pid <= 0 {
		return
	}
	sig := syscall.SIGUSR2
	if !on {
		sig = syscall.SIGHUP
	}
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Signal(sig)
	}
}

// serveIdleProfile (in the xds-server child) starts a CPU profile on SIGUSR2
// and stops it on SIGHUP (the idle window's, or the connect window's). Go allows one CPU profile at a time, so it is
// not used together with -xds-cpuprofile.
func serveIdleProfile() {
	path := os.Getenv(idleProfileEnv)
	if path == "" {
		// The connect window's profile (connectprof.go) is served the
		// same way; the fleet refuses both at once.
		path = os.Getenv(connectProfileEnv)
	}
	if path == "" || os.Getenv(cpuProfileEnv) != "" {
		return
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR2, syscall.SIGHUP)
	go func() {
		var f *os.File
		for s := range sig {
			switch {
			case s == syscall.SIGUSR2 && f == nil:
				var err error
				if f, err = os.Create(path); err != nil {
					f = nil
					continue
				}
				if pprof.StartCPUProfile(f) != nil {
					f.Close()
					f = nil
				}
			case s == syscall.SIGHUP && f != nil:
				pprof.StopCPUProfile()
				f.Close()
				f = nil
			}
		}
	}()
}
