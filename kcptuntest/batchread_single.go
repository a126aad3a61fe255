//go:build !linux || race || kcptuntest_nobatch

package kcptuntest

// Portable datagram reads: one datagram per system call. Also used on Linux
// under the race detector (see batchread_linux.go).

import "net/netip"

// batchReader reads one datagram at a time from one socket. It belongs to
// one goroutine.
type batchReader struct {
	s    *sock
	from bool
	buf  []byte
	n    int
	addr netip.AddrPort
}

func newBatchReader(s *sock, from bool, _ int) *batchReader {
	return &batchReader{s: s, from: from, buf: make([]byte, maxDatagram)}
}

// read waits for a datagram and returns 1.
func (r *batchReader) read() (int, error) {
	var err error
	if r.from {
		r.n, r.addr, err = r.s.conn.ReadFromUDPAddrPort(r.buf)
	} else {
		r.n, err = r.s.conn.Read(r.buf)
	}
	if err != nil {
		return 0, err
	}
	return 1, nil
}

func (r *batchReader) datagram(int) []byte       { return r.buf[:r.n] }
func (r *batchReader) source(int) netip.AddrPort { return r.addr }
func (r *batchReader) name(int) sockName         { return sockNameOf(r.addr) }
