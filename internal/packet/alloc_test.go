package packet

import (
	"encoding/binary"
	"net"
	"testing"
)

// pipePC hands what a Conn sends to a receiving Conn, dropping every
// dropEvery-th datagram, without allocating.
type pipePC struct {
	nopPC
	rx        *Conn
	from      *net.UDPAddr
	buf, out  []byte
	n         int
	dropEvery int
}

func (p *pipePC) WriteTo(b []byte, _ net.Addr) (int, error) {
	p.n++
	if p.rx == nil || (p.dropEvery > 0 && p.n%p.dropEvery == 0) {
		return len(b), nil
	}
	n := copy(p.buf, b)
	p.rx.input(p.buf[:n], p.from.AddrPort(), p.out)
	for _, r := range p.rx.pend { // as ReadFrom delivers them
		p.rx.pool.put(r)
	}
	clear(p.rx.pendPeer)
	p.rx.pend, p.rx.pendPeer = p.rx.pend[:0], p.rx.pendPeer[:0]
	return len(b), nil
}

// TestSteadyStateAllocations checks that sealing and sending (FEC parity
// included) and receiving allocate nothing once the buffers exist, for a
// block cipher, AES-GCM and null. With loss, the only allocations are
// reedsolomon's own, inside ReconstructData (its index lists and, for an
// erasure pattern it has not cached yet, the matrix).
func TestSteadyStateAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, name := range []string{"aes", "aes-128-gcm", "null"} {
		b := block(t, name)
		from := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 2}
		rx := NewConn(nopPC{}, Config{Block: b, DataShards: 10, ParityShards: 3, Migrate: true})
		pipe := &pipePC{rx: rx, from: from, buf: make([]byte, bufSize), out: make([]byte, MaxDatagram)}
		tx := NewClientConn(pipe, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, Config{Block: b, DataShards: 10, ParityShards: 3})
		pkt := kcpPacket(1, 1300)
		bound := rx.Bind(from, binary.LittleEndian.Uint32(pkt))
		// testing.AllocsPerRun rounds down: one run is ten FEC groups.
		groups := func() {
			for range 100 {
				if _, err := tx.WriteTo(pkt, tx.Peer().Addr()); err != nil {
					t.Fatal(err)
				}
			}
		}
		groups()
		if a := testing.AllocsPerRun(10, groups); a != 0 {
			t.Errorf("%s: %.0f allocations per 130 datagrams sent and received", name, a)
		}
		if st := bound.st.Snapshot(); st.DatagramsIn == 0 || st.FECParityIn == 0 || st.FECShapeChanges != 0 {
			t.Fatalf("%s: the receiver did not see the stream: %+v", name, st)
		}
		pipe.dropEvery = 7
		before := bound.st.FECGroupsRecovered.Load()
		a := testing.AllocsPerRun(10, groups)
		rebuilt := float64(bound.st.FECGroupsRecovered.Load()-before) / 11 // one warm-up run
		if rebuilt == 0 || a/rebuilt > 16 {
			t.Errorf("%s: %.0f allocations per 10 groups with %.1f groups rebuilt", name, a, rebuilt)
		}
		t.Logf("%s: 1/7 loss: %.1f allocations per rebuilt group, all inside reedsolomon.ReconstructData", name, a/rebuilt)
	}
}
