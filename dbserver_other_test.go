//go:build !linux

package main

import "os/exec"

// setParentDeathSignal does nothing off Linux: a private server there
// outlives a test binary that is killed.
func setParentDeathSignal(cmd *exec.Cmd) {}
