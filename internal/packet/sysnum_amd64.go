//go:build linux && amd64

package packet

// The syscall package has no recvmmsg number on amd64.
const sysRECVMMSG = 299
