//go:build linux && !kcptuntest_nobatch

package kcptuntest

// System call numbers of linux/amd64; package syscall lacks sendmmsg here.
const (
	sysRECVMMSG = 299
	sysSENDMMSG = 307
)
