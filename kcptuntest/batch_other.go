//go:build !linux || kcptuntest_nobatch

package kcptuntest

// Portable datagram writes: one datagram per system call.

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

func sockNameOf(netip.AddrPort) sockName { return sockName{} }

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
