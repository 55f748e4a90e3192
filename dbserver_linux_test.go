package main

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel kill cmd when the test binary dies,
// so a private server does not outlive a test killed by its deadline.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
