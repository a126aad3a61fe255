//go:build linux && !race && !kcptuntest_nobatch

package kcptuntest

// Batched reads for Linux, through golang.org/x/net's ReadBatch (recvmmsg).
//
// Not under the race detector: x/net tells it, before each call, that every
// read buffer of the batch (64 KiB each) is written, which makes batched
// reads many times slower than single ones there. Race builds read one
// datagram at a time (batchread_single.go) and still batch their writes.

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// batchReader reads batches of datagrams from one socket. It belongs to
// one goroutine. It starts with one buffer and doubles the batch, up to
// its maximum, whenever a read fills every buffer, so that idle sockets
// cost little memory.
type batchReader struct {
	s    *sock
	max  int
	grow bool
	msgs []ipv4.Message
}

func newBatchReader(s *sock, _ bool, max int) *batchReader {
	r := &batchReader{s: s, max: max}
	r.resize(1)
	return r
}

func (r *batchReader) resize(n int) {
	for len(r.msgs) < n {
		r.msgs = append(r.msgs, ipv4.Message{Buffers: [][]byte{make([]byte, maxDatagram)}})
	}
}

// read waits for datagrams and returns how many it read, at least one.
func (r *batchReader) read() (int, error) {
	if r.grow {
		r.grow = false
		r.resize(min(2*len(r.msgs), r.max))
	}
	n, err := r.s.batch.ReadBatch(r.msgs, 0)
	if err != nil {
		return 0, err
	}
	if n == len(r.msgs) && n < r.max {
		r.grow = true
	}
	return n, nil
}

// datagram returns the i-th datagram of the last read.
func (r *batchReader) datagram(i int) []byte {
	return r.msgs[i].Buffers[0][:r.msgs[i].N]
}

// source returns the source address of the i-th datagram of the last read.
func (r *batchReader) source(i int) netip.AddrPort {
	if a, ok := r.msgs[i].Addr.(*net.UDPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// name returns the source address of the i-th datagram of the last read in
// the form WriteBatch takes.
func (r *batchReader) name(i int) sockName {
	a, _ := r.msgs[i].Addr.(*net.UDPAddr)
	return a
}
