package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/wire"
)

// captureDir holds the golden captures of the kcptun binaries, carried in
// the repository (see its README).
const captureDir = "../../testdata/wire"

func loadCaptures(t testing.TB) []*wire.Capture {
	t.Helper()
	caps, err := wire.LoadCaptures(captureDir)
	if err != nil {
		t.Fatalf("golden captures: %v", err)
	}
	return caps
}

func captureCipher(t testing.TB, g *wire.Capture) *cipher {
	t.Helper()
	b, err := crypt.New(g.Crypt, crypt.DeriveKey(g.Key))
	if err != nil {
		t.Fatal(err)
	}
	return newCipher(b)
}

// TestGoldenOpenAndReseal opens every captured datagram, checks what is
// inside, and seals the plaintext again with the captured nonce: the bytes
// must come back identical, for every cipher.
func TestGoldenOpenAndReseal(t *testing.T) {
	for _, g := range loadCaptures(t) {
		t.Run(g.File, func(t *testing.T) {
			c := captureCipher(t, g)
			for i, d := range g.Datagrams {
				buf := append(make([]byte, 0, len(d)+64), d...)
				payload, ok := c.open(buf)
				if !ok {
					t.Fatalf("datagram %d does not open", i)
				}
				kcpBytes := payload
				if g.FEC() {
					typ := binary.LittleEndian.Uint16(payload[fecTypeOffset:])
					if typ == typeParity {
						continue
					}
					if typ != typeData {
						t.Fatalf("datagram %d: FEC type %#x", i, typ)
					}
					if sz := binary.LittleEndian.Uint16(payload[fecShardStart:]); int(sz) != len(payload)-fecShardStart {
						t.Fatalf("datagram %d: size field %d for %d bytes", i, sz, len(payload)-fecShardStart)
					}
					kcpBytes = payload[fecHeaderSize:]
				}
				if info := scanSegments(kcpBytes); !info.wellFormed {
					t.Fatalf("datagram %d: KCP segments do not parse", i)
				}
				// Re-seal: for the CFB ciphers the nonce is enciphered, so
				// take it from the deciphered buffer.
				plain := append(make([]byte, 0, len(d)+64), buf[:c.head]...)
				plain = append(plain, payload...)
				if c.block != nil && c.aead == nil {
					plain = append(plain[:0], buf[:len(d)]...)
				}
				if got := c.sealNonce(plain); !bytes.Equal(got, d) {
					t.Fatalf("datagram %d: re-sealed bytes differ", i)
				}
			}
		})
	}
}

// TestGoldenEncoder feeds the KCP bytes the client binary sent, with their
// capture times, through our FEC encoder: every data and parity shard it
// produces must equal the binary's, in order, parity skipping included.
func TestGoldenEncoder(t *testing.T) {
	withParity := 0
	for _, g := range loadCaptures(t) {
		if !g.FEC() {
			continue
		}
		t.Run(g.File, func(t *testing.T) {
			c := captureCipher(t, g)
			var want [][]byte // c2s plaintexts after the crypto header
			var times []int64
			for i, d := range g.Datagrams {
				if g.Packets[i].Dir != "c2s" {
					continue
				}
				buf := append([]byte(nil), d...)
				payload, ok := c.open(buf)
				if !ok {
					t.Fatalf("datagram %d does not open", i)
				}
				want = append(want, payload)
				times = append(times, int64(g.Packets[i].TMs))
			}
			var e encoder
			e.setShape(g.DataShard, g.ParityShard)
			if !e.on() {
				t.Fatal("encoder off")
			}
			var got [][]byte
			const base = 1 << 40
			for i, w := range want {
				if binary.LittleEndian.Uint16(w[fecTypeOffset:]) != typeData {
					continue
				}
				p := append(make([]byte, fecHeaderSize), w[fecHeaderSize:]...)
				parity := e.encodeData(p, base+times[i])
				got = append(got, p)
				if parity {
					withParity++
					for j := range e.m {
						got = append(got, append([]byte(nil), e.parityShard(j, 0)...))
					}
				}
			}
			if len(got) != len(want) {
				t.Fatalf("encoder produced %d shards, the binary sent %d", len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("shard %d differs:\n got %x\nwant %x", i, got[i], want[i])
				}
			}
		})
	}
	if withParity == 0 {
		t.Fatal("no capture produced parity; the test checked nothing about it")
	}
}

// TestGoldenRecovery drops each data shard of a group that has parity in
// turn and checks that the decoder rebuilds the binary's KCP bytes. The
// capture holds one group; the decoder rebuilds nothing before it measured
// the sender's group size (the distance between two parity runs), so the
// group goes in three times, as consecutive groups, the last one less the
// dropped shard.
func TestGoldenRecovery(t *testing.T) {
	checked := 0
	for _, g := range loadCaptures(t) {
		if !g.FEC() {
			continue
		}
		c := captureCipher(t, g)
		var shards [][]byte
		for i, d := range g.Datagrams {
			if g.Packets[i].Dir != "c2s" {
				continue
			}
			payload, ok := c.open(append([]byte(nil), d...))
			if !ok {
				t.Fatalf("%s: datagram %d does not open", g.File, i)
			}
			shards = append(shards, payload)
		}
		n := g.DataShard + g.ParityShard
		if len(shards) < n || binary.LittleEndian.Uint16(shards[n-1][fecTypeOffset:]) != typeParity {
			continue
		}
		for drop := range g.DataShard {
			var st Stats
			var pool bufPool
			d := newDecoder(g.DataShard, g.ParityShard, &pool, &st)
			var out [][]byte
			for round := range 3 {
				for i, s := range shards[:n] {
					if round == 2 && i == drop {
						continue
					}
					seq := binary.LittleEndian.Uint32(s) + uint32(round*n)
					parity := binary.LittleEndian.Uint16(s[fecTypeOffset:]) == typeParity
					out = d.feed(seq, parity, s[fecShardStart:], out)
				}
				if round < 2 && len(out) != 0 {
					t.Fatalf("%s: %d packets rebuilt from a whole group", g.File, len(out))
				}
			}
			if len(out) != 1 || !bytes.Equal(out[0], shards[drop][fecShardStart:]) {
				t.Fatalf("%s: dropping shard %d: recovered %d packets, want the dropped one", g.File, drop, len(out))
			}
			if st.FECRecovered.Load() != 1 || st.FECGroupsRecovered.Load() != 1 {
				t.Fatalf("%s: counters %+v", g.File, st.Snapshot())
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no capture has a parity group")
	}
}

// TestDecoderDetectsShape sends groups of a shape the decoder does not
// expect, with some parity skipped, and checks it learns the shape and
// recovers a lost shard afterwards.
func TestDecoderDetectsShape(t *testing.T) {
	for _, shape := range [][2]int{{10, 3}, {3, 2}, {1, 1}, {20, 5}, {7, 1}} {
		k, m := shape[0], shape[1]
		var e encoder
		e.setShape(k, m)
		e.on()
		var st Stats
		var pool bufPool
		d := newDecoder(5, 5, &pool, &st)
		now := int64(1 << 40)
		recovered := 0
		for grp := range 8 {
			if grp == 3 {
				now += 1000 // a pause: this group's parity is skipped
			}
			lose := grp >= 5
			for i := range k {
				p := append(make([]byte, fecHeaderSize), bytes.Repeat([]byte{byte(grp), byte(i)}, 20+i)...)
				parity := e.encodeData(p, now)
				now++
				if !(lose && i == 0) {
					if out := d.feed(binary.LittleEndian.Uint32(p), false, p[fecShardStart:], nil); len(out) > 0 {
						t.Fatalf("shape %d/%d: a data shard recovered something", k, m)
					}
				}
				if parity {
					for j := range m {
						ps := e.parityShard(j, 0)
						out := d.feed(binary.LittleEndian.Uint32(ps), true, ps[fecShardStart:], nil)
						// Before the shape is known a group's data may be
						// "recovered" again from parity: harmless, KCP
						// drops duplicates. Count the lost ones only.
						for _, r := range out {
							if r[2] < 5 {
								continue
							}
							want := bytes.Repeat([]byte{byte(grp), 0}, 20)
							if !bytes.Equal(r[2:], want) {
								t.Fatalf("shape %d/%d: recovered %x", k, m, r)
							}
							recovered++
						}
					}
				}
			}
		}
		if recovered != 3 {
			t.Fatalf("shape %d/%d: recovered %d shards, want 3 (groups 5-7); stats %+v", k, m, recovered, st.Snapshot())
		}
	}
}

// TestEncoderShapeChange checks that a new shape starts at a group boundary
// aligned to its k+m.
func TestEncoderShapeChange(t *testing.T) {
	var e encoder
	e.setShape(10, 3)
	e.on()
	p := make([]byte, fecHeaderSize+30)
	for range 4 {
		e.encodeData(p, 0)
	}
	e.setShape(4, 2)
	if !e.on() || e.k != 10 {
		t.Fatal("shape changed inside a group")
	}
	for range 6 {
		if e.encodeData(p, 0) {
			for j := range e.m {
				e.parityShard(j, 0)
			}
		}
	}
	// Group 0 (seqids 0-12) is complete, parity sent.
	if !e.on() || e.k != 4 || e.next%6 != 0 || e.next < 13 {
		t.Fatalf("after the group: k=%d next=%d, want k=4 and next a multiple of 6 >= 13", e.k, e.next)
	}
	e.setShape(0, 0)
	for range 4 {
		e.encodeData(p, 0)
	}
	if e.on() {
		t.Fatal("FEC still on after SetFEC(0, 0) at a boundary")
	}
}

// kcpSegment returns one KCP segment of command cmd carrying data.
func kcpSegment(cmd byte, sn uint32, data []byte) []byte {
	b := make([]byte, kcpOverhead, kcpOverhead+len(data))
	binary.LittleEndian.PutUint32(b, 0x01020304)
	b[4] = cmd
	binary.LittleEndian.PutUint32(b[12:], sn)
	binary.LittleEndian.PutUint32(b[20:], uint32(len(data)))
	return append(b, data...)
}

// TestOneDataShardGroups checks the shapes the adaptive controller picks for
// thin flows (one data shard and m parity): every group gets its parity,
// however long since the previous one (a group of one is always timely),
// each parity shard is a copy of the data shard, a decoder expecting
// another shape learns the shape and rebuilds a lost data shard from any
// one parity shard, and its loss measure counts what was lost before
// recovery.
func TestOneDataShardGroups(t *testing.T) {
	for _, m := range []int{1, 2, 3, 4} {
		var e encoder
		e.setShape(1, m)
		e.on()
		var st Stats
		var pool bufPool
		d := newDecoder(10, 3, &pool, &st)
		now := int64(1 << 40)
		recovered, lost := 0, 0
		// Losses in groups 20-39, then enough groups for all of them to
		// leave the loss measure's window.
		const groups = 40 + lossWindow
		for grp := range groups {
			now += 1000 // longer than parityLatencyMs between messages
			p := append(make([]byte, fecHeaderSize), kcpSegment(cmdPush, uint32(grp), bytes.Repeat([]byte{byte(grp)}, 10+grp))...)
			if !e.encodeData(p, now) {
				t.Fatalf("1+%d: group %d without parity", m, grp)
			}
			drop := grp >= 20 && grp < 40 && grp%3 == 0 // lose the data shard
			if drop {
				lost++
			} else {
				for _, r := range d.feed(binary.LittleEndian.Uint32(p), false, p[fecShardStart:], nil) {
					t.Fatalf("1+%d: a data shard recovered %x", m, r)
				}
			}
			for j := range m {
				ps := e.parityShard(j, 0)
				if !bytes.Equal(ps[fecShardStart:], p[fecShardStart:]) {
					t.Fatalf("1+%d: parity shard %d is not a copy of the data shard", m, j)
				}
				if drop && j != m-1 {
					continue // on a lost group, only the last parity shard arrives
				}
				out := d.feed(binary.LittleEndian.Uint32(ps), true, ps[fecShardStart:], nil)
				if !drop {
					// Before the shape is known a copy may come up
					// again: harmless, KCP drops duplicates.
					if len(out) != 0 && grp >= 4 {
						t.Fatalf("1+%d: group %d: parity rebuilt a shard that arrived", m, grp)
					}
					continue
				}
				if len(out) != 1 || !bytes.Equal(out[0], p[fecShardStart:]) {
					t.Fatalf("1+%d: group %d: recovered %d shards, want the lost one (decoder %d+%d, %+v)", m, grp, len(out), d.k, d.m, st.Snapshot())
				}
				recovered++
			}
		}
		if recovered != lost || d.k != 1 || d.m != m {
			t.Fatalf("1+%d: recovered %d of %d, decoder shape %d+%d", m, recovered, lost, d.k, d.m)
		}
		// The loss measure: data shards of the proved shape that left
		// its window (the last lossWindow seqids are still in it).
		seen, missed := d.takeLoss()
		if missed != lost || seen+missed < groups-lossWindow || seen+missed > groups {
			t.Errorf("1+%d: loss measure %d missed of %d, want %d missed", m, missed, seen+missed, lost)
		}
		if s2, m2 := d.takeLoss(); s2 != 0 || m2 != 0 {
			t.Errorf("1+%d: takeLoss did not reset", m)
		}
	}
}

// TestDecoderLossMeasureSkipsRedetection changes the sender's shape and
// checks that the groups around the change count nothing lost: a decoder
// re-detecting a shape must not report loss that is not there.
func TestDecoderLossMeasureSkipsRedetection(t *testing.T) {
	var e encoder
	var st Stats
	var pool bufPool
	d := newDecoder(10, 3, &pool, &st)
	now := int64(1 << 40)
	seen, missed := 0, 0
	for _, shape := range [][2]int{{1, 3}, {1, 2}, {4, 2}, {1, 4}, {10, 3}} {
		e.setShape(shape[0], shape[1])
		for i := range 700 {
			if !e.on() {
				t.Fatal("encoder off")
			}
			p := append(make([]byte, fecHeaderSize), kcpSegment(cmdPush, uint32(i), []byte("data"))...)
			parity := e.encodeData(p, now)
			now += 5
			d.feed(binary.LittleEndian.Uint32(p), false, p[fecShardStart:], nil)
			if parity {
				for j := range e.m {
					ps := e.parityShard(j, 0)
					d.feed(binary.LittleEndian.Uint32(ps), true, ps[fecShardStart:], nil)
				}
			}
		}
		s, m := d.takeLoss()
		seen, missed = seen+s, missed+m
	}
	if missed != 0 || seen < 500 {
		t.Fatalf("no loss, %d shape changes: the measure says %d missed of %d", st.FECShapeChanges.Load(), missed, seen+missed)
	}
}

// TestBareDatagrams checks which datagrams leave without an FEC header:
// those without data, and only under a shape of one data shard.
func TestBareDatagrams(t *testing.T) {
	ack := kcpSegment(cmdAck, 7, nil)
	push := kcpSegment(cmdPush, 8, []byte("x"))
	ackPush := append(append([]byte(nil), ack...), push...)
	for _, tc := range []struct {
		k, m int
		b    []byte
		want bool
	}{
		{1, 3, ack, true},
		{1, 3, append(append([]byte(nil), ack...), ack...), true},
		{1, 3, push, false},
		{1, 3, ackPush, false},
		{2, 1, ack, false},
		{10, 3, ack, false},
	} {
		var e encoder
		e.setShape(tc.k, tc.m)
		e.on()
		if got := e.bare(tc.b); got != tc.want {
			t.Errorf("%d+%d, %d bytes: bare %v, want %v", tc.k, tc.m, len(tc.b), got, tc.want)
		}
	}
}

// TestInteropOneDataShard runs our layer sending groups of one data shard
// (and bare ACK datagrams) against kcp-go's decoder, which expects 10+3 and
// must detect the shape by itself, and kcp-go sending 1+2 to ours, with
// loss both ways: the bytes arrive and each side rebuilt lost packets from
// the other's parity.
func TestInteropOneDataShard(t *testing.T) {
	for _, m := range []int{1, 3} {
		for _, oursIsClient := range []bool{true, false} {
			t.Run(fmt.Sprintf("1+%d/ourclient=%v", m, oursIsClient), func(t *testing.T) {
				ours := side{ours: true, cipher: "aes", ds: 1, ps: m, drop: 7}
				theirs := side{cipher: "aes", ds: 10, ps: 3, drop: 7}
				if m == 3 {
					theirs.ds, theirs.ps = 1, 2
				}
				cs, ss := ours, theirs
				if !oursIsClient {
					cs, ss = theirs, ours
				}
				before := kcp.DefaultSnmp.Copy().FECRecovered
				e := makePair(t, cs, ss)
				exchange(t, e, 64<<10)
				p := e.cliPeer
				if p == nil {
					p = e.srvPeer
				}
				st := p.Stats().Snapshot()
				// kcp-go's counter also counts what our decoder hands up
				// (as rebuilt) and, with one data shard, the copies of
				// shards that arrived: it must exceed ours.
				theirsRecovered := kcp.DefaultSnmp.Copy().FECRecovered - before - st.FECRecovered
				t.Logf("ours recovered %d; kcp-go's counter grew %d beyond", st.FECRecovered, theirsRecovered)
				if st.FECGroupsOut == 0 || st.FECParityOut != uint64(m)*st.FECGroupsOut {
					t.Fatalf("%d groups with %d parity sent, want 1+%d groups", st.FECGroupsOut, st.FECParityOut, m)
				}
				if theirs.ds > 0 && st.FECRecovered == 0 {
					t.Errorf("nothing recovered from kcp-go's %d+%d parity", theirs.ds, theirs.ps)
				}
				if theirsRecovered == 0 {
					t.Errorf("kcp-go recovered nothing from our 1+%d parity", m)
				}
			})
		}
	}
}

// TestDecoderMadeOnFirstFEC checks that a peer gets its FEC decoder only
// with the first FEC-framed datagram it sends: a peer that sends bare
// datagrams holds none.
func TestDecoderMadeOnFirstFEC(t *testing.T) {
	b := block(t, "aes")
	from := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 2}
	rx := NewConn(nopPC{}, Config{Block: b, DataShards: 10, ParityShards: 3, Migrate: true})
	pkt := kcpPacket(1, 100)
	bound := rx.Bind(from, binary.LittleEndian.Uint32(pkt))
	send := func(data, parity int) {
		pipe := &pipePC{rx: rx, from: from, buf: make([]byte, bufSize), out: make([]byte, MaxDatagram)}
		tx := NewClientConn(pipe, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, Config{Block: b, DataShards: data, ParityShards: parity})
		for range 3 {
			if _, err := tx.WriteTo(pkt, tx.Peer().Addr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, 0)
	if n := bound.st.DatagramsIn.Load(); n != 3 {
		t.Fatalf("the peer received %d datagrams, want 3", n)
	}
	if bound.dec != nil {
		t.Fatal("a peer that sent bare datagrams has an FEC decoder")
	}
	send(10, 3)
	if bound.dec == nil || bound.st.DatagramsIn.Load() != 6 {
		t.Fatalf("after 3 FEC datagrams (%d in all): decoder %v", bound.st.DatagramsIn.Load(), bound.dec != nil)
	}
}
