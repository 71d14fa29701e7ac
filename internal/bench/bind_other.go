//go:build !linux

package bench

import "syscall"

func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }

func childAttr() *syscall.SysProcAttr { return nil }
