package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// setParentDeathSignal has the kernel kill cmd when the test binary dies,
// so a private server does not outlive a test killed by its deadline.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// processAlive reports whether process pid exists: signal 0 reaches it,
// or is refused because it is another user's.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// processesMentioning lists the processes whose command line contains s,
// as pid and command line.
func processesMentioning(s string) []string {
	var found []string
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, name := range cmdlines {
		data, err := os.ReadFile(name)
		if err != nil || !strings.Contains(string(data), s) {
			continue
		}
		pid := filepath.Base(filepath.Dir(name))
		found = append(found, pid+": "+strings.ReplaceAll(string(data), "\x00", " "))
	}
	return found
}
