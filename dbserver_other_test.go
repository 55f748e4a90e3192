//go:build !linux

package main

import "os/exec"

// setParentDeathSignal does nothing off Linux: a private server there
// outlives a test binary that is killed.
func setParentDeathSignal(cmd *exec.Cmd) {}

// processAlive says yes off Linux, where a dead binary's server may live
// on: its directory is kept.
func processAlive(pid int) bool { return true }

// processesMentioning finds nothing off Linux: it reads /proc.
func processesMentioning(s string) []string { return nil }
