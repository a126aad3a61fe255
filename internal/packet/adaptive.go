package packet

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/adapt"
)

// adaptMaxWindow bounds the windows the controller may choose, in packets:
// half the pacing queue, so that what KCP's send window lets out (first
// transmissions, re-sends and FEC parity) always fits in the queue and
// nothing is dropped locally.
const adaptMaxWindow = maxQueue / 2

// adaptMaxParity bounds the parity shards of an adaptive FEC group, so
// that an overestimated loss cannot multiply the datagrams sent.
const adaptMaxParity = 4

// adaptRingMax bounds the per-sequence-number records of a peer.
const adaptRingMax = 2 * adaptMaxWindow

// AdaptiveConfig configures a peer's adaptive controller (EnableAdaptive).
type AdaptiveConfig struct {
	// MTU is KCP's MTU: the size of a full KCP datagram, the unit of the
	// windows.
	MTU int
	// Overhead is what sealing adds to a KCP datagram (crypto header and
	// FEC header), so that the pacing rate counts what leaves.
	Overhead int
	// RateLimit caps the pacing rate, in bytes per second on the wire
	// (0: no cap).
	RateLimit int64
	// SendWindow and ReceiveWindow pin KCP's windows when positive. An
	// unpinned send window follows the controller's inflight limit
	// (adapt.Controller.PacedSendWindow, applied in adaptIn).
	SendWindow, ReceiveWindow int
	// FECPinned pins the FEC shape at DataShards+ParityShards (0, 0: off).
	FECPinned                bool
	DataShards, ParityShards int
	// MinReceiveWindow is the smallest receive window the controller
	// advertises, in packets (0: the controller's default).
	MinReceiveWindow int
	// SetWindows applies KCP's send and receive windows (kcp-go's
	// SetWindowSize). The packet layer calls it from its reader, holding
	// no lock of its own that kcp-go's goroutines may wait on.
	SetWindows func(snd, rcv int)
	// Seed varies the controller's probing phase between sessions.
	Seed uint64
	// AckDelay is the longest time the peer may hold an ACK (its KCP
	// flush interval); see adapt.Config.
	AckDelay time.Duration
	// SetAckNow, when set, switches KCP between sending its ACKs at once
	// (true) and on its next flush (kcp-go's SetACKNoDelay). The packet
	// layer calls it from its reader, as SetWindows, so that on a short
	// path this end acknowledges the peer's data every ackGap.
	SetAckNow func(now bool)
}

// ackEvery is the shortest time this end lets the peer's data wait for an
// ACK (see ackGap).
const ackEvery = 5 * time.Millisecond

// ackGap is how long this end lets the peer's data wait for an ACK when the
// peer sends steadily (SetAckNow), at now with a.mu held: an eighth of the minimum
// RTT, at least ackEvery; 0, KCP's own timing, until an RTT was measured,
// and on a path whose minimum RTT is twice the peer's assumed flush
// interval (cfg.AckDelay) or more that lost some of the peer's data in the
// last lossQuiet (its sns skipped some).
//
// KCP holds its ACKs until its next flush, every 30 ms in the default mode,
// or until a packet's worth (about 55) wait: at 10 Mbit/s that is the whole
// 30 ms, which the sender's windows must cover and which then sits in the
// bottleneck's queue. On a clean 10 Mbit/s, 40 ms path, messages beside a
// transfer waited 93-98 ms at p99, 77-81 in most runs with these ACKs; at
// 20 ms and 5 or 10 % loss, transfers moved 7-25 % more. On 100 and 200 ms
// paths with loss, where the hold is a small part of the RTT, ACKs that
// often made KCP re-send more (up to 20 % more bytes on the wire) for less
// goodput, hence KCP's timing on a long path that loses data. The RTT alone
// does not tell those paths apart: this end measures it from its own data,
// whose ACKs wait in the queue the peer's transfer builds, and a clean 40 ms
// path then looked longer than 60 ms. ACKs every 5 ms on a clean 200 ms
// path made the end of Startup overflow the queue worse; an eighth of the
// RTT did not. At 100 Mbit/s KCP's batch fills every 6 ms: data that came
// at half a batch or more within the gap is left to KCP (adaptIn).
//
// The RTT is pathRTT: this end's RTT samples less the queue the peer's
// datagram with the ACK crossed, as the one-way delay of its data shows
// (for a datagram of ACKs alone, of the data that came within
// crossedFresh before it). An upload's receiving end sends little (smux's
// window updates), and their ACKs cross the queue the transfer builds:
// samples taken while the transfer's start-up filled the bottleneck's
// queue read a clean 40 ms path as 61-70 ms, so the gap was 8-9 ms instead
// of 5, and each loss the start-up caused made the path look long and
// lossy (KCP's own 30 ms). The transfer's windows covered those ACK holds,
// and messages beside it waited 80 ms at p99 in four runs of six, against
// 62 in the others.
func (a *adaptive) ackGap(now time.Duration) time.Duration {
	rtt := a.pathRTT
	if rtt <= 0 || (rtt >= 2*a.cfg.AckDelay && a.holeSeen && now-a.holeAt < lossQuiet) {
		return 0
	}
	return max(ackEvery, rtt/8)
}

// crossedFresh is how long the queue the peer's latest datagram of data
// crossed stands for what a datagram of ACKs alone crossed.
const crossedFresh = 10 * time.Millisecond

// owdEpoch is how long a smallest one-way delay of the peer's data counts
// (noteOWD): this epoch and the one before.
const owdEpoch = 10 * time.Second

// noteOWD records owd, the one-way delay of a datagram of the peer's data
// that arrived at now (in milliseconds of our clock less the peer's KCP
// timestamp, so with the clocks' offset), and returns how much longer than
// the smallest of this epoch and the one before it was: the queue it
// crossed (and any wait in the peer's pacing queue), to the millisecond.
func (a *adaptive) noteOWD(now time.Duration, owd int32) time.Duration {
	if now-a.owdStart >= owdEpoch {
		a.owdPrev, a.owdPrevHave = a.owdCur, a.owdCurHave
		a.owdCurHave, a.owdStart = false, now
	}
	if !a.owdCurHave || owd-a.owdCur < 0 {
		a.owdCur, a.owdCurHave = owd, true
	}
	least := a.owdCur
	if a.owdPrevHave && a.owdPrev-least < 0 {
		least = a.owdPrev
	}
	return time.Duration(max(owd-least, 0)) * time.Millisecond
}

// lossQuiet is how long after the peer's data last skipped sns ackGap
// treats a long path as lossy.
const lossQuiet = time.Second

// adaptive drives one peer's adapt.Controller from the packet path. The
// controller is not safe for concurrent use: every call is made under mu,
// which is a leaf lock (nothing else is locked while it is held).
type adaptive struct {
	mu    sync.Mutex
	ctl   *adapt.Controller
	cfg   AdaptiveConfig
	start time.Time
	clock func() time.Duration // tests' clock; nil: time since start

	// wmu orders the calls of cfg.SetWindows; it is taken before mu, never
	// while mu is held.
	wmu sync.Mutex

	// margin is the controller's TimeoutMargin as of the last adaptIn,
	// for timeoutHint, which runs right after it without the lock.
	margin atomic.Int64

	// Per-sequence-number records of the PUSH segments sent, from base
	// (the peer's una as last seen) to next (1 + the highest sn sent).
	ring       []snRec
	base, next uint32
	have       bool
	inflight   int64 // bytes transmitted, neither acknowledged nor lost
	queued     int64 // bytes handed to the pacing queue, not yet left
	minRTT     time.Duration
	// pathRTT is the smallest RTT sample less the queue the peer's
	// datagram with its ACK crossed (see ackGap and noteOWD).
	pathRTT time.Duration
	// The smallest one-way delay of the peer's data in the current epoch
	// (from owdStart) and in the one before (noteOWD).
	owdCur, owdPrev         int32
	owdCurHave, owdPrevHave bool
	owdStart                time.Duration
	// The queue the peer's latest datagram of data crossed, and when it
	// came (noteOWD).
	crossed, crossedAt time.Duration

	// Outputs as last applied: the FEC encoder's shape, and the extra
	// bare copies of each datagram with data (fecShape).
	rate       uint64
	fecD, fecP int
	copies     int
	// The first FEC shape sent, which every later one repeats (fecShape).
	keptD, keptP   int
	sndWnd, rcvWnd int
	// The peer's data at this end: 1 + the highest sn that arrived, and
	// the una our own packets last carried (KCP's next expected sn).
	rcvTop, ourUna   uint32
	haveTop, haveUna bool
	// rcvEdge is the furthest the peer was told it may send: the largest
	// una plus advertised window our packets carried. KCP drops, without
	// an ACK, a segment at or beyond its next expected sn plus its
	// receive window; a window that shrank below the edge would drop
	// what the peer sent as told, again on every re-send while KCP's
	// timer backs off, and stall the session.
	rcvEdge uint32

	// The peer's recent PUSH datagrams, counted per copy (countCopy).
	rx copyCount

	// lastAckOut is when the last datagram with an ACK left (a.now());
	// ackNow is what SetAckNow was last given (KCP starts with false).
	lastAckOut time.Duration
	ackNow     bool
	// pushSinceAck counts the peer's PUSH segments that arrived since
	// then.
	pushSinceAck int
	// holeAt is when the peer's data last skipped sns (holeSeen: it did).
	holeAt   time.Duration
	holeSeen bool

	// The PUSH segments KCP re-sent that are not yet acknowledged, each
	// with its bytes in a buffer of pool (the Conn's), so that this end can
	// send one again when its re-send was lost as well (resendLost).
	again []againRec
	pool  *bufPool
	// ackedTx is when the latest transmission an ACK echoed left (µs since
	// start, as snRec.txUs); ackedAny: an ACK did.
	ackedTx  uint32
	ackedAny bool
	// scan is the next sn presumeLost looks at.
	scan uint32
	// ourWnd is the receive window our latest packet advertised.
	ourWnd uint16
	// resend holds, between adaptIn's locked part and its end, the
	// segments to send again (only the reader calls adaptIn).
	resend [][]byte
}

// againRec is a segment KCP re-sent, kept for resendLost.
type againRec struct {
	sn    uint32
	seg   []byte // the segment, header and data, as KCP last sent it
	times int    // how often this end sent it again
}

// againMax bounds the re-sent segments a peer keeps (each up to an MTU).
const againMax = 256

// againTimes bounds how often this end sends one segment again; after that
// it is left to KCP's timer.
const againTimes = 4

// snRec is what the controller needs to know of one sent sn.
type snRec struct {
	ts   uint32 // KCP timestamp of its latest transmission
	ts0  uint32 // KCP timestamp of its first transmission
	txUs uint32 // when that transmission left (µs since start)
	size uint16 // KCP bytes (header and data)
	st   uint8
}

const (
	recQueued = 1 << iota // handed to the pacing queue, not yet left
	recSent               // left; counted in inflight unless acked
	recAcked
	recResent // re-sent: a loss if the ACK that comes echoes the re-send
	recAppLim // left with nothing queued behind it: the sender was idle
	// recGone: left inflight unacknowledged, as a transmission sent a
	// while after it was acknowledged (presumeLost); KCP re-sends it soon.
	recGone
	recKept // its bytes are in a.again (keep)
)

// qmeta describes the KCP data of a queued datagram.
type qmeta struct {
	data   int32  // bytes of PUSH segments (header and data); 0: none
	sn     uint32 // first PUSH sn
	npush  uint16 // PUSH segments
	resend bool   // some PUSH segment was sent before
	// left says adaptOut already recorded the PUSH segments as sent: their
	// sns are not consecutive (re-sends among them), so that sn and npush
	// do not name them.
	left bool
	// dup marks a bare copy of a datagram with data (fecShape): it carries
	// no data for the controller, and is no backlog of new data.
	dup bool
}

// EnableAdaptive gives the peer an adaptive controller that sets its
// pacing rate, FEC shape and, through cfg.SetWindows, KCP's windows from
// what the packet path measures. Call it once, before the session sends
// data.
func (p *Peer) EnableAdaptive(cfg AdaptiveConfig) {
	a := &adaptive{cfg: cfg, start: time.Now(), pool: &p.c.pool}
	a.ctl = adapt.New(adapt.Config{
		MSS:              cfg.MTU,
		MaxWindow:        adaptMaxWindow,
		MinReceiveWindow: min(cfg.MinReceiveWindow, adaptMaxWindow),
		RateLimit:        a.kcpRate(cfg.RateLimit),
		MaxParityShards:  adaptMaxParity,
		Seed:             cfg.Seed,
		AckDelay:         cfg.AckDelay,
	})
	if cfg.SendWindow > 0 || cfg.ReceiveWindow > 0 {
		a.ctl.PinWindow(cfg.SendWindow, cfg.ReceiveWindow)
	}
	if cfg.FECPinned {
		a.ctl.PinFEC(cfg.DataShards, cfg.ParityShards)
	}
	a.fecD, a.fecP, a.copies = a.fecShape()
	a.sndWnd, a.rcvWnd = a.ctl.PacedSendWindow(cfg.MTU, 0, 0, 0), a.ctl.ReceiveWindow(cfg.MTU)
	a.rate = a.wireRate()
	a.margin.Store(int64(a.ctl.TimeoutMargin()))
	p.setShape(a.fecD, a.fecP, a.copies)
	p.ad.Store(a)
	p.SetRate(a.rate)
	if cfg.SetWindows != nil {
		cfg.SetWindows(a.sndWnd, a.rcvWnd)
	}
}

// Adaptive reports whether the peer has a controller, and its state.
func (p *Peer) Adaptive() (adapt.State, bool) {
	a := p.ad.Load()
	if a == nil {
		return adapt.State{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.ctl.State()
	st.SendWindow = a.sndWnd // the window applied, which follows inflight
	st.DataShards, st.ParityShards = a.fecD, a.fecP
	if a.copies > 0 {
		// A group of one data shard, sent as bare copies (fecShape).
		st.DataShards, st.ParityShards = 1, a.copies
	}
	return st, true
}

// fecShape returns the FEC shape to send with (a.mu held), and how many
// extra bare copies of each datagram with data to send instead of FEC.
//
// A shape of one data shard (a thin flow's: 1+m) is a group whose m parity
// shards are copies of its data shard, so the packet layer sends m bare
// copies of each datagram that carries data, without FEC framing, and
// keeps the FEC encoder off: the receiver's KCP drops the duplicate
// segments by their sn, and kcp-go's decoder sees no shape to follow.
//
// A real shape (two data shards or more) is the controller's choice while
// FEC is off or the first one, and after that the first shape again
// whenever FEC is on. kcp-go's decoder (v5.6.72, as in the kcptun
// binaries) re-detects a new shape from its last 258 shards sorted by
// seqid, where the old shape's come first, so it keeps decoding with the
// old shape for a while and rebuilds garbage that KCP accepts (a garbled sn
// and data under a valid header): with a new shape every few hundred
// milliseconds at 10 % loss, most 6 MB transfers to a kcp-go receiver
// arrived corrupted (none to this package's decoder, which verifies a shape
// before it rebuilds). Switching FEC off and on again at the same shape is
// safe, and so is the first shape, before which kcp-go has seen no other
// and rebuilds nothing until it found this one. Copies do not count as a
// shape, so a thin phase never fixes the session's FEC shape. A pinned
// shape is kept as it is, one data shard included.
func (a *adaptive) fecShape() (data, parity, copies int) {
	d, m := a.ctl.FEC()
	if d <= 0 || m <= 0 || a.cfg.FECPinned {
		return d, m, 0
	}
	if d == 1 {
		return 0, 0, m
	}
	if a.keptD == 0 {
		a.keptD, a.keptP = d, m
	}
	return a.keptD, a.keptP, 0
}

// kcpRate converts a wire rate to KCP bytes per second.
func (a *adaptive) kcpRate(wire int64) int64 {
	if wire <= 0 {
		return 0
	}
	return wire * int64(a.cfg.MTU) / int64(a.cfg.MTU+a.cfg.Overhead)
}

// wireRate is the controller's pacing rate in bytes on the wire (a.mu held
// or not yet shared), at least four full datagrams per minimum RTT: pacing
// smooths bursts, and a low-rate flow (a game's messages) whose estimate
// follows its own rate must not queue behind it.
func (a *adaptive) wireRate() uint64 {
	r := a.ctl.WirePacingRate()
	r += r * int64(a.cfg.Overhead) / int64(max(a.cfg.MTU, 1))
	rtt := a.minRTT
	if rtt <= 0 {
		rtt = 100 * time.Millisecond
	}
	floor := 4 * int64(a.cfg.MTU+a.cfg.Overhead) * int64(time.Second) / int64(max(rtt, time.Millisecond))
	if lim := a.cfg.RateLimit; lim > 0 {
		floor = min(floor, lim)
	}
	return uint64(max(r, floor, 1))
}

func (a *adaptive) now() time.Duration {
	if a.clock != nil {
		return a.clock()
	}
	return time.Since(a.start)
}

// rec returns the record of sn, growing the ring when needed; nil when sn
// is outside what can be tracked.
func (a *adaptive) rec(sn uint32) *snRec {
	off := sn - a.base
	if int32(off) < 0 {
		return nil
	}
	if int(off) >= len(a.ring) {
		if off >= adaptRingMax {
			return nil
		}
		n := max(len(a.ring), 64)
		for n <= int(off) {
			n *= 2
		}
		r := make([]snRec, n)
		for s := a.base; s != a.next; s++ {
			r[s&uint32(n-1)] = a.ring[s&uint32(len(a.ring)-1)]
		}
		a.ring = r
	}
	return &a.ring[sn&uint32(len(a.ring)-1)]
}

// adaptOut records the PUSH segments of an outgoing KCP packet (kcp-go's
// output, before sealing) and returns what its queue entry must carry.
// A re-sent sn leaves inflight at once (KCP declared it lost), but counts
// as a loss for the controller only once the ACK that comes echoes the
// timestamp of a re-send: an ACK of the first transmission shows that the
// re-send was spurious (a late ACK, or a packet the peer rebuilt with FEC).
// Called under p.smu.
func (p *Peer) adaptOut(b []byte) (qmeta, bool) {
	a := p.ad.Load()
	if a == nil {
		return qmeta{}, false
	}
	var m qmeta
	whole := b
	scattered, acked := false, false
	a.mu.Lock()
	if len(b) >= kcpOverhead {
		// kcp-go writes one una and one window into every segment of a
		// flush: the peer may send up to una plus that window.
		una := binary.LittleEndian.Uint32(b[16:])
		if edge := una + uint32(binary.LittleEndian.Uint16(b[6:])); !a.haveUna || int32(edge-a.rcvEdge) > 0 {
			a.rcvEdge = edge
		}
		a.ourUna, a.haveUna = una, true
		a.ourWnd = binary.LittleEndian.Uint16(b[6:])
	}
	for len(b) >= kcpOverhead {
		n := binary.LittleEndian.Uint32(b[20:])
		if uint64(n) > uint64(len(b)-kcpOverhead) {
			break
		}
		if b[4] == cmdAck {
			acked = true
		}
		if b[4] == cmdPush {
			ts := binary.LittleEndian.Uint32(b[8:])
			sn := binary.LittleEndian.Uint32(b[12:])
			size := kcpOverhead + int(n)
			if m.npush == 0 {
				m.sn = sn
			} else if sn != m.sn+uint32(m.npush) {
				scattered = true
			}
			m.npush++
			m.data += int32(size)
			if !a.have {
				a.base, a.next, a.have = sn, sn, true
			}
			if int32(sn-a.next) >= 0 {
				if r := a.rec(sn); r != nil {
					for s := a.next; s != sn; s++ { // a gap: never sent by us
						*a.rec(s) = snRec{st: recAcked}
					}
					*r = snRec{ts: ts, ts0: ts, size: uint16(min(size, 0xffff)), st: recQueued}
					a.queued += int64(r.size)
					a.next = sn + 1
				}
			} else if r := a.rec(sn); r != nil && r.st&recAcked == 0 {
				m.resend = true
				if r.st&(recSent|recGone) == recSent {
					a.inflight -= int64(r.size)
				}
				if r.st&recQueued == 0 {
					a.queued += int64(r.size)
				}
				r.st, r.ts = recQueued|recResent|r.st&recKept, ts
				a.keep(r, sn, b[:size])
			}
		}
		b = b[kcpOverhead+int(n):]
	}
	if scattered && m.resend {
		// A datagram with re-sends leaves at once (Peer.write): record
		// its segments as sent now, one by one.
		us := uint32(a.now() / time.Microsecond)
		for b := whole; len(b) >= kcpOverhead; {
			n := binary.LittleEndian.Uint32(b[20:])
			if uint64(n) > uint64(len(b)-kcpOverhead) {
				break
			}
			if b[4] == cmdPush {
				if r := a.rec(binary.LittleEndian.Uint32(b[12:])); r != nil && r.st&recQueued != 0 {
					a.left(r, us, true)
				}
			}
			b = b[kcpOverhead+int(n):]
		}
		m.left = true
	}
	if acked {
		a.lastAckOut, a.pushSinceAck = a.now(), 0
	}
	a.mu.Unlock()
	return m, true
}

// timeoutHint appends to b, a KCP packet from the peer on its way to
// kcp-go whose segments info describes, one more ACK segment that steers
// KCP's retransmission timer, and returns its length (0 when nothing is
// appended; room is what b may grow into). kcp-go takes one RTT sample per
// packet, from the timestamp of the packet's last ACK segment, and sets its
// timeout to the smoothed RTT plus the larger of its flush interval and four
// deviations. The appended segment repeats the last ACK's timestamp less the
// controller's TimeoutMargin, so that the sample, and with it the timeout, is
// that much longer; it acknowledges an sn below the packet's una, which
// kcp-go ignores, and repeats the packet's window and una, so nothing else in
// KCP changes. Only an adaptive peer's packets with ACKs get one.
func (p *Peer) timeoutHint(b, room []byte, info segInfo) int {
	a := p.ad.Load()
	if a == nil || !info.ack || len(room) < kcpOverhead || info.lastAck+kcpOverhead > len(b) {
		return 0
	}
	last := b[info.lastAck : info.lastAck+kcpOverhead]
	margin := time.Duration(a.margin.Load())
	h := room[:kcpOverhead]
	copy(h, last)
	ts := binary.LittleEndian.Uint32(last[8:])
	binary.LittleEndian.PutUint32(h[8:], ts-uint32(margin/time.Millisecond))
	una := binary.LittleEndian.Uint32(last[16:])
	binary.LittleEndian.PutUint32(h[12:], una-1)
	binary.LittleEndian.PutUint32(h[20:], 0)
	totals.hints.Add(1)
	return kcpOverhead
}

// left records that the queued transmission of r left at us (a.mu held).
func (a *adaptive) left(r *snRec, us uint32, backlog bool) {
	a.queued -= int64(r.size)
	r.txUs = us
	r.st = r.st&^(recQueued|recAppLim) | recSent
	if !backlog {
		r.st |= recAppLim
	}
	if r.st&recAcked == 0 {
		a.inflight += int64(r.size)
	}
}

// transmitted records that a datagram with KCP data left; backlog says more
// datagrams were queued behind it. With no backlog and room under the
// controller's inflight limit, the sender was idle: the datagram's delivery
// rate measures the application, not the path. (An empty queue while the
// inflight limit holds KCP's window shut is the path's pace.) Called by the
// pacing queue under its lock.
func (p *Peer) transmitted(m qmeta, backlog bool) {
	a := p.ad.Load()
	if a == nil {
		return
	}
	a.mu.Lock()
	now := a.now()
	us := uint32(now / time.Microsecond)
	if !backlog {
		// What is out (this datagram included) against the limit, and
		// what is queued against the queue's budget, less two datagrams
		// and a sixteenth: a window-limited sender never quite reaches
		// them, as KCP's window moves only by a sixteenth or more
		// (sendWindowMoved).
		//
		// KCP's send window, counted from the oldest unacknowledged sn,
		// holds the sender back the same way once it is the largest the
		// controller sets (a long fat path). A smaller window that holds
		// it back follows the estimate, which then lags (Startup on a
		// lossy path); and the peer's receive window says nothing of
		// the path.
		mtu := int64(a.cfg.MTU)
		limit, budget := a.ctl.InflightLimit(), a.ctl.QueueBudget()
		backlog = a.inflight+a.queued+2*mtu+limit/16 >= limit || a.queued+2*mtu+budget/16 >= budget
		if w := a.sndWnd; !backlog && a.have && w+w/16 >= adaptMaxWindow {
			backlog = int(a.next-a.base)+2+w/16 >= w
		}
	}
	for i := range uint32(m.npush) {
		if m.left {
			break // adaptOut recorded them
		}
		if r := a.rec(m.sn + i); r != nil && r.st&recQueued != 0 {
			a.left(r, us, backlog)
		}
	}
	a.ctl.OnSend(now, int(m.data), int(a.inflight))
	a.mu.Unlock()
}

// adaptIn feeds the controller from a KCP packet the peer sent: its ACKs
// (delivered bytes and an RTT sample measured from when the acknowledged
// transmission left), its una, the data it carries, and the FEC loss seen
// on the way in; then it applies the controller's outputs. Called by the
// reader.
func (p *Peer) adaptIn(b []byte) {
	a := p.ad.Load()
	if a == nil {
		return
	}
	a.mu.Lock()
	now := a.now()
	us, ms := uint32(now/time.Microsecond), uint32(now/time.Millisecond)
	delivered, received, lost := 0, 0, 0
	var rtt time.Duration
	// The one-way delay of the datagram's data: of its freshest segment
	// (a re-send's timestamp may be older than the datagram).
	var owd int32
	haveOWD := false
	// newerAck: an ACK echoed a transmission later than any before;
	// passed: una moved.
	appLimited, newerAck, passed := false, false, false
	for len(b) >= kcpOverhead {
		n := binary.LittleEndian.Uint32(b[20:])
		if uint64(n) > uint64(len(b)-kcpOverhead) {
			break
		}
		sn := binary.LittleEndian.Uint32(b[12:])
		switch b[4] {
		case cmdAck:
			if !a.have || int32(sn-a.base) < 0 || int32(sn-a.next) >= 0 {
				break
			}
			if r := a.rec(sn); r != nil && r.st&recAcked == 0 {
				delivered += int(r.size)
				// A repeated ACK (withRepeatedAcks) tells of the same
				// transmission as its first send, later: no RTT sample.
				ackTs, repeated := repeatedAckTs(binary.LittleEndian.Uint32(b[8:]), r.ts0)
				echoes := r.ts == ackTs
				if r.st&recResent != 0 && ackTs != r.ts0 {
					// The ACK is of a re-send, any of them: the first
					// transmission was lost. (Counting only an echo of
					// the latest re-send missed every packet KCP had
					// re-sent more than once by the time an ACK came.)
					lost++
				}
				if r.st&recQueued != 0 {
					a.queued -= int64(r.size) // acknowledged before it left again
				}
				if r.st&recSent != 0 {
					if r.st&recGone == 0 {
						a.inflight -= int64(r.size)
					}
					if echoes {
						if d := time.Duration(us-r.txUs) * time.Microsecond; !repeated && d > 0 && (rtt == 0 || d < rtt) {
							rtt, appLimited = d, r.st&recAppLim != 0
						}
						if !a.ackedAny || int32(r.txUs-a.ackedTx) > 0 {
							a.ackedTx, a.ackedAny, newerAck = r.txUs, true, true
						}
					}
				}
				r.st = r.st&^recQueued | recAcked
			}
		case cmdPush:
			a.pushSinceAck++
			ts := binary.LittleEndian.Uint32(b[8:])
			if d := int32(ms - ts); !haveOWD || d-owd < 0 {
				owd, haveOWD = d, true
			}
			if received == 0 {
				a.rx.add(sn, ts)
			}
			if a.haveTop && int32(sn-a.rcvTop) > 0 {
				a.holeAt, a.holeSeen = now, true // sns before sn are missing
			}
			if !a.haveTop || int32(sn+1-a.rcvTop) > 0 {
				a.rcvTop, a.haveTop = sn+1, true
			}
			received += kcpOverhead + int(n)
		}
		if una := binary.LittleEndian.Uint32(b[16:]); a.have && int32(una-a.base) > 0 && int32(una-a.next) <= 0 {
			passed = true
			hole := false
			for ; a.base != una; a.base++ {
				r := &a.ring[a.base&uint32(len(a.ring)-1)]
				if r.st&recAcked == 0 {
					delivered += int(r.size)
					if r.st&recSent != 0 {
						if r.st&recGone == 0 {
							a.inflight -= int64(r.size)
						}
						// A re-send that fills a hole is acknowledged by
						// una only (kcp-go sends no ACK for an sn below
						// its rcv_nxt): if una passes it a round trip
						// after the re-send left, the re-send is what
						// arrived, and the first transmission was lost;
						// sooner, the first transmission arrived. Only
						// one loss counts per advance of una: the others
						// it passes without an ACK are mostly packets
						// whose ACK was lost, which KCP re-sent on its
						// timer (random losses rarely come in a row).
						if !hole && r.st&recResent != 0 && time.Duration(us-r.txUs)*time.Microsecond >= a.minRTT*3/4 {
							lost++
							hole = true
						}
					}
					if r.st&recQueued != 0 {
						a.queued -= int64(r.size)
					}
				}
				*r = snRec{}
			}
		}
		b = b[kcpOverhead+int(n):]
	}
	a.inflight, a.queued = max(a.inflight, 0), max(a.queued, 0)
	if lost > 0 {
		a.ctl.OnLoss(now, lost)
	}
	if delivered > 0 || rtt > 0 {
		a.ctl.OnAck(now, delivered, rtt, appLimited)
		if rtt > 0 && (a.minRTT == 0 || rtt < a.minRTT) {
			a.minRTT = rtt
		}
	}
	var crossed time.Duration
	if haveOWD {
		crossed = a.noteOWD(now, owd)
		a.crossed, a.crossedAt = crossed, now
	} else if now-a.crossedAt <= crossedFresh {
		// A datagram of ACKs alone (the peer's ACKs skip its pacing
		// queue): the queue its data crossed just before.
		crossed = a.crossed
	}
	if rtt > 0 {
		// At least a millisecond, whatever a peer's clock did.
		if p := max(rtt-crossed, time.Millisecond); a.pathRTT == 0 || p < a.pathRTT {
			a.pathRTT = p
		}
	}
	if received > 0 {
		a.ctl.OnReceive(now, received)
		if span := int32(a.rcvTop - a.ourUna); a.haveUna && span > 0 {
			a.ctl.OnReceiveSpan(int(span))
		}
	}
	// The peer's data shards missing before recovery: the loss measure
	// that our own FEC does not hide, for a thin flow (WantsPeerLoss). The
	// decoder counts only groups of a shape that held for a while, so a
	// shape being re-detected counts nothing. (The reader, which feeds
	// the decoder, is the caller.) Bulk flows measure loss from our own
	// confirmed losses: gaps in the sns of the peer's data were tried as
	// well, and a thin reverse flow, such as smux's window updates, gave a
	// noisy estimate that chose 2+3 for a bulk sender.
	seen, missed := p.dec.takeLoss()
	// A peer that sends copies (a thin flow of this package) sends no FEC
	// framing: the copies it lost measure the path instead (countCopy).
	s2, m2 := a.rx.take()
	seen, missed = seen+s2, missed+m2
	if seen+missed > 0 && a.ctl.WantsPeerLoss() {
		a.ctl.OnFECStats(now, seen, missed)
	}
	rate := a.wireRate()
	setRate := rate != a.rate && (rate > a.rate+a.rate/32 || rate < a.rate-a.rate/32)
	if setRate {
		a.rate = rate
	}
	d, m, copies := a.fecShape()
	setFEC := d != a.fecD || m != a.fecP || copies != a.copies
	a.fecD, a.fecP, a.copies = d, m, copies
	// KCP's send window follows every ACK: the span it has out plus what
	// the controller's inflight limit still allows (PacedSendWindow). So
	// KCP sends new data only while what it sent, queued or in flight, is
	// within the limit (BBR's congestion window), and a lost segment,
	// which holds KCP's window until its re-send is acknowledged, never
	// stalls the pipe. A window that ignored what is in flight let KCP put
	// far more into the pacing queue and the path than the rate delivers:
	// KCP's RTT, measured from when it sent, grew with that queue to
	// seconds, and with it its retransmission timeout, which kcp-go
	// lengthens on each timeout of the same segment; a segment lost three
	// times then held the stream for longer than the idle timeout.
	span := 0
	if a.have {
		span = int(a.next - a.base)
	}
	snd := a.ctl.PacedSendWindow(a.cfg.MTU, span, a.inflight, a.queued)
	rcv := a.ctl.ReceiveWindow(a.cfg.MTU)
	if a.haveUna {
		// The window shrinks only as the data it covered arrives (our
		// latest una is at most KCP's next expected sn, so this keeps
		// the edge).
		rcv = max(rcv, int(int32(a.rcvEdge-a.ourUna)))
	}
	setWnd := sendWindowMoved(snd, a.sndWnd) || windowMoved(rcv, a.rcvWnd)
	if setWnd {
		a.sndWnd, a.rcvWnd = snd, rcv
	}
	a.margin.Store(int64(a.ctl.TimeoutMargin()))
	// The peer's data that arrives ackGap or more after our last ACK
	// is acknowledged at once, with whatever else waits; data that comes
	// sooner waits for the next such packet, KCP's batch or its flush.
	setAck := false
	if received > 0 && a.cfg.SetAckNow != nil {
		gap := a.ackGap(now)
		// KCP sends its ACKs by itself once a packet's worth wait: when
		// half of that came within the gap, the batch fills soon enough.
		batch := a.cfg.MTU / kcpOverhead / 2
		if want := gap > 0 && now-a.lastAckOut >= gap && a.pushSinceAck < batch; want != a.ackNow {
			a.ackNow, setAck = want, true
		}
	}
	ackNow := a.ackNow
	if newerAck {
		a.presumeLost()
	}
	if (newerAck || passed) && len(a.again) > 0 {
		a.resendLost()
	}
	una, wnd := a.ourUna, a.ourWnd
	a.mu.Unlock()

	for i, seg := range a.resend {
		p.sendAgain(seg, una, wnd)
		a.resend[i] = seg[:0]
	}
	a.resend = a.resend[:0]
	if setAck {
		a.cfg.SetAckNow(ackNow)
	}
	if setFEC {
		p.setShape(d, m, copies)
	}
	if setRate {
		p.pace.setRate(rate)
	}
	if setWnd && a.cfg.SetWindows != nil {
		a.wmu.Lock()
		// The latest windows: a concurrent call may have moved them.
		a.mu.Lock()
		snd, rcv = a.sndWnd, a.rcvWnd
		a.mu.Unlock()
		a.cfg.SetWindows(snd, rcv)
		a.wmu.Unlock()
	}
}

// reorderWindow is how long, in µs, a transmission may trail one that left
// after it before it counts as lost (RACK's reordering window, RFC 8985): a
// quarter of the minimum RTT, at least 1 ms (a.mu held).
func (a *adaptive) reorderWindow() int32 {
	return int32(max(a.minRTT/4, time.Millisecond) / time.Microsecond)
}

// presumeLost takes out of inflight the first transmissions still
// unacknowledged that left a quarter of the minimum RTT (at least 1 ms) or
// more before the newest transmission an ACK echoed (a.mu held): they were
// lost, or their ACK was (RACK's rule), and KCP re-sends them once two later
// ACKs came. Counted in flight until then, they held the inflight limit,
// which on a lossy path then had to cover them with a standing queue.
func (a *adaptive) presumeLost() {
	reo := a.reorderWindow()
	if int32(a.scan-a.base) < 0 {
		a.scan = a.base
	}
	for ; a.scan != a.next; a.scan++ {
		r := &a.ring[a.scan&uint32(len(a.ring)-1)]
		if r.st&recResent != 0 || r.st&recAcked != 0 {
			continue
		}
		if r.st&recSent == 0 || int32(a.ackedTx-r.txUs) <= reo {
			break
		}
		if r.st&recGone == 0 {
			r.st |= recGone
			a.inflight -= int64(r.size)
		}
	}
}

// keep stores seg, the segment sn (record r) that KCP re-sent, for
// resendLost, unless it is kept already: its data does not change, and
// sendAgain writes a fresh header (a.mu held).
func (a *adaptive) keep(r *snRec, sn uint32, seg []byte) {
	if r.st&recKept != 0 || len(a.again) >= againMax {
		return // kept, or left to KCP's timer
	}
	r.st |= recKept
	a.again = append(a.again, againRec{sn: sn, seg: append(a.pool.get(), seg...)})
}

// resendLost drops the re-sent segments acknowledged since, and finds those
// whose re-send was lost as well and puts copies of them in a.resend for
// adaptIn to send again (a.mu held, after an ACK or una moved).
//
// kcp-go fast-retransmits a segment once: if that re-send is lost too, the
// segment waits for KCP's retransmission timer, the smoothed RTT plus a
// margin and more on a lossy path, while the peer holds everything after it
// (at 5 % loss each way about one segment in 400, a stall or two a second at
// 10 Mbit/s). A re-send that left a quarter of the minimum RTT or more before
// a transmission the peer acknowledged would have arrived first had it not
// been lost (RACK's rule, RFC 8985), so this end sends it again at once,
// with a fresh timestamp; the peer's ACK of it then removes it from KCP's
// buffer before the timer fires. An ACK that was lost, while an earlier sn
// still holds the peer's una, may cost one needless copy.
func (a *adaptive) resendLost() {
	reo := a.reorderWindow()
	for i := 0; i < len(a.again); {
		e := &a.again[i]
		var r *snRec
		if int32(e.sn-a.base) >= 0 && int32(e.sn-a.next) < 0 {
			r = a.rec(e.sn)
		}
		if r == nil || r.st&recAcked != 0 {
			a.pool.put(e.seg)
			last := len(a.again) - 1
			a.again[i], a.again[last] = a.again[last], againRec{}
			a.again = a.again[:last]
			continue
		}
		if r.st&recSent != 0 && e.times < againTimes && int32(a.ackedTx-r.txUs) > reo {
			e.times++
			k := len(a.resend)
			if k < cap(a.resend) {
				a.resend = a.resend[:k+1]
				a.resend[k] = append(a.resend[k][:0], e.seg...)
			} else {
				a.resend = append(a.resend, append([]byte(nil), e.seg...))
			}
		}
		i++
	}
}

// sendAgain sends seg, a segment resendLost chose, with una and wnd as our
// latest packet carried them and a timestamp of KCP's clock now, so that the
// peer's ACK of it gives KCP a true RTT sample and counts towards the fast
// retransmit of the segments sent before it, as an ACK of any transmission
// this late does. Called by the reader, holding no lock.
func (p *Peer) sendAgain(seg []byte, una uint32, wnd uint16) {
	binary.LittleEndian.PutUint16(seg[6:], wnd)
	if p.c.offOK.Load() {
		binary.LittleEndian.PutUint32(seg[8:], uint32(p.c.nowMs()-p.c.offset.Load()))
	}
	binary.LittleEndian.PutUint32(seg[16:], una)
	if _, err := p.write(seg); err == nil {
		p.st.SegmentsResentAgain.Add(1)
	}
}

// sendWindowMoved reports whether the send window changed enough to apply
// (each call locks kcp-go's session): by a sixteenth, or two packets.
func sendWindowMoved(now, was int) bool {
	d := now - was
	if d < 0 {
		d = -d
	}
	return d > 0 && (d >= 2 || was < 16) && d >= was/16
}

// windowMoved reports whether a window changed enough to apply: by an
// eighth, or at all when small.
func windowMoved(now, was int) bool {
	d := now - was
	if d < 0 {
		d = -d
	}
	return d > 0 && (was < 64 || d >= was/8)
}

// copySlots is how many of the peer's recent PUSH datagrams copyCount
// tells apart (by their first sn): more than a thin flow has between a
// datagram's first copy and its last.
const copySlots = 16

// copyBatch is how many datagrams a copy count sums before it reports.
const copyBatch = 32

// copyCount measures the loss of the peer's packets from the copies of
// its datagrams with data (a thin flow's, see fecShape): each datagram
// that arrived, counted once it is old, arrived c times, where c, the
// copies sent, is the most that at least two datagrams of a batch arrived;
// the copies short of c were lost. A datagram whose copies were all lost
// is not seen (a loss of p^c, small). A batch measures only if at least a
// quarter of its datagrams arrived more than once: a peer that sends no
// copies measures nothing, even on a path that duplicates datagrams (where
// the most any datagram arrived, 2, once made a bulk flow's batches report
// half their datagrams lost). A KCP re-send has a new timestamp, so it
// counts apart from the datagram it repeats.
type copyCount struct {
	slot       [copySlots]copyRec
	dgrams     int                   // datagrams in the batch so far
	times      [copyMaxTimes + 1]int // of those, how many arrived i times (the last: or more)
	seen, lost int                   // what batches reported, until take
}

// copyMaxTimes is the most arrivals of one datagram copyCount tells apart.
const copyMaxTimes = 7

// copyRec is the number of times a datagram (its first sn and timestamp)
// arrived.
type copyRec struct {
	sn, ts uint32
	n      uint16
}

// add counts a datagram with data whose first PUSH segment has sn and ts.
func (c *copyCount) add(sn, ts uint32) {
	r := &c.slot[sn%copySlots]
	if r.n > 0 && r.sn == sn && r.ts == ts {
		r.n = min(r.n+1, 0xff)
		return
	}
	if r.n > 0 {
		c.close(int(r.n))
	}
	*r = copyRec{sn: sn, ts: ts, n: 1}
}

// close counts a datagram that arrived n times into the batch.
func (c *copyCount) close(n int) {
	c.dgrams++
	c.times[min(n, copyMaxTimes)]++
	if c.dgrams < copyBatch {
		return
	}
	copies := 0
	for i := copyMaxTimes; i >= 2 && copies == 0; i-- {
		if c.times[i] >= 2 {
			copies = i
		}
	}
	if copies >= 2 && 4*(c.dgrams-c.times[1]) >= c.dgrams {
		got := 0
		for i, k := range c.times {
			got += k * min(i, copies)
		}
		c.seen += got
		c.lost += copies*c.dgrams - got
	}
	c.dgrams, c.times = 0, [copyMaxTimes + 1]int{}
}

// take returns the copies seen and lost since the last call.
func (c *copyCount) take() (seen, lost int) {
	seen, lost = c.seen, c.lost
	c.seen, c.lost = 0, 0
	return seen, lost
}
