//go:build linux && (arm64 || riscv64 || loong64)

package packet

import "syscall"

const sysRECVMMSG = syscall.SYS_RECVMMSG
