package kubetest

import "syscall"

// sysProcAttr kills the API server when the test binary dies without
// stopping it (a panic, a timeout), so none is left behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
