package main

// A CPU profile of the started xds-server over the connect storm only
// (-xds-connect-cpuprofile FILE): from just before the first dial until
// every proxy is configured. The child starts it on SIGUSR2 and stops it on
// SIGHUP, as the idle window's (idleprof.go); one CPU profile at a time, so
// it excludes -xds-cpuprofile, -xds-change-cpuprofile and
// -xds-idle-cpuprofile.

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// connectProfileEnv carries FILE (absolute) to the child.
const connectProfileEnv = "WEFT_XDS_FLEET_CONNECT_CPUPROFILE"

func init() {
	flag.Func("xds-connect-cpuprofile", "write the started xds-server's CPU profile of the connect storm only (first dial until every proxy is configured) to this file", func(p string) error {
		p, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		return os.Setenv(connectProfileEnv, p)
	})
}

// checkConnectProfile refuses the combinations that would need two CPU
// profiles at once, or signal an xds-server that is not this binary's child.
func checkConnectProfile(o options) error {
	if os.Getenv(connectProfileEnv) == "" {
		return nil
	}
	if o.apiURL != "" {
		return fmt.Errorf("-xds-connect-cpuprofile needs the xds-server this command starts (no -api-url)")
	}
	if o.scenario != "" {
		// The replica scenarios connect their fleets elsewhere; nothing
		// would start or stop the window.
		return fmt.Errorf("-xds-connect-cpuprofile profiles the default run's connect storm (no -scenario)")
	}
	if o.cpuProfile != "" || *changeCPUProfile != "" || os.Getenv(idleProfileEnv) != "" {
		return fmt.Errorf("-xds-connect-cpuprofile excludes -xds-cpuprofile, -xds-change-cpuprofile and -xds-idle-cpuprofile (one CPU profile at a time)")
	}
	return nil
}

// connectProfile starts (on) or stops the child's connect-window profile;
// nothing without -xds-connect-cpuprofile. Starting waits (up to 10 s)
// until the child has created the file, so the window covers the first
// dial.
func connectProfile(pid int, on bool) error {
	path := os.Getenv(connectProfileEnv)
	if path == "" || pid <= 0 {
		return nil
	}
	if !on {
		return syscall.Kill(pid, syscall.SIGHUP)
	}
	_ = os.Remove(path)
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		return err
	}
	return waitFile(path, 10*time.Second)
}
