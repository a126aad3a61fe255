//go:build linux && (amd64 || arm64 || riscv64 || loong64)

package packet

import (
	"bytes"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// groPayload is datagram i of a test run: its size and a pattern that
// tells it from every other.
func groPayload(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(i*7 + j)
	}
	return b
}

// sendGSO sends ds, all of ds[0]'s size but the last, as one GSO message.
func sendGSO(t *testing.T, tx, rx *net.UDPConn, ds [][]byte) {
	t.Helper()
	msg := bytes.Join(ds, nil)
	oob := putGSO(make([]byte, gsoCmsgSpace), len(ds[0]))
	if _, _, err := tx.WriteMsgUDP(msg, oob, rx.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatalf("GSO send: %v", err)
	}
}

// groReader returns a batch reader for rx with GRO on. Only a kernel
// without the option (before Linux 5.0) skips the test; any other refusal
// fails it.
func groReader(t *testing.T, rx *net.UDPConn) *batchReader {
	t.Helper()
	r := newBatchReader(rx, true)
	if err := r.enableGRO(); errors.Is(err, syscall.ENOPROTOOPT) {
		t.Skip("this kernel has no UDP_GRO")
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBatchReaderSplitsGRO checks that with UDP GRO on, a run the kernel
// delivers as one message comes out of the reader as the datagrams that
// were sent, in order, each with its own bytes and the sender's address,
// and that single datagrams still come out whole.
func TestBatchReaderSplitsGRO(t *testing.T) {
	rx, tx := listenUDP(t), listenUDP(t)
	defer rx.Close()
	defer tx.Close()
	if err := rx.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err) // a datagram lost in the split fails the read, not the run
	}
	r := groReader(t, rx)
	var want [][]byte
	run := func(sizes ...int) [][]byte {
		var ds [][]byte
		for _, size := range sizes {
			ds = append(ds, groPayload(len(want), size))
			want = append(want, ds[len(ds)-1])
		}
		return ds
	}
	sendGSO(t, tx, rx, run(1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 300))
	for _, d := range run(1200, 80, MaxDatagram) {
		if _, err := tx.WriteToUDP(d, rx.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
	}
	sendGSO(t, tx, rx, run(1400, 1400, 1400))
	from := tx.LocalAddr().(*net.UDPAddr).AddrPort()
	for i, w := range want {
		d, src, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if src != from {
			t.Errorf("datagram %d from %v, want %v", i, src, from)
		}
		if !bytes.Equal(d, w) {
			t.Fatalf("datagram %d: %d bytes, want %d bytes of pattern %d", i, len(d), len(w), i)
		}
		if r.off != 0 && cap(d) != len(d) { // more of its message follows
			t.Errorf("datagram %d: capacity %d reaches past its %d bytes into the next", i, cap(d), len(d))
		}
	}
	if r.merged == 0 {
		t.Error("no message carried more than one datagram: the split was not exercised")
	}
}

// burstPair returns a receiving socket with room for a burst and a read
// deadline, and a socket to send from; both close with the test.
func burstPair(t *testing.T) (rx, tx *net.UDPConn) {
	t.Helper()
	rx, tx = listenUDP(t), listenUDP(t)
	t.Cleanup(func() { rx.Close(); tx.Close() })
	if err := rx.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	if err := rx.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	return rx, tx
}

// TestBatchReaderTurnsOnGROWhenBusy checks that a reader that fills its
// largest batch turns GRO on for a socket it may change, and never for one
// it may not (a caller's), and that every datagram arrives either way.
func TestBatchReaderTurnsOnGROWhenBusy(t *testing.T) {
	for _, allowed := range []bool{false, true} {
		rx, tx := burstPair(t)
		r := newBatchReader(rx, allowed)
		// 1+2+4+8+16+32 datagrams fill every batch size once; the next
		// full batch of 32 is the one that asks for GRO.
		const n = 63 + 32 + 20
		for i := range n {
			if _, err := tx.WriteToUDP(groPayload(i, 64), rx.LocalAddr().(*net.UDPAddr)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range n {
			d, _, err := r.next()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d, groPayload(i, 64)) {
				t.Fatalf("GRO allowed %v: datagram %d is not the one sent", allowed, i)
			}
		}
		if r.gro != allowed {
			t.Errorf("GRO allowed %v: on %v after %d datagrams in full batches", allowed, r.gro, n)
		}
	}
}

// TestBatchReaderGROAllocations checks that reading and splitting GRO
// messages allocates nothing once the reader's buffers exist.
func TestBatchReaderGROAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	rx, tx := listenUDP(t), listenUDP(t)
	defer rx.Close()
	defer tx.Close()
	if err := rx.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	r := groReader(t, rx)
	ds := [][]byte{groPayload(1, 1200), groPayload(2, 1200), groPayload(3, 1200), groPayload(4, 50)}
	msg := bytes.Join(ds, nil)
	oob := putGSO(make([]byte, gsoCmsgSpace), 1200)
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	round := func() {
		if _, _, err := tx.WriteMsgUDPAddrPort(msg, oob, to); err != nil {
			t.Fatal(err)
		}
		for range ds {
			if _, _, err := r.next(); err != nil {
				t.Fatal(err)
			}
		}
	}
	round()
	if a := testing.AllocsPerRun(100, round); a != 0 {
		t.Errorf("%.1f allocations per GSO message sent, read and split", a)
	}
}

// TestBatchReaderShrinks checks that a reader whose batch grew goes back to
// two buffers (of 64 KiB with GRO on) once no read has taken more than one
// message for shrinkAfter, and not before, that it grows again when reads
// fill it, and that no datagram is lost or cut on the way.
func TestBatchReaderShrinks(t *testing.T) {
	for _, gro := range []bool{false, true} {
		rx, tx := burstPair(t)
		var r *batchReader
		if gro {
			r = groReader(t, rx)
		} else {
			r = newBatchReader(rx, false)
		}
		now := time.Now()
		r.clock = func() time.Time { return now }
		sent := 0
		send := func(n int) {
			t.Helper()
			for range n {
				if _, err := tx.WriteToUDP(groPayload(sent, 700), rx.LocalAddr().(*net.UDPAddr)); err != nil {
					t.Fatal(err)
				}
				sent++
			}
		}
		got := 0
		receive := func(n int) {
			t.Helper()
			for range n {
				d, _, err := r.next()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(d, groPayload(got, 700)) {
					t.Fatalf("GRO %v: datagram %d is not the one sent", gro, got)
				}
				got++
			}
		}
		const want = 2
		if !gro {
			// 1+2+4+8+16 datagrams fill every batch size up to 16 once, so
			// that the next read grows the batch to 32.
			send(31)
			receive(31)
		}
		send(1)
		receive(1)
		big := len(r.msgs)
		if big <= want {
			t.Fatalf("GRO %v: the batch holds %d buffers before the test", gro, big)
		}
		// One datagram at a time, within shrinkAfter of the last busy
		// read: the batch stays.
		for range 3 {
			now = now.Add(shrinkAfter / 4)
			send(1)
			receive(1)
		}
		if len(r.msgs) != big {
			t.Fatalf("GRO %v: %d buffers after %v of single reads, want %d still", gro, len(r.msgs), 3*shrinkAfter/4, big)
		}
		// Past shrinkAfter: the next read shrinks the batch first.
		now = now.Add(shrinkAfter)
		send(1)
		receive(1)
		send(1)
		receive(1)
		if len(r.msgs) != want || len(r.bufs) != want {
			t.Fatalf("GRO %v: %d messages and %d buffers after single reads for %v, want %d", gro, len(r.msgs), len(r.bufs), shrinkAfter, want)
		}
		if gro && len(r.bufs[0]) != groBufSize {
			t.Fatalf("GRO on: the buffer left has %d bytes, want %d", len(r.bufs[0]), groBufSize)
		}
		// The smaller batch still reads whatever comes, and grows again
		// when reads fill it.
		send(20)
		receive(20)
		if len(r.msgs) <= want {
			t.Fatalf("GRO %v: %d buffers after full reads, want more than %d", gro, len(r.msgs), want)
		}
	}
}
