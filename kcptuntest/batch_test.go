package kcptuntest

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// TestBatchWriteRead sends runs of datagrams with the relay's batch
// writer, both to a connected socket's peer and to an address read from a
// datagram, in runs that segmentation offload may carry as one message
// (equal sizes, a shorter last one) and runs it may not; the batch reader
// on the other end must get every datagram whole, in order, from the right
// source.
func TestBatchWriteRead(t *testing.T) {
	aConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback})
	if err != nil {
		t.Fatal(err)
	}
	a, err := newSock(aConn)
	if err != nil {
		t.Fatal(err)
	}
	defer aConn.Close()
	bConn, err := net.DialUDP("udp", nil, aConn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	b, err := newSock(bConn)
	if err != nil {
		t.Fatal(err)
	}
	defer bConn.Close()

	var sizes []int
	for range 70 { // more than one batch and one offload run
		sizes = append(sizes, 1200)
	}
	sizes = append(sizes, 700, 1200, 1200, 1, 1500, 1500, 300)
	bufs := make([][]byte, len(sizes))
	for i, n := range sizes {
		bufs[i] = bytes.Repeat([]byte{byte(i)}, n)
	}

	// expect reads len(bufs) datagrams from r and checks them, returning
	// the address of the first.
	expect := func(s *sock, from bool) *client {
		t.Helper()
		_ = s.conn.SetReadDeadline(time.Now().Add(waitTimeout))
		r := newBatchReader(s, from, 8)
		var src *client
		for got := 0; got < len(bufs); {
			n, err := r.read()
			if err != nil {
				t.Fatalf("read after %d of %d datagrams: %v", got, len(bufs), err)
			}
			for i := range n {
				if d := r.datagram(i); !bytes.Equal(d, bufs[got]) {
					t.Fatalf("datagram %d: %d bytes starting %v, want %d bytes of %d",
						got, len(d), d[:min(len(d), 4)], len(bufs[got]), byte(got))
				}
				if from && src == nil {
					src = &client{addr: r.source(i), name: r.name(i)}
				}
				got++
			}
		}
		return src
	}

	var w batchWriter
	sent, nbytes, done, err := w.write(b, nil, bufs)
	if err != nil || sent != len(bufs) || done != len(bufs) {
		t.Fatalf("write to the peer: sent %d, done %d of %d: %v", sent, done, len(bufs), err)
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	if nbytes != total {
		t.Errorf("write reported %d bytes, want %d", nbytes, total)
	}
	t.Logf("gso refused: %v", b.noGSO.Load())
	back := expect(a, true)
	if want := bConn.LocalAddr().(*net.UDPAddr).AddrPort(); back.addr != want {
		t.Fatalf("source %v, want %v", back.addr, want)
	}

	sent, _, done, err = w.write(a, back, bufs)
	if err != nil || sent != len(bufs) || done != len(bufs) {
		t.Fatalf("write to the source: sent %d, done %d of %d: %v", sent, done, len(bufs), err)
	}
	expect(b, false)

	bConn.Close()
	if _, _, _, err := w.write(b, nil, bufs[:1]); err == nil {
		t.Error("write on a closed socket did not fail")
	}
}
