//go:build !linux || kcptuntest_nobatch

package kcptuntest

// Portable datagram I/O: one datagram per system call.

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// batchConn and sockName are unused where I/O is not batched.
type (
	batchConn struct{}
	sockName  struct{}
)

func newBatchConn(*net.UDPConn) batchConn { return batchConn{} }

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
func (r *batchReader) name(int) sockName         { return sockName{} }

// batchWriter writes datagrams one at a time.
type batchWriter struct{}

// write sends bufs on s, to the address of to, or to the peer of a
// connected s when to is nil. A datagram whose write fails is skipped. It
// returns how many datagrams were sent and their bytes, and how many of
// bufs it dealt with, sent or failed: all of them unless s turned out to
// be closed, which err then says.
func (w *batchWriter) write(s *sock, to *client, bufs [][]byte) (sent, bytes, done int, err error) {
	for _, b := range bufs {
		var e error
		if to != nil {
			_, e = s.conn.WriteToUDPAddrPort(b, to.addr)
		} else {
			_, e = s.conn.Write(b)
			if errors.Is(e, syscall.ECONNREFUSED) {
				// The error of an earlier datagram, reported on this one
				// instead of sending it; the report cleared it.
				_, e = s.conn.Write(b)
			}
		}
		if e != nil && errors.Is(e, net.ErrClosed) {
			return sent, bytes, done, e
		}
		done++
		if e == nil {
			sent++
			bytes += len(b)
		}
	}
	return sent, bytes, done, nil
}
