package main

import "syscall"

// lowerThreadPriority sets the calling OS thread's nice value to 19, the
// lowest priority, so the kernel runs it only when nothing else wants the
// CPU. On Linux, nice applies to a thread, not to the whole process.
func lowerThreadPriority() error {
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 19)
}
