package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
)

// shapeStep is a sender FEC shape held for a number of data datagrams.
type shapeStep struct{ k, m, n int }

// TestDecoderNeverRebuildsWrongData sends KCP-like datagrams through the
// encoder while its shape changes (as the adaptive controller changes it),
// loses, duplicates and reorders them, and feeds the rest to a decoder that
// starts from the fixed 10+3 guess: every packet the decoder rebuilds must be
// one that was sent. A rebuild with a wrong shape keeps the bytes that are
// equal in every shard (conv, command, length: Reed-Solomon rows here sum to
// one) and garbles the others, so it looks like a valid KCP segment with a
// wrong sn and wrong data, which KCP would deliver to the application.
func TestDecoderNeverRebuildsWrongData(t *testing.T) {
	plans := []struct {
		name    string
		steps   []shapeStep
		streams int // fresh encoder and decoder pairs
	}{
		// Many short streams: each decoder learns the shape once, from
		// the wrong guess of 10+3, which is where a shape inferred from
		// too few parity runs went wrong.
		{"2+1", []shapeStep{{2, 1, 150}}, 300},
		{"3+1", []shapeStep{{3, 1, 150}}, 300},
		{"5+2", []shapeStep{{5, 2, 200}}, 150},
		// Shapes whose group size has divisors: detection sees 2+10 or
		// 2+16 when parity runs are lost, and the first 2+4 shards of such
		// a group verify (the code's parity rows depend on k only), which
		// once let a wrong shape rebuild garbage in TestSoakLossyStreams.
		{"2+4", []shapeStep{{2, 4, 200}}, 300},
		{"3+3", []shapeStep{{3, 3, 200}}, 300},
		{"4+2", []shapeStep{{4, 2, 200}}, 300},
		// The adaptive sender switches FEC off and on (copies for a thin
		// flow), and a sender that pauses skips a group's parity.
		{"2+4 on and off", toggling(2, 4, 40), 100},
		{"3+3 on and off", toggling(3, 3, 40), 100},
		{"changes", []shapeStep{{0, 0, 300}, {2, 1, 1500}, {3, 1, 1500}, {2, 1, 1500}, {0, 0, 300}, {4, 2, 1500}, {5, 1, 1500}, {2, 2, 1500}, {10, 3, 1500}, {3, 2, 1500}}, 3},
		{"kcptun's 10+3", []shapeStep{{10, 3, 6000}}, 1},
	}
	for _, plan := range plans {
		for _, loss := range []float64{0.05, 0.10, 0.20} {
			t.Run(fmt.Sprintf("%s/loss %.0f%%", plan.name, 100*loss), func(t *testing.T) {
				rebuilt, wrong := 0, 0
				for i := range plan.streams {
					r, w := checkRebuilds(t, plan.steps, loss, uint64(i)<<8|uint64(loss*100))
					rebuilt, wrong = rebuilt+r, wrong+w
				}
				if wrong > 0 {
					t.Errorf("%d of %d rebuilt packets were never sent", wrong, rebuilt)
				}
				if rebuilt == 0 {
					t.Errorf("nothing rebuilt")
				}
				t.Logf("%d rebuilt", rebuilt)
			})
		}
	}
}

// checkRebuilds sends the plan through an encoder and a lossy, reordering,
// duplicating wire to a decoder, and returns how many packets the decoder
// rebuilt and how many of those were never sent.
func checkRebuilds(t *testing.T, plan []shapeStep, loss float64, seed uint64) (rebuilt, wrong int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	var pool bufPool
	var st Stats
	dec := newDecoder(10, 3, &pool, &st)
	var enc encoder
	sent := make(map[string]bool)

	type dgram struct {
		seq    uint32
		parity bool
		shard  []byte
	}
	var wire []dgram
	emit := func(d dgram) {
		if rng.Float64() < loss {
			return
		}
		wire = append(wire, d)
		if rng.Float64() < 0.02 {
			wire = append(wire, d)
		}
	}
	sn := uint32(0)
	nowMs := int64(0)
	for _, step := range plan {
		enc.setShape(step.k, step.m)
		for range step.n {
			// A PUSH segment: conv, cmd, frg, wnd, ts, una and len equal
			// in most datagrams, sn and data not.
			n := 200 + rng.IntN(2)*40
			p := make([]byte, fecHeaderSize+kcpOverhead+n)
			k := p[fecHeaderSize:]
			binary.LittleEndian.PutUint32(k, 0x12345678)
			k[4] = cmdPush
			binary.LittleEndian.PutUint16(k[6:], 1024)
			binary.LittleEndian.PutUint32(k[8:], 5000)
			binary.LittleEndian.PutUint32(k[12:], sn)
			binary.LittleEndian.PutUint32(k[20:], uint32(n))
			for i := kcpOverhead; i+8 <= len(k); i += 8 {
				binary.LittleEndian.PutUint64(k[i:], rng.Uint64())
			}
			sn++
			if !enc.on() {
				continue // no FEC header: nothing for the decoder
			}
			if rng.Float64() < 0.01 {
				nowMs += parityLatencyMs // a pause: this group's parity is skipped
			}
			nowMs++
			ready := enc.encodeData(p, nowMs)
			sent[string(p[fecShardStart:])] = true
			emit(dgram{seq: binary.LittleEndian.Uint32(p), shard: p[fecShardStart:]})
			if ready {
				for i := range enc.m {
					ps := enc.parityShard(i, 0)
					emit(dgram{seq: binary.LittleEndian.Uint32(ps), parity: true, shard: bytes.Clone(ps[fecShardStart:])})
				}
			}
		}
	}
	for i := 1; i < len(wire); i++ { // 2 % reordered by one place
		if rng.Float64() < 0.02 {
			wire[i-1], wire[i] = wire[i], wire[i-1]
		}
	}
	// Half the parity shards arrive up to 30 places late, as behind a
	// pacing queue that re-sent data overtakes: the shard before a parity
	// run then rarely arrives right before it, and detection measures
	// large multiples of the group size.
	keys := make([]float64, len(wire))
	for i, d := range wire {
		keys[i] = float64(i)
		if d.parity && rng.IntN(2) == 0 {
			keys[i] += float64(rng.IntN(30)) + 0.5
		}
	}
	order := make([]int, len(wire))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return keys[order[a]] < keys[order[b]] })
	late := make([]dgram, len(wire))
	for i, j := range order {
		late[i] = wire[j]
	}
	wire = late
	var out [][]byte
	for _, d := range wire {
		out = dec.feed(d.seq, d.parity, d.shard, out[:0])
		for _, r := range out {
			rebuilt++
			if !sent[string(r)] {
				wrong++
				if wrong == 1 {
					t.Errorf("rebuilt a packet that was never sent: %x... (%d bytes)", r[:min(len(r), 2+kcpOverhead)], len(r))
				}
			}
			pool.put(r)
		}
	}
	return rebuilt, wrong
}

// toggling returns a plan of the shape k+m switched on and off, steps times.
func toggling(k, m, steps int) []shapeStep {
	var plan []shapeStep
	for i := range steps {
		plan = append(plan, shapeStep{k, m, 10 + 7*i%23}, shapeStep{0, 0, 1 + 5*i%7})
	}
	return plan
}

// TestDecoderRefusesMultipleOfShape replays what corrupted a stream in
// TestSoakLossyStreams: a 2+4 sender, a decoder holding the shape 2+10
// (detection measures such multiples when parity runs are lost or arrive
// out of order). A whole sender group verifies as the first half of a 2+10
// group, since the codec's parity rows depend on k only; a later group of
// which only the second half's parity arrived was then rebuilt with the
// wrong rows. The decoder must rebuild nothing until the shape is proved,
// and once it learned 2+4 from the shards, rebuild what was lost.
func TestDecoderRefusesMultipleOfShape(t *testing.T) {
	var e encoder
	e.setShape(2, 4)
	e.on()
	var st Stats
	var pool bufPool
	d := newDecoder(2, 10, &pool, &st)
	type shard struct {
		seq    uint32
		parity bool
		b      []byte
	}
	group := func(g int) (all []shard) {
		for i := range 2 {
			p := append(make([]byte, fecHeaderSize), bytes.Repeat([]byte{byte(g), byte(i)}, 30)...)
			ready := e.encodeData(p, int64(g))
			all = append(all, shard{binary.LittleEndian.Uint32(p), false, p[fecShardStart:]})
			if ready {
				for j := range 4 {
					ps := e.parityShard(j, 0)
					all = append(all, shard{binary.LittleEndian.Uint32(ps), true, bytes.Clone(ps[fecShardStart:])})
				}
			}
		}
		return all
	}
	feed := func(s shard) [][]byte {
		var out [][]byte
		for _, r := range d.feed(s.seq, s.parity, s.b, nil) {
			out = append(out, bytes.Clone(r))
			pool.put(r)
		}
		return out
	}
	// Group 0 whole: positions 0-5 of the decoder's first 2+10 group.
	for _, s := range group(0) {
		if out := feed(s); len(out) > 0 {
			t.Fatalf("rebuilt %d packets from a whole group", len(out))
		}
	}
	// Group 1 lost but for one parity shard (no contradiction), groups 2
	// and 3 (the decoder's second 2+10 group) only as group 3's parity
	// rows 0 and 2: the shards that were rebuilt as group 2's data.
	feed(group(1)[4])
	group(2)
	g3 := group(3)
	for _, s := range []shard{g3[2], g3[4]} {
		if out := feed(s); len(out) > 0 {
			t.Fatalf("rebuilt %x from shards of the wrong shape", out[0])
		}
	}
	// Whole groups then teach the decoder 2+4, after which a group that
	// lost its data is rebuilt from two parity shards.
	for g := 4; g < 12; g++ {
		for _, s := range group(g) {
			if out := feed(s); len(out) > 0 {
				t.Fatalf("group %d: rebuilt %d packets from whole groups", g, len(out))
			}
		}
	}
	if d.k != 2 || d.m != 4 || !d.confirmed {
		t.Fatalf("decoder shape %d+%d confirmed %v after whole 2+4 groups, want 2+4 confirmed", d.k, d.m, d.confirmed)
	}
	g12 := group(12)
	var got [][]byte
	for _, s := range g12[2:4] {
		got = append(got, feed(s)...)
	}
	if len(got) != 2 || !bytes.Equal(got[0], g12[0].b) || !bytes.Equal(got[1], g12[1].b) {
		t.Fatalf("lost group rebuilt as %d packets, want its 2 data shards", len(got))
	}
}

// TestDecoderLossMeasureUnderReordering checks the loss measure on a path
// that reorders datagrams across far more groups than the decoder collects
// (a burst spread by jitter): it must still report the loss of the path,
// not the shards that missed their group. Counting per closed group, it
// once reported 60-67 % on a 10 % path, and the adaptive sender answered
// with two parity shards per data shard.
func TestDecoderLossMeasureUnderReordering(t *testing.T) {
	for _, shape := range [][2]int{{10, 3}, {2, 4}} {
		var e encoder
		e.setShape(shape[0], shape[1])
		e.on()
		var st Stats
		var pool bufPool
		d := newDecoder(10, 3, &pool, &st)
		rng := rand.New(rand.NewPCG(uint64(shape[0]), 3))
		type dgram struct {
			seq    uint32
			parity bool
			shard  []byte
		}
		var burst []dgram
		sent, dropped := 0, 0
		deliver := func() {
			rng.Shuffle(len(burst), func(i, j int) { burst[i], burst[j] = burst[j], burst[i] })
			for _, x := range burst {
				for _, r := range d.feed(x.seq, x.parity, x.shard, nil) {
					pool.put(r)
				}
			}
			burst = burst[:0]
		}
		for i := range 30000 {
			p := append(make([]byte, fecHeaderSize), kcpSegment(cmdPush, uint32(i), []byte("data"))...)
			ready := e.encodeData(p, int64(i))
			sent++
			if rng.Float64() < 0.1 {
				dropped++
			} else {
				burst = append(burst, dgram{binary.LittleEndian.Uint32(p), false, p[fecShardStart:]})
			}
			if ready {
				for j := range e.m {
					ps := e.parityShard(j, 0)
					if rng.Float64() >= 0.1 {
						burst = append(burst, dgram{binary.LittleEndian.Uint32(ps), true, bytes.Clone(ps[fecShardStart:])})
					}
				}
			}
			if len(burst) >= 150 { // bursts of 150 datagrams, each shuffled
				deliver()
			}
		}
		deliver()
		seen, missed := d.takeLoss()
		want := float64(dropped) / float64(sent)
		got := float64(missed) / float64(max(seen+missed, 1))
		t.Logf("%d+%d: path loss %.3f, measured %.3f over %d data shards; %d rebuilt", shape[0], shape[1], want, got, seen+missed, st.FECRecovered.Load())
		if seen+missed < sent/2 || got < want-0.02 || got > want+0.02 {
			t.Errorf("%d+%d: loss measured %.3f (%d of %d), the path lost %.3f", shape[0], shape[1], got, missed, seen+missed, want)
		}
	}
}
