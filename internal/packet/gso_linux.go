//go:build linux

package packet

import (
	"encoding/binary"
	"syscall"
	"unsafe"
)

// UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18): one message
// carries a run of datagrams of one size (the last may be shorter) that the
// kernel passes down the stack as one and splits late, on loopback at the
// receiving socket. Receivers still get separate datagrams.
const (
	gsoSupported   = true
	solUDP         = 17  // SOL_UDP
	udpSegment     = 103 // UDP_SEGMENT
	gsoMaxSegments = 64  // UDP_MAX_SEGMENTS of older kernels
	gsoMaxBytes    = 65507
)

// gsoCmsgSpace is the room one UDP_SEGMENT control message takes.
var gsoCmsgSpace = syscall.CmsgSpace(2)

// putGSO writes a UDP_SEGMENT control message for segments of size bytes
// into oob, which must hold gsoCmsgSpace bytes, and returns it.
func putGSO(oob []byte, size int) []byte {
	oob = oob[:gsoCmsgSpace]
	clear(oob)
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = solUDP, udpSegment
	h.SetLen(syscall.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[syscall.CmsgLen(0):], uint16(size))
	return oob
}
