package packet

import (
	"encoding/binary"

	"github.com/klauspost/reedsolomon"
)

// FEC header layout, as kcp-go writes it: seqid u32, type u16, and on a data
// shard a u16 size (2 + the KCP bytes) that starts the Reed-Solomon shard.
const (
	fecHeaderSize = 8 // seqid, type, size
	fecTypeOffset = 4
	fecShardStart = 6 // Reed-Solomon shards run from the size field on
	typeData      = 0xf1
	typeParity    = 0xf2
	maxShards     = 256
	// parityLatencyMs: kcp-go sends a group's parity only when its last two
	// data shards left within this many milliseconds of each other.
	parityLatencyMs = 500
	// groupSlots is how many FEC groups a decoder keeps open at once.
	groupSlots = 4
)

// paws is the seqid at which a shape of n shards wraps to 0.
func paws(n int) uint32 { return 0xffffffff / uint32(n) * uint32(n) }

// encoder writes FEC headers and produces parity shards. Its shape changes
// only between groups, and a new shape starts at a seqid that is a multiple
// of its k+m, which receivers (kcp-go's too) need to re-detect it.
type encoder struct {
	k, m   int
	next   uint32 // next seqid
	wrap   uint32
	count  int   // data shards of the current group so far
	maxLen int   // longest shard of the group
	lastMs int64 // time of the previous data shard
	// data and parity hold buffers of pool only while a group is under
	// way or its parity is being sent, so that an idle peer holds at most
	// the shards of its unfinished group.
	data   [][]byte
	parity [][]byte // each: head room, 6-byte header, shard, tail room
	all    [][]byte // scratch for the codec: data then parity shards
	parLen int      // shard length of the parity just encoded
	rs     reedsolomon.Encoder
	pool   *bufPool // where shard buffers come from; nil: own
	own    bufPool

	pending      bool
	pendK, pendM int
}

// setShape schedules a new shape; k or m zero turns FEC off. It takes effect
// at the next group boundary.
func (e *encoder) setShape(k, m int) {
	e.pending, e.pendK, e.pendM = true, k, m
}

// on reports whether the next datagram gets an FEC header, applying a
// pending shape if the current group is complete.
func (e *encoder) on() bool {
	if e.pending && e.count == 0 {
		e.apply()
	}
	return e.k > 0
}

// bare reports whether the KCP datagram b leaves without an FEC header
// although FEC is on: with groups of one data shard, whose parity shards
// are copies of it, a datagram without data (ACKs, window probes and
// updates) is not worth its copies, since losing it delays nothing (the
// next datagram carries the same cumulative una). Receivers, kcp-go's
// included, take bare KCP datagrams between FEC-framed ones.
func (e *encoder) bare(b []byte) bool { return e.k == 1 && !scanSegments(b).push }

func (e *encoder) apply() {
	e.pending = false
	k, m := e.pendK, e.pendM
	if k <= 0 || m <= 0 || k+m > maxShards {
		e.k, e.m = 0, 0
		return
	}
	if k == e.k && m == e.m {
		return
	}
	rs, err := reedsolomon.New(k, m, rsOptions()...)
	if err != nil {
		e.k, e.m = 0, 0
		return
	}
	n := uint32(k + m)
	e.k, e.m, e.rs = k, m, rs
	e.wrap = paws(k + m)
	e.next = (e.next + n - 1) / n * n % e.wrap
	e.releaseParity()
	e.data, e.parity, e.all = nil, nil, nil
}

// bufs returns the pool the shard buffers come from.
func (e *encoder) bufs() *bufPool {
	if e.pool != nil {
		return e.pool
	}
	return &e.own
}

// releaseData returns the data shards' buffers to the pool.
func (e *encoder) releaseData() {
	for i, d := range e.data {
		if d != nil {
			e.bufs().put(d)
			e.data[i] = nil
		}
	}
}

// releaseParity returns the parity shards' buffers to the pool; the
// shards parityShard returned are no longer valid.
func (e *encoder) releaseParity() {
	for i, d := range e.parity {
		if d != nil {
			e.bufs().put(d)
			e.parity[i] = nil
		}
	}
}

// encodeData fills the FEC header of p (p[0:8] reserved, then the KCP bytes)
// and keeps the shard. It reports whether the group is complete and its
// parity shards are ready (parityShard), which happens when the group's last
// two data shards were sent within parityLatencyMs, as kcp-go does, and
// always for a group of one data shard.
func (e *encoder) encodeData(p []byte, nowMs int64) bool {
	binary.LittleEndian.PutUint32(p, e.next)
	binary.LittleEndian.PutUint16(p[fecTypeOffset:], typeData)
	binary.LittleEndian.PutUint16(p[fecShardStart:], uint16(len(p)-fecShardStart))
	e.next = (e.next + 1) % e.wrap
	if e.data == nil {
		e.data = make([][]byte, e.k)
	}
	if e.data[e.count] == nil {
		e.data[e.count] = e.bufs().get()
	}
	shard := p[fecShardStart:]
	e.data[e.count] = append(e.data[e.count][:0], shard...)
	e.maxLen = max(e.maxLen, len(shard))
	e.count++
	ready := false
	if e.count == e.k {
		// A group of one data shard is always timely: its parity leaves
		// with it. (kcp-go compares with the previous group's shard.)
		if e.k == 1 || nowMs-e.lastMs < parityLatencyMs {
			ready = e.encodeParity()
		}
		if !ready {
			e.next = (e.next + uint32(e.m)) % e.wrap
		}
		e.releaseData()
		e.count, e.maxLen = 0, 0
	}
	e.lastMs = nowMs
	return ready
}

func (e *encoder) encodeParity() bool {
	if e.parity == nil {
		e.parity = make([][]byte, e.m)
		e.all = make([][]byte, e.k+e.m)
	}
	for i, b := range e.parity {
		if b == nil {
			e.parity[i] = e.bufs().get()[:bufSize]
		}
	}
	for i, d := range e.data {
		n := len(d)
		d = d[:e.maxLen]
		clear(d[n:])
		e.all[i] = d
	}
	for i := range e.parity {
		// The shard sits after head room for the crypto and FEC headers,
		// filled in by parityShard.
		e.all[e.k+i] = e.parity[i][parityRoom : parityRoom+e.maxLen]
	}
	if err := e.rs.Encode(e.all); err != nil {
		return false
	}
	e.parLen = e.maxLen
	return true
}

// parityRoom is the head room before a parity shard in its buffer: the
// largest crypto header plus the 6-byte FEC header.
const parityRoom = cryptHeaderSize + fecShardStart

// parityShard returns parity shard i of the group just completed, in a
// buffer whose first head bytes are left for the crypto header, followed by
// the FEC header (filled in here, consuming the next seqid) and the shard.
// Call it for i = 0 .. m-1 right after encodeData reported true, then
// releaseParity once they are sent; cap of the result leaves room for an
// AEAD tag.
func (e *encoder) parityShard(i, head int) []byte {
	start := parityRoom - fecShardStart
	b := e.parity[i][start-head : parityRoom+e.parLen]
	binary.LittleEndian.PutUint32(b[head:], e.next)
	binary.LittleEndian.PutUint16(b[head+fecTypeOffset:], typeParity)
	e.next = (e.next + 1) % e.wrap
	return b
}

// rsOptions configure every Reed-Solomon codec. Shards are at most a
// datagram long, where the AVX2 code path gains nothing measurable but
// allocates a scratch slice per call (it puts a []byte into a sync.Pool).
func rsOptions() []reedsolomon.Option {
	return []reedsolomon.Option{reedsolomon.WithAVX2(false), reedsolomon.WithGFNI(false), reedsolomon.WithAVXGFNI(false)}
}
