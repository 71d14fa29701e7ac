//go:build unix

package server

import "syscall"

// openFileLimit returns the process's soft limit on open files, or 0 when
// it is unknown or unlimited.
func openFileLimit() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	cur := uint64(l.Cur) // int64 on some systems
	if cur > 1<<30 {
		return 0 // unlimited, or as good as
	}
	return int(cur)
}
