//go:build !linux

package up

import "os/exec"

// dieWithParent is Linux's Pdeathsig; elsewhere up stops its workloads
// only when it stops cleanly.
func dieWithParent(*exec.Cmd) {}
