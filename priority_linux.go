package main

import "syscall"

// bcryptNice is the nice value of the bcrypt threads. At 10 such a thread
// weighs a tenth of a normal one in the kernel's scheduler: requests come
// first, yet creates and logins still advance while reads saturate the
// CPU (the lowest, 19, starved them: docs/performance.md).
const bcryptNice = 10

// lowerThreadPriority lowers the calling OS thread's priority to
// bcryptNice. On Linux, nice applies to a thread, not the whole process.
func lowerThreadPriority() error {
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), bcryptNice)
}
