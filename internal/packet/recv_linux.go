//go:build linux && (amd64 || arm64 || riscv64 || loong64)

package packet

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxReadBatch bounds the datagrams of one recvmmsg call.
const maxReadBatch = 32

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
}

// batchReader reads datagrams from a UDP socket with recvmmsg. It starts
// with one buffer and doubles its batch, up to maxReadBatch, whenever a
// read fills every buffer, so an idle socket costs one buffer. It belongs
// to the Conn's reader. It calls recvmmsg itself rather than x/net's
// ReadBatch because ReadBatch allocates a source address for every datagram
// it returns, and this path must allocate nothing.
type batchReader struct {
	rc    syscall.RawConn
	bufs  [][]byte
	msgs  []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrInet6
	grow  bool
	n, i  int // datagrams in the last batch, and the next to hand out
	// the recvmmsg call, built once so that reading allocates nothing
	call  func(fd uintptr) bool
	got   int
	errno syscall.Errno
}

func newBatchReader(udp *net.UDPConn) *batchReader {
	rc, err := udp.SyscallConn()
	if err != nil {
		return nil
	}
	r := &batchReader{rc: rc}
	r.resize(1)
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

func (r *batchReader) resize(n int) {
	for len(r.bufs) < n {
		r.bufs = append(r.bufs, make([]byte, bufSize))
	}
	r.msgs = make([]mmsghdr, n)
	r.iovs = make([]syscall.Iovec, n)
	r.names = make([]syscall.RawSockaddrInet6, n)
	for i := range n {
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(MaxDatagram)
		r.msgs[i].hdr.Iov = &r.iovs[i]
		r.msgs[i].hdr.Iovlen = 1
		r.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
}

// next returns the next datagram, valid until the following call, reading
// a new batch when the last one is used up.
func (r *batchReader) next() ([]byte, netip.AddrPort, error) {
	for r.i >= r.n {
		if r.grow {
			r.grow = false
			r.resize(min(2*len(r.msgs), maxReadBatch))
		}
		for i := range r.msgs {
			r.msgs[i].hdr.Namelen = syscall.SizeofSockaddrInet6
			r.msgs[i].hdr.Flags = 0
			r.msgs[i].len = 0
		}
		if err := r.rc.Read(r.call); err != nil {
			return nil, netip.AddrPort{}, err
		}
		if r.errno != 0 {
			return nil, netip.AddrPort{}, os.NewSyscallError("recvmmsg", r.errno)
		}
		r.n, r.i = r.got, 0
		if r.n == len(r.msgs) && r.n < maxReadBatch {
			r.grow = true
		}
	}
	i := r.i
	r.i++
	return r.bufs[i][:r.msgs[i].len], sourceOf(&r.names[i]), nil
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
