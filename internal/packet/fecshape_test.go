package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
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
			ready := enc.encodeData(p, 0)
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
