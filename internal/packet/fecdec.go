package packet

import (
	"encoding/binary"

	"github.com/klauspost/reedsolomon"
)

// decoder collects FEC shards by group and rebuilds lost data shards with
// Reed-Solomon. It learns the sender's shape from the shards themselves: it
// starts from a guess (the local setting, as kcp-go does), and when a shard's
// type contradicts the shape it re-detects it from where parity runs start.
// While it has no shape it recovers nothing; data shards still reach KCP,
// which the caller does before feeding the decoder.
//
// A shape, guessed or detected, rebuilds nothing until it is proved (see
// proved and confirm). A wrong shape rebuilds a shard with the wrong code,
// and such a shard keeps every byte that is equal in the group's shards (the
// KCP conversation, command and length, as Reed-Solomon's rows here sum to
// one) and garbles the rest: a valid-looking KCP segment with a wrong
// sequence number and wrong data, which KCP would hand to the application.
// Detection gets the shape wrong for a while whenever lost parity hides a
// parity run (the distances it measures are then a multiple of the group
// size), and the guess is wrong whenever the peer sends another shape.
//
// A group that verifies does not prove the shape by itself: the codec's
// parity rows depend on the data shard count only, so the first k+m shards
// of a group of the wrong shape k+m' (m' > m) verify as well as a group of
// the right one. The proof therefore also needs detection to have measured
// the group size as a multiple of the sender's, and shards seen at
// positions that no smaller group size could have typed as they arrived.
//
// A decoder is used by one goroutine at a time.
type decoder struct {
	k, m, n   int  // current shape; n == 0: unknown
	confirmed bool // the shape is proved: it rebuilds (confirm)
	// measured says detection's parity-run distances had n as their
	// greatest common divisor while this shape held: the sender's group
	// size divides n.
	measured bool
	// seen marks the positions of shards that arrived while the shape was
	// not yet confirmed (see proved).
	seen    [maxShards / 64]uint64
	wrap    uint32
	rs      reedsolomon.Encoder
	groups  [groupSlots]group
	scratch [][]byte
	pool    *bufPool
	st      *Stats

	// shape detection
	recent   [recentShards]shardSeen
	runStart uint32 // seqid where a parity run started
	runGCD   uint32 // gcd of the distances of later run starts to it
	haveRun  bool

	// The sender's loss before recovery, for the adaptive controller (see
	// takeLoss), over the seqids of a proved shape only, so that a shape
	// being re-detected counts nothing: a data shard counts once
	// lossWindow later seqids arrived, as seen or as missed. The window,
	// not the groups being collected, decides, so that a path reordering
	// across more groups than are collected is not taken for loss.
	lossBits             [lossWindow / 64]uint64 // seqids seen in [lossTop-lossWindow, lossTop)
	lossBase             uint32                  // the first seqid counted
	lossTop              uint32                  // one past the highest seqid seen
	lossOn               bool                    // lossBase and lossTop are set
	lossSeen, lossMissed int
}

// lossWindow is how many seqids a data shard may arrive late and still count
// as seen, a multiple of 64.
const lossWindow = 1024

// takeLoss returns the data shards that arrived and that were missing
// (before recovery) since the last call.
func (d *decoder) takeLoss() (seen, missed int) {
	if d == nil { // the peer has sent no FEC datagram
		return 0, 0
	}
	seen, missed = d.lossSeen, d.lossMissed
	d.lossSeen, d.lossMissed = 0, 0
	return seen, missed
}

// group is one FEC group being collected.
type group struct {
	id     uint32
	used   bool
	done   bool // recovered, complete, or given up: ignore further shards
	got    [maxShards / 64]uint64
	shards [][]byte // by position in the group; nil if not received
	count  int      // shards received
	data   int      // data shards received (not recovered)
}

func newDecoder(k, m int, pool *bufPool, st *Stats) *decoder {
	d := &decoder{pool: pool, st: st}
	d.setShape(k, m)
	return d
}

// setShape switches to the shape (k, m), dropping open groups; k or m zero
// means unknown.
func (d *decoder) setShape(k, m int) {
	for i := range d.groups {
		d.finish(&d.groups[i])
	}
	d.k, d.m, d.n, d.confirmed, d.measured, d.lossOn = 0, 0, 0, false, false, false
	d.seen = [maxShards / 64]uint64{}
	if k <= 0 || m <= 0 || k+m > maxShards {
		return
	}
	rs, err := reedsolomon.New(k, m, rsOptions()...)
	if err != nil {
		return
	}
	d.k, d.m, d.n, d.rs = k, m, k+m, rs
	d.wrap = paws(k + m)
	d.scratch = make([][]byte, d.n)
	for i := range d.groups {
		d.groups[i].shards = make([][]byte, d.n)
	}
}

// feed takes one shard: its seqid, whether it is parity, and its bytes from
// the size field on. It appends every data shard it recovers to out, from
// its size field on (size, then the KCP bytes), as pool buffers the caller
// must return, and returns out.
func (d *decoder) feed(seq uint32, parity bool, shard []byte, out [][]byte) [][]byte {
	if parity {
		d.st.FECParityIn.Add(1)
		totals.parityIn.Add(1)
	}
	d.detect(seq, parity)
	if d.n == 0 || seq >= d.wrap || len(shard) > bufSize {
		return out
	}
	if d.confirmed {
		d.account(seq)
	}
	gid := seq / uint32(d.n)
	g := &d.groups[gid%groupSlots]
	if g.used && g.id != gid {
		if int32(gid-g.id) < 0 && int32(gid-g.id) > -1<<20 {
			return out // from a group already closed
		}
		d.finish(g)
	}
	if !g.used {
		g.used, g.id = true, gid
	}
	pos := int(seq % uint32(d.n))
	if g.done || g.got[pos/64]&(1<<(pos%64)) != 0 {
		return out
	}
	g.got[pos/64] |= 1 << (pos % 64)
	if !d.confirmed {
		d.seen[pos/64] |= 1 << (pos % 64)
	}
	g.shards[pos] = append(d.pool.get(), shard...)
	g.count++
	if !parity {
		g.data++
	}
	switch {
	case !d.confirmed:
		if g.count > d.k && d.proved() {
			out = d.confirm(g, out)
		}
	case g.data == d.k:
		totals.fullGroups.Add(1)
		d.release(g)
		g.done = true
	case g.count >= d.k:
		out = d.recover(g, out)
		d.release(g)
		g.done = true
	}
	return out
}

// proved reports whether the shape can only be the sender's, given that no
// shard contradicted it: the sender's group size divides n (measured), and
// for every proper divisor q of n, a data and a parity position congruent
// modulo q were seen. Had the sender's groups been q shards, those two
// shards would have been of one type, and one of them would have
// contradicted the shape (detect). The data shard count is then right too:
// detection takes it from where a parity run starts, modulo the group size.
func (d *decoder) proved() bool {
	if !d.measured {
		return false
	}
	for q := 2; q <= d.n/2; q++ {
		if d.n%q != 0 {
			continue
		}
		var dataAt [maxShards / 2]bool // residues modulo q of data positions seen
		for p := range d.k {
			if d.seen[p/64]&(1<<(p%64)) != 0 {
				dataAt[p%q] = true
			}
		}
		ruled := false
		for p := d.k; p < d.n && !ruled; p++ {
			ruled = d.seen[p/64]&(1<<(p%64)) != 0 && dataAt[p%q]
		}
		if !ruled {
			return false
		}
	}
	return true
}

// confirm checks a group that holds one shard more than the shape needs:
// rebuilt from the others, every shard must agree with those received. If
// they do, the shape is confirmed and the group's lost data shards are
// rebuilt; if not, the shape is wrong and dropped (detection finds another).
func (d *decoder) confirm(g *group, out [][]byte) [][]byte {
	d.fillScratch(g, d.n)
	ok := d.rs.Reconstruct(d.scratch) == nil
	if ok {
		ok, _ = d.rs.Verify(d.scratch)
	}
	out, recovered := d.takeRebuilt(g, out, ok)
	if !ok {
		d.st.FECShapeChanges.Add(1)
		d.setShape(0, 0) // releases g with the other groups
		d.haveRun = false
		return out
	}
	d.confirmed = true
	if recovered > 0 {
		d.st.FECRecovered.Add(uint64(recovered))
		totals.recovered.Add(uint64(recovered))
		d.st.FECGroupsRecovered.Add(1)
	} else if g.data == d.k {
		totals.fullGroups.Add(1)
	}
	d.release(g)
	g.done = true
	return out
}

// recover rebuilds the missing data shards of g.
func (d *decoder) recover(g *group, out [][]byte) [][]byte {
	d.fillScratch(g, d.k)
	if err := d.rs.ReconstructData(d.scratch); err != nil {
		d.st.FECUnrecoverable.Add(1)
		totals.unrecoverable.Add(1)
		out, _ = d.takeRebuilt(g, out, false)
		return out
	}
	out, recovered := d.takeRebuilt(g, out, true)
	d.st.FECRecovered.Add(uint64(recovered))
	totals.recovered.Add(uint64(recovered))
	d.st.FECGroupsRecovered.Add(1)
	return out
}

// fillScratch lays g's shards out in d.scratch for the codec, padded with
// zeros to the longest, with an empty pool buffer (with room: the codec
// fills it) for each missing shard below upto and nil for the others.
func (d *decoder) fillScratch(g *group, upto int) {
	maxLen := 0
	for _, s := range g.shards {
		maxLen = max(maxLen, len(s))
	}
	for i, s := range g.shards {
		switch {
		case s != nil:
			n := len(s)
			s = s[:maxLen]
			clear(s[n:])
			d.scratch[i] = s
		case i < upto:
			d.scratch[i] = d.pool.get()
		default:
			d.scratch[i] = nil
		}
	}
}

// takeRebuilt hands on, when keep, the rebuilt data shards of g (in
// d.scratch) whose size field is sound, appending them to out, and returns
// every other rebuilt buffer to the pool; it reports how many it handed on.
func (d *decoder) takeRebuilt(g *group, out [][]byte, keep bool) ([][]byte, int) {
	recovered := 0
	for i, r := range d.scratch[:len(g.shards)] {
		if g.shards[i] != nil || r == nil {
			continue
		}
		if keep && i < d.k && len(r) >= 2 {
			if sz := int(binary.LittleEndian.Uint16(r)); sz > 2 && sz <= len(r) {
				out = append(out, r[:sz])
				recovered++
				continue
			}
		}
		d.pool.put(r)
	}
	return out, recovered
}

// release returns g's shard buffers to the pool.
func (d *decoder) release(g *group) {
	for i, s := range g.shards {
		if s != nil {
			d.pool.put(s)
			g.shards[i] = nil
		}
	}
}

// account marks seq as arrived in the loss window and counts the data
// shards that leave the window as it moves up to seq.
func (d *decoder) account(seq uint32) {
	ahead := int32(seq - d.lossTop)
	switch {
	case !d.lossOn || ahead >= lossWindow || ahead < -1<<20:
		// The start, or a jump (a burst loss longer than the window, a
		// new run of the sender's seqids): count what the window holds
		// and start over.
		if d.lossOn {
			d.slide(d.lossTop + lossWindow)
		}
		d.lossOn, d.lossBase, d.lossTop = true, seq, seq
		d.lossBits = [lossWindow / 64]uint64{}
	case ahead < 0:
		if int32(seq-d.lossBase) < 0 || -ahead > lossWindow {
			return // counted already
		}
	}
	if int32(seq-d.lossTop) >= 0 {
		d.slide(seq + 1)
	}
	i := seq % lossWindow
	d.lossBits[i/64] |= 1 << (i % 64)
}

// slide moves the top of the loss window to top, counting each data shard
// that leaves it.
func (d *decoder) slide(top uint32) {
	seen, missed := 0, 0
	for s := d.lossTop; s != top; s++ {
		i := s % lossWindow
		old := s - lossWindow
		if int32(old-d.lossBase) >= 0 && int(old%uint32(d.n)) < d.k {
			if d.lossBits[i/64]&(1<<(i%64)) != 0 {
				seen++
			} else {
				missed++
			}
		}
		d.lossBits[i/64] &^= 1 << (i % 64)
	}
	d.lossTop = top
	d.lossSeen += seen
	d.lossMissed += missed
	d.st.FECDataExpected.Add(uint64(seen + missed))
	d.st.FECDataLost.Add(uint64(missed))
}

// finish closes g, counting it if it lost data and could not be rebuilt.
func (d *decoder) finish(g *group) {
	if !g.used {
		return
	}
	if d.k > 0 && !g.done && g.data < d.k {
		d.st.FECUnrecoverable.Add(1)
		totals.unrecoverable.Add(1)
	}
	d.release(g)
	g.used, g.done, g.count, g.data = false, false, 0, 0
	g.got = [maxShards / 64]uint64{}
}

// detect checks seq against the current shape and re-detects the shape when
// a shard contradicts it. Senders start every group at a multiple of k+m and
// send its k data shards before its m parity shards, so the seqids where a
// parity run starts (a parity shard whose seqid follows a data shard's) are
// all k modulo k+m: the greatest common divisor of their distances is k+m
// (or a multiple, until enough runs were seen; skipped parity only removes
// runs), and any one of them modulo k+m is k. A run start is found whichever
// of its two shards arrives second: parity leaves behind the pacing queue,
// which data sent at once overtakes.
func (d *decoder) detect(seq uint32, parity bool) {
	if d.n > 0 && (int(seq%uint32(d.n)) < d.k) == parity {
		d.st.FECShapeChanges.Add(1)
		d.setShape(0, 0)
		d.haveRun = false
	}
	start, found := seq, false
	if parity {
		r := d.recent[(seq-1)%recentShards]
		found = r.ok && r.seq == seq-1 && !r.parity
	} else {
		r := d.recent[(seq+1)%recentShards]
		start, found = seq+1, r.ok && r.seq == seq+1 && r.parity
	}
	d.recent[seq%recentShards] = shardSeen{seq: seq, parity: parity, ok: true}
	if found {
		d.runStarts(start)
	}
}

// runStarts takes a parity run that starts at seqid start. The distances
// may be a multiple of the group size for a while: a detected shape only
// replaces one that is unknown or not confirmed, and it rebuilds nothing
// until proved.
func (d *decoder) runStarts(start uint32) {
	dist := start - d.runStart
	if int32(dist) < 0 {
		dist = -dist
	}
	switch {
	case dist == 0 && d.haveRun:
		return // a duplicate
	case !d.haveRun || dist > 1<<20:
		d.runStart, d.runGCD, d.haveRun = start, 0, true
		return
	}
	g := gcd(d.runGCD, dist)
	if g != d.runGCD {
		d.runGCD = g
		k := start % g
		if g <= maxShards && k > 0 && !d.confirmed && (int(g) != d.n || int(k) != d.k) {
			d.setShape(int(k), int(g-k))
		}
	}
	if int(g) == d.n && int(start%g) == d.k {
		d.measured = true
	}
	if g < 2 {
		d.haveRun = false
	}
}

// recentShards is how many of the latest shards, by seqid, detection
// remembers: a group's parity may arrive that many shards after its data.
const recentShards = 512

// shardSeen is a shard detection remembers.
type shardSeen struct {
	seq    uint32
	parity bool
	ok     bool
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
