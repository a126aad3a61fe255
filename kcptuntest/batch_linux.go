//go:build linux && (amd64 || arm64 || riscv64 || loong64) && !kcptuntest_nobatch

package kcptuntest

// Batched datagram I/O for Linux: recvmmsg and sendmmsg through the
// sockets' syscall.RawConn, so that the relay pays one system call per batch
// of datagrams rather than per datagram.

import (
	"encoding/binary"
	"net/netip"
	"os"
	"syscall"
	"unsafe"
)

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
}

// sockName is a client's address as the kernel gave it, to send back to
// without converting it each time.
type sockName struct {
	raw syscall.RawSockaddrInet6 // large enough for sockaddr_in too
	len uint32
}

// batchReader reads batches of datagrams from one socket. It belongs to
// one goroutine. It starts with one buffer and doubles the batch, up to
// its maximum, whenever a read fills every buffer, so that idle sockets
// cost little memory.
type batchReader struct {
	s     *sock
	from  bool // record source addresses
	max   int
	grow  bool
	bufs  [][]byte
	msgs  []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrInet6
}

func newBatchReader(s *sock, from bool, max int) *batchReader {
	r := &batchReader{s: s, from: from, max: max}
	r.resize(1)
	return r
}

func (r *batchReader) resize(n int) {
	for len(r.bufs) < n {
		r.bufs = append(r.bufs, make([]byte, maxDatagram))
	}
	r.msgs = make([]mmsghdr, n)
	r.iovs = make([]syscall.Iovec, n)
	if r.from {
		r.names = make([]syscall.RawSockaddrInet6, n)
	}
	for i := range n {
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(maxDatagram)
		r.msgs[i].hdr.Iov = &r.iovs[i]
		r.msgs[i].hdr.Iovlen = 1
		if r.from {
			r.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		}
	}
}

// read waits for datagrams and returns how many it read, at least one.
func (r *batchReader) read() (int, error) {
	if r.grow {
		r.grow = false
		r.resize(min(2*len(r.msgs), r.max))
	}
	for i := range r.msgs {
		if r.from {
			r.msgs[i].hdr.Namelen = syscall.SizeofSockaddrInet6
		}
		r.msgs[i].hdr.Flags = 0
		r.msgs[i].len = 0
	}
	k := len(r.msgs)
	var n int
	var errno syscall.Errno
	err := r.s.rc.Read(mmsgCall(sysRECVMMSG, unsafe.Pointer(&r.msgs[0]), k, &n, &errno))
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", errno)
	}
	if n == k && k < r.max {
		r.grow = true
	}
	return n, nil
}

// datagram returns the i-th datagram of the last read.
func (r *batchReader) datagram(i int) []byte {
	return r.bufs[i][:r.msgs[i].len]
}

// source returns the source address of the i-th datagram of the last read.
func (r *batchReader) source(i int) netip.AddrPort {
	raw := &r.names[i]
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:])
	switch raw.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(raw))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
	case syscall.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(raw.Addr), port)
	}
	return netip.AddrPort{}
}

// name returns the source address of the i-th datagram of the last read in
// the kernel's form.
func (r *batchReader) name(i int) sockName {
	return sockName{raw: r.names[i], len: r.msgs[i].hdr.Namelen}
}

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

var gsoCmsgSpace = syscall.CmsgSpace(2)

// batchWriter writes batches of datagrams. It belongs to one goroutine.
type batchWriter struct {
	msgs []mmsghdr
	iovs []syscall.Iovec
	oob  []byte
	segs []int // datagrams in each message
}

// write sends bufs on s, to the address of to, or to the peer of a
// connected s when to is nil. A datagram whose write fails is skipped. It
// returns how many datagrams were sent and their bytes, and how many of
// bufs it dealt with, sent or failed: all of them unless s turned out to
// be closed, which err then says.
func (w *batchWriter) write(s *sock, to *client, bufs [][]byte) (sent, bytes, done int, err error) {
	var name *byte
	var namelen uint32
	if to != nil {
		name = (*byte)(unsafe.Pointer(&to.name.raw))
		namelen = to.name.len
	}
	if w.msgs == nil {
		w.msgs = make([]mmsghdr, writeBatchMax)
		w.iovs = make([]syscall.Iovec, writeBatchMax)
		w.oob = make([]byte, writeBatchMax*gsoCmsgSpace)
		w.segs = make([]int, writeBatchMax)
	}
	defer clear(w.iovs) // do not keep the buffers alive
	gso := !s.noGSO.Load()
	retried := false
	for done < len(bufs) {
		nm := w.prepare(bufs[done:], gso, name, namelen)
		var n int
		var errno syscall.Errno
		err = s.rc.Write(mmsgCall(sysSENDMMSG, unsafe.Pointer(&w.msgs[0]), nm, &n, &errno))
		if err != nil {
			return sent, bytes, done, err
		}
		if errno != 0 || n <= 0 {
			switch {
			case errno == syscall.ECONNREFUSED && !retried:
				// The error of an earlier datagram, reported on this one
				// instead of sending it; the report cleared it.
				retried = true
			case w.segs[0] > 1 && gsoRefused(errno):
				// The socket or its route cannot segment: send
				// datagrams one by one from now on.
				s.noGSO.Store(true)
				gso = false
			default:
				done += w.segs[0] // these datagrams cannot be sent
				retried = false
			}
			continue
		}
		for _, k := range w.segs[:n] {
			for _, b := range bufs[done : done+k] {
				bytes += len(b)
			}
			sent += k
			done += k
		}
		retried = false
	}
	return sent, bytes, done, nil
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

// prepare fills w.msgs with the first datagrams of bufs and returns the
// number of messages.
func (w *batchWriter) prepare(bufs [][]byte, gso bool, name *byte, namelen uint32) int {
	nm, ni := 0, 0
	for i := 0; i < len(bufs) && nm < writeBatchMax && ni < writeBatchMax; {
		segs := 1
		if size := len(bufs[i]); gso && size > 0 {
			total := size
			for i+segs < len(bufs) && segs < gsoMaxSegments && ni+segs < writeBatchMax {
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
		m := &w.msgs[nm].hdr
		m.Name, m.Namelen = name, namelen
		m.Iov, m.Iovlen = &w.iovs[ni], uint64(segs)
		for j, b := range bufs[i : i+segs] {
			iov := &w.iovs[ni+j]
			iov.Base = nil
			if len(b) > 0 {
				iov.Base = &b[0]
			}
			iov.SetLen(len(b))
		}
		m.Control = nil
		m.SetControllen(0)
		if segs > 1 {
			oob := w.oob[nm*gsoCmsgSpace : (nm+1)*gsoCmsgSpace]
			h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
			h.Level, h.Type = solUDP, udpSegment
			h.SetLen(syscall.CmsgLen(2))
			binary.NativeEndian.PutUint16(oob[syscall.CmsgLen(0):], uint16(len(bufs[i])))
			m.Control = &oob[0]
			m.SetControllen(gsoCmsgSpace)
		}
		w.segs[nm] = segs
		nm++
		ni += segs
		i += segs
	}
	return nm
}

// mmsgCall returns the function that a syscall.RawConn's Read or Write runs:
// recvmmsg or sendmmsg (trap) on k messages, retried when interrupted, and
// reported as not ready when the socket would block. The count and the
// errno land in n and errno.
func mmsgCall(trap uintptr, msgs unsafe.Pointer, k int, n *int, errno *syscall.Errno) func(fd uintptr) bool {
	return func(fd uintptr) bool {
		for {
			r1, _, e := syscall.Syscall6(trap, fd, uintptr(msgs), uintptr(k), 0, 0, 0)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			*n, *errno = int(r1), e
			return true
		}
	}
}
