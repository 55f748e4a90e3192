package main

import "syscall"

// bcryptNice is the nice value of the bcrypt threads. At 10 such a thread
// weighs a tenth of a normal one in the kernel's scheduler: requests come
// first, yet creates and logins still advance while reads saturate the
// CPU (at 19, the lowest, they all but stopped: a create waited seconds).
const bcryptNice = 10

// lowerThreadPriority lowers the calling OS thread's priority to
// bcryptNice. On Linux, nice applies to a thread, not the whole process.
func lowerThreadPriority() error {
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), bcryptNice)
}
