//go:build linux && (arm64 || riscv64 || loong64) && !kcptuntest_nobatch

package kcptuntest

import "syscall"

// System call numbers of the generic Linux system call table.
const (
	sysRECVMMSG = syscall.SYS_RECVMMSG
	sysSENDMMSG = syscall.SYS_SENDMMSG
)
