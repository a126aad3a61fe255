//go:build !(linux && (amd64 || arm64 || riscv64 || loong64))

package packet

import (
	"net"
	"net/netip"
)

// batchReader is not available here: datagrams are read one at a time.
type batchReader struct{}

func newBatchReader(*net.UDPConn, bool) *batchReader { return nil }

func (*batchReader) next() ([]byte, netip.AddrPort, error) {
	panic("packet: no batch reader on this platform")
}
