package up

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes a demo workload get SIGTERM when weftctl up dies
// without stopping it (killed with SIGKILL), so none is left behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
