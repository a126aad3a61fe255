//go:build linux && !kcptuntest_nobatch

package kcptuntest

// Batched datagram I/O for Linux, through golang.org/x/net's ipv4 and ipv6
// packet conns (ReadBatch and WriteBatch, recvmmsg and sendmmsg underneath),
// so that the relay pays one system call per batch of datagrams rather than
// per datagram. This file has what both directions share and the writer;
// batchread_linux.go has the reader.

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchConn is what the ipv4 and ipv6 packet conns have in common: their
// Message types are one and the same.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// newBatchConn wraps conn in the packet conn of its address family.
func newBatchConn(conn *net.UDPConn) batchConn {
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		return ipv4.NewPacketConn(conn)
	}
	return ipv6.NewPacketConn(conn)
}

// sockName is a client's address in the form WriteBatch takes, kept so
// that writing to the client converts nothing.
type sockName = *net.UDPAddr

// sockNameOf converts an address to the form WriteBatch takes.
//
//lint:ignore U1000 the single-datagram reader of race builds uses it
func sockNameOf(a netip.AddrPort) sockName { return net.UDPAddrFromAddrPort(a) }

// Generic segmentation offload (UDP_SEGMENT, Linux 4.18): one sendmmsg
// message can carry a run of datagrams of one size, the last one possibly
// shorter, which the kernel passes down the stack as one and splits late,
// on loopback at the receiving socket. The receiver still gets separate
// datagrams unless it asked for UDP_GRO.
const (
	solUDP         = 17  // SOL_UDP
	udpSegment     = 103 // UDP_SEGMENT
	gsoMaxSegments = 64  // UDP_MAX_SEGMENTS of older kernels
	gsoMaxBytes    = 65507
)

// gsoCmsgSpace is the room one UDP_SEGMENT control message takes.
var gsoCmsgSpace = syscall.CmsgSpace(2)

// putGSO writes into oob a UDP_SEGMENT control message that splits a
// message into datagrams of size bytes. A cmsghdr is a length of the
// platform's word size followed by two 32-bit ints, level and type.
func putGSO(oob []byte, size int) {
	clear(oob)
	n := uint64(syscall.CmsgLen(2))
	if syscall.SizeofCmsghdr == 16 {
		binary.NativeEndian.PutUint64(oob, n)
	} else {
		binary.NativeEndian.PutUint32(oob, uint32(n))
	}
	lenSize := syscall.SizeofCmsghdr - 8
	binary.NativeEndian.PutUint32(oob[lenSize:], solUDP)
	binary.NativeEndian.PutUint32(oob[lenSize+4:], udpSegment)
	binary.NativeEndian.PutUint16(oob[syscall.CmsgLen(0):], uint16(size))
}

// batchWriter writes batches of datagrams. It belongs to one goroutine.
type batchWriter struct {
	msgs []ipv4.Message
	oob  []byte
}

// write sends bufs on s, to the address of to, or to the peer of a
// connected s when to is nil. A datagram whose write fails is skipped. It
// returns how many datagrams were sent and their bytes, and how many of
// bufs it dealt with, sent or failed: all of them unless s turned out to
// be closed, which err then says.
func (w *batchWriter) write(s *sock, to *client, bufs [][]byte) (sent, bytes, done int, err error) {
	var addr net.Addr
	if to != nil {
		addr = to.name
	}
	if w.msgs == nil {
		w.msgs = make([]ipv4.Message, writeBatchMax)
		w.oob = make([]byte, writeBatchMax*gsoCmsgSpace)
	}
	defer w.release() // do not keep the buffers alive
	gso := !s.noGSO.Load()
	retried := false
	for done < len(bufs) {
		nm := w.prepare(bufs[done:], gso, addr)
		n, werr := s.batch.WriteBatch(w.msgs[:nm], 0)
		if n <= 0 {
			var errno syscall.Errno
			if werr != nil && !errors.As(werr, &errno) {
				return sent, bytes, done, werr // s is closed
			}
			switch {
			case errno == syscall.EINTR:
				// Interrupted before anything went out: try again.
			case errno == syscall.ECONNREFUSED && !retried:
				// The error of an earlier datagram, reported on this one
				// instead of sending it; the report cleared it.
				retried = true
			case len(w.msgs[0].Buffers) > 1 && gsoRefused(errno):
				// The socket or its route cannot segment: send
				// datagrams one by one from now on.
				s.noGSO.Store(true)
				gso = false
			default:
				done += len(w.msgs[0].Buffers) // these datagrams cannot be sent
				retried = false
			}
			continue
		}
		for _, m := range w.msgs[:n] {
			for _, b := range m.Buffers {
				bytes += len(b)
			}
			sent += len(m.Buffers)
			done += len(m.Buffers)
		}
		retried = false
	}
	return sent, bytes, done, nil
}

// release drops the references of the messages to the caller's buffers.
func (w *batchWriter) release() {
	for i := range w.msgs {
		w.msgs[i].Buffers = nil
		w.msgs[i].Addr = nil
	}
}

// gsoRefused reports whether a send error may mean that the kernel, the
// socket or the route does not do segmentation offload, or not for this
// size.
func gsoRefused(errno syscall.Errno) bool {
	switch errno {
	case syscall.EINVAL, syscall.EIO, syscall.EMSGSIZE, syscall.ENOPROTOOPT, syscall.EOPNOTSUPP:
		return true
	}
	return false
}

// prepare fills w.msgs with the first datagrams of bufs, grouping runs of
// equal-sized ones into one message when gso is on, and returns the number
// of messages. Each message's Buffers is a subslice of bufs.
func (w *batchWriter) prepare(bufs [][]byte, gso bool, addr net.Addr) int {
	nm, nd := 0, 0
	for i := 0; i < len(bufs) && nm < writeBatchMax && nd < writeBatchMax; {
		segs := 1
		if size := len(bufs[i]); gso && size > 0 {
			total := size
			for i+segs < len(bufs) && segs < gsoMaxSegments && nd+segs < writeBatchMax {
				next := len(bufs[i+segs])
				if next > size || next == 0 || total+next > gsoMaxBytes {
					break
				}
				segs++
				total += next
				if next < size {
					break // only the last datagram may be shorter
				}
			}
		}
		m := &w.msgs[nm]
		m.Buffers, m.Addr, m.OOB = bufs[i:i+segs:i+segs], addr, nil
		if segs > 1 {
			oob := w.oob[nm*gsoCmsgSpace : (nm+1)*gsoCmsgSpace]
			putGSO(oob, len(bufs[i]))
			m.OOB = oob
		}
		nm++
		nd += segs
		i += segs
	}
	return nm
}
