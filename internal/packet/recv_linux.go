//go:build linux && (amd64 || arm64 || riscv64 || loong64)

package packet

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// maxReadBatch bounds the datagrams of one recvmmsg call.
	maxReadBatch = 32
	// udpGRO is the UDP_GRO socket option (Linux 5.0): the kernel may hand
	// a run of datagrams of one flow to the socket as one message, with
	// their size in a control message.
	udpGRO = 104
	// groBatch is how many messages one recvmmsg call takes once GRO is
	// on; each may carry up to 64 datagrams.
	groBatch = 8
	// groBufSize holds the largest message GRO can build: a UDP payload is
	// at most 65535 bytes less its headers.
	groBufSize = 1 << 16
	// shrinkAfter is how long a reader keeps a batch of several buffers
	// while no read takes more than one message.
	shrinkAfter = 5 * time.Second
)

// groCmsgSpace is the room one UDP_GRO control message (an int) takes.
var groCmsgSpace = syscall.CmsgSpace(4)

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
}

// batchReader reads datagrams from a UDP socket with recvmmsg. It starts
// with one buffer and doubles its batch, up to maxReadBatch, whenever a
// read fills every buffer, so an idle socket costs one buffer; once no read
// has taken more than one message for shrinkAfter, it goes back to two (of
// 64 KiB each while GRO is on, see below). It belongs
// to the Conn's reader. It calls recvmmsg itself rather than x/net's
// ReadBatch because ReadBatch allocates a source address for every datagram
// it returns, and this path must allocate nothing.
//
// On a socket the Conn owns, a read that fills maxReadBatch buffers also
// turns on UDP GRO: from then on the kernel may deliver a run of a
// sender's datagrams (a GSO send, or a burst its GRO engine merged) as one
// message, which the reader splits again. That costs groBatch buffers of
// 64 KiB, so only a session that has been busy pays it. A kernel that
// refuses the option leaves the reader as it was.
type batchReader struct {
	rc    syscall.RawConn
	bufs  [][]byte
	msgs  []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrInet6
	grow  bool
	n, i  int // messages in the last batch, and the one being handed out
	// shrink asks for two buffers before the next read; busyAt is when a
	// read last took more than one message; clock is time.Now but in tests.
	shrink bool
	busyAt time.Time
	clock  func() time.Time
	// GRO: tryGRO says the option may still be tried; gro says it is on.
	// segs holds each message's datagram size (0: one datagram), and off
	// the offset of the next datagram in message i.
	tryGRO, gro bool
	oob         []byte
	segs        []int
	off         int
	merged      int // messages that carried more than one datagram
	// the recvmmsg call, built once so that reading allocates nothing
	call  func(fd uintptr) bool
	got   int
	errno syscall.Errno
}

// newBatchReader returns a reader for udp, or nil when its descriptor is
// out of reach. gro allows UDP GRO to be turned on, which changes what the
// socket delivers to any reader: only for a socket the Conn owns.
func newBatchReader(udp *net.UDPConn, gro bool) *batchReader {
	rc, err := udp.SyscallConn()
	if err != nil {
		return nil
	}
	r := &batchReader{rc: rc, tryGRO: gro, clock: time.Now}
	r.resize(1, bufSize)
	r.call = func(fd uintptr) bool {
		for {
			n, _, e := syscall.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)), 0, 0, 0)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			r.got, r.errno = int(n), e
			return true
		}
	}
	return r
}

// resize gives the reader n buffers of size bytes each, keeping those it
// has when they are large enough. A larger batch has shrinkAfter to prove
// itself before it shrinks.
func (r *batchReader) resize(n, size int) {
	if n > len(r.msgs) {
		r.busyAt = r.clock()
	}
	if len(r.bufs) > 0 && len(r.bufs[0]) < size {
		r.bufs = nil
	}
	if n < len(r.bufs) {
		r.bufs = append([][]byte(nil), r.bufs[:n]...) // let the others go
	}
	for len(r.bufs) < n {
		r.bufs = append(r.bufs, make([]byte, size))
	}
	r.bufs = r.bufs[:n]
	r.msgs = make([]mmsghdr, n)
	r.iovs = make([]syscall.Iovec, n)
	r.names = make([]syscall.RawSockaddrInet6, n)
	r.segs = make([]int, n)
	iovLen := MaxDatagram
	if r.gro {
		iovLen = size
		r.oob = make([]byte, n*groCmsgSpace)
	}
	for i := range n {
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(iovLen)
		r.msgs[i].hdr.Iov = &r.iovs[i]
		r.msgs[i].hdr.Iovlen = 1
		r.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		if r.gro {
			r.msgs[i].hdr.Control = &r.oob[i*groCmsgSpace]
		}
	}
}

// enableGRO turns UDP GRO on, once; an error says it stays off.
func (r *batchReader) enableGRO() error {
	r.tryGRO = false
	var serr error
	err := r.rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), solUDP, udpGRO, 1)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	r.gro = true
	r.resize(groBatch, groBufSize)
	return nil
}

// next returns the next datagram, valid until the following call, reading
// a new batch when the last one is used up.
func (r *batchReader) next() ([]byte, netip.AddrPort, error) {
	for r.i >= r.n {
		switch {
		case r.grow:
			r.grow = false
			switch {
			case r.gro:
				r.resize(min(2*len(r.msgs), groBatch), groBufSize)
			case len(r.msgs) < maxReadBatch:
				r.resize(min(2*len(r.msgs), maxReadBatch), bufSize)
			case r.tryGRO:
				_ = r.enableGRO() // refused: plain reads go on
			}
		case r.shrink:
			// Two buffers, so that reads of one message do not fill the
			// batch and grow it again.
			r.shrink = false
			if r.gro {
				r.resize(2, groBufSize)
			} else {
				r.resize(2, bufSize)
			}
		}
		for i := range r.msgs {
			r.msgs[i].hdr.Namelen = syscall.SizeofSockaddrInet6
			r.msgs[i].hdr.Flags = 0
			if r.gro {
				r.msgs[i].hdr.SetControllen(groCmsgSpace)
			}
			r.msgs[i].len = 0
		}
		if err := r.rc.Read(r.call); err != nil {
			return nil, netip.AddrPort{}, err
		}
		if r.errno != 0 {
			return nil, netip.AddrPort{}, os.NewSyscallError("recvmmsg", r.errno)
		}
		r.n, r.i, r.off = r.got, 0, 0
		if r.n == len(r.msgs) {
			if r.gro {
				r.grow = len(r.msgs) < groBatch // back from a shrink
			} else {
				r.grow = len(r.msgs) < maxReadBatch || r.tryGRO
			}
		}
		if r.gro {
			for i := range r.n {
				r.segs[i] = groSize(&r.msgs[i].hdr)
				if r.segs[i] > 0 && int(r.msgs[i].len) > r.segs[i] {
					r.merged++
				}
			}
		}
		if len(r.msgs) > 2 {
			if now := r.clock(); r.n > 1 {
				r.busyAt = now
			} else {
				r.shrink = now.Sub(r.busyAt) >= shrinkAfter
			}
		}
	}
	i := r.i
	msg := r.bufs[i][:r.msgs[i].len]
	d := msg[r.off:]
	if seg := r.segs[i]; seg > 0 && len(d) > seg {
		d = d[:seg:seg] // the full slice expression keeps appends off the next datagram
		r.off += seg
	} else {
		r.i++
		r.off = 0
	}
	if len(d) > MaxDatagram {
		d = d[:MaxDatagram] // as a plain read would have cut it
	}
	return d, sourceOf(&r.names[i]), nil
}

// groSize returns the datagram size of a UDP_GRO control message in h, or
// 0 when there is none (the message is one datagram).
func groSize(h *syscall.Msghdr) int {
	if h.Control == nil || h.Controllen < uint64(syscall.CmsgLen(4)) {
		return 0
	}
	oob := unsafe.Slice(h.Control, h.Controllen)
	for len(oob) >= syscall.SizeofCmsghdr {
		c := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if c.Len < syscall.SizeofCmsghdr || uint64(c.Len) > uint64(len(oob)) {
			return 0
		}
		if c.Level == solUDP && c.Type == udpGRO && int(c.Len) >= syscall.CmsgLen(4) {
			return int(binary.NativeEndian.Uint32(oob[syscall.CmsgLen(0):]))
		}
		oob = oob[min(cmsgAlign(int(c.Len)), len(oob)):]
	}
	return 0
}

// cmsgAlign rounds n up to the alignment of control messages.
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}

// sourceOf decodes a sockaddr_in or sockaddr_in6.
func sourceOf(raw *syscall.RawSockaddrInet6) netip.AddrPort {
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
