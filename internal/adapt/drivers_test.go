package adapt

import (
	"math"
	"time"
)

// rng is a small deterministic generator (xorshift64*), so that the tests
// do not depend on math/rand's sequence.
type rng uint64

func (r *rng) float() float64 {
	x := uint64(*r)
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	*r = rng(x)
	return float64((x*0x2545F4914F6CDD1D)>>11) / (1 << 53)
}

// openLoop feeds a controller an open-loop flow: packets of pkt bytes sent
// at pps per second whatever the controller says, each lost with
// probability loss(t) or acknowledged rtt(t) later, and, when incoming is
// set, the same loss seen on the peer's FEC-framed packets at the same
// rate. It models what the controller measures on a path whose behaviour
// the test chooses, without timing. With follow set, the flow slows down to
// the controller's pacing rate. It models FEC recovery (see fec).
type openLoop struct {
	c        *Controller
	pps      float64
	pkt      int
	rtt      func(t time.Duration) time.Duration
	loss     func(t time.Duration) float64
	incoming bool
	follow   bool // send at the controller's pacing rate when below pps
	// appLimited marks every RTT sample as of a packet sent with nothing
	// queued behind it: a flow at its own rate, not one that fills the
	// link (see fecState.linkBound).
	appLimited bool
	r          rng

	t        time.Duration // next send
	acks     []pending     // FIFO from head
	head     int
	group    []int // indexes in acks of the current FEC group's data packets
	lastAck  time.Duration
	inflight int
	inSeen   int
	inLost   int
	lastFEC  time.Duration
}

// fec models the recovery of the controller's FEC shape: once a group's
// data packets are sent, its parity packets are lost at the same rate, and
// if no more than the parity count of the group is lost, its lost data
// packets are recovered (acknowledged instead of reported lost).
func (o *openLoop) fec(now time.Duration) {
	d, p := o.c.FEC()
	if d == 0 {
		o.group = o.group[:0]
		return
	}
	o.group = append(o.group, len(o.acks)-1)
	if len(o.group) < d {
		return
	}
	lost := 0
	for _, i := range o.group {
		if o.acks[i].lost {
			lost++
		}
	}
	for range p {
		if o.r.float() < o.loss(now) {
			lost++
		}
	}
	if lost <= p {
		for _, i := range o.group {
			if i >= o.head {
				o.acks[i].lost = false
			}
		}
	}
	o.group = o.group[:0]
}

type pending struct {
	at   time.Duration
	sent time.Duration
	lost bool
}

func newOpenLoop(c *Controller, pps float64, rtt time.Duration, loss float64, seed uint64) *openLoop {
	return &openLoop{
		c: c, pps: pps, pkt: DefaultMSS, r: rng(seed | 1),
		rtt:  func(time.Duration) time.Duration { return rtt },
		loss: func(time.Duration) float64 { return loss },
	}
}

// run feeds events until time end.
func (o *openLoop) run(end time.Duration) {
	gap := time.Duration(float64(time.Second) / o.pps)
	for {
		next := o.t
		if o.head < len(o.acks) && o.acks[o.head].at <= next {
			next = o.acks[o.head].at
		}
		if next >= end {
			return
		}
		if o.head < len(o.acks) && o.acks[o.head].at == next {
			a := o.acks[o.head]
			o.head++
			o.inflight -= o.pkt
			if a.lost {
				o.c.OnLoss(a.at, 1)
			} else {
				o.c.OnAck(a.at, o.pkt, a.at-a.sent, o.appLimited)
			}
			continue
		}
		now := o.t
		o.t += gap
		if o.follow {
			o.t = now + max(gap, time.Duration(float64(o.pkt)/float64(o.c.PacingRate())*float64(time.Second)))
		}
		o.inflight += o.pkt
		o.c.OnSend(now, o.pkt, o.inflight)
		lost := o.r.float() < o.loss(now)
		at := max(now+o.rtt(now), o.lastAck)
		o.lastAck = at
		o.acks = append(o.acks, pending{at: at, sent: now, lost: lost})
		o.fec(now)
		if o.incoming {
			if o.r.float() < o.loss(now) {
				o.inLost++
			} else {
				o.inSeen++
			}
			if now-o.lastFEC >= 100*time.Millisecond {
				o.c.OnFECStats(now, o.inSeen, o.inLost)
				o.inSeen, o.inLost, o.lastFEC = 0, 0, now
			}
		}
	}
}

// link is a discrete-event model of a path with one bottleneck: packets
// pass a random loss, then a drop-tail queue of queue bytes drained at rate
// bytes per second, then a one-way delay; acknowledgements come back after
// the same delay without loss. A sender with unlimited data paces at the
// controller's rate, within KCP's window rule (new data only while the
// distance from the oldest unacknowledged sequence number is below the
// send window) and below the inflight limit, retransmits a packet once
// one sent 5 ms after it is acknowledged or on a timeout, and feeds every
// event to the controller. With FEC on, it sends the parity the shape calls for
// and recovers a group's lost packets when no more than its parity count
// were lost.
type link struct {
	*bottleneck
	c   *Controller
	pkt int

	t           time.Duration
	nextSend    time.Duration
	recs        []rec
	scan        int
	acks        []int // indexes of recs, in arrival order
	ackAt       []time.Duration
	ackHead     int
	acked       []bool
	una         int
	nextSeq     int
	rtx         []int
	inflight    int
	lastAck     time.Duration
	lastArrival time.Duration // when the latest packet through reaches the sender as an ACK

	grp, grpDropped []int // the current FEC group's data records, and those lost
	grpLost         int   // packets of the group lost, parity included
	grpD, grpP      int   // the group's shape

	delivered   int64
	deliveredAt []int64 // delivered bytes at each whole second

	// The peer's ACK policy (withPeerFlush): with flush zero it
	// acknowledges every packet at once; otherwise it holds the ACKs of
	// the packets that reached it until its next flush, on a timer every
	// flush, or as soon as batch of them wait (batch zero: timer only),
	// as kcp-go does.
	flush    time.Duration
	batch    int
	pending  []peerRec     // packets whose ACKs the peer holds
	nextTick time.Duration // the peer's next timer flush, while pending
	// lostEvery and lostRun, when above zero, lose lostRun timer flushes
	// of the peer in a row out of every lostEvery: their ACKs come with
	// the next flush that is not lost (KCP's una covers them).
	lostEvery, lostRun int
	ticks              int
	// margin makes the sender stop two packets and a sixteenth short of
	// InflightLimit, as the packet layer does (see withMargin).
	margin bool
}

// withMargin makes the flow stop two packets and a sixteenth short of the
// controller's InflightLimit, as the packet layer does: KCP's window moves
// by a sixteenth or more, so a window-limited sender never quite reaches
// it.
func (l *link) withMargin() *link {
	l.margin = true
	return l
}

// withLostFlushes makes run timer flushes in a row of the flow's peer
// lost, out of every every (see withPeerFlush): the time between two ACKs
// is then run+1 flushes.
func (l *link) withLostFlushes(every, run int) *link {
	l.lostEvery, l.lostRun = every, run
	return l
}

// withPeerFlush makes the flow's peer hold its ACKs as kcp-go does: until
// its next timer flush, every flush, or until batch ACKs wait (0: no such
// limit).
func (l *link) withPeerFlush(flush time.Duration, batch int) *link {
	l.flush, l.batch = flush, batch
	return l
}

// bottleneck is the shared part of the path: loss, queue and link.
type bottleneck struct {
	rate     float64
	delay    time.Duration
	queue    int
	loss     float64
	r        rng
	linkFree time.Duration

	queueDelay   time.Duration
	queueSamples int
	maxQueue     time.Duration
	measureFrom  time.Duration
}

type rec struct {
	seq   int
	sent  time.Duration
	state uint8 // 0 in flight, 1 acknowledged, 2 lost
}

func newLink(c *Controller, mbps float64, rtt time.Duration, loss float64, seed uint64) *link {
	return newBottleneck(mbps, rtt, loss, seed).sender(c)
}

// newBottleneck returns a path of mbps Mbit/s, a round-trip propagation
// delay of rtt, random loss and a queue of one bandwidth-delay product.
func newBottleneck(mbps float64, rtt time.Duration, loss float64, seed uint64) *bottleneck {
	rate := mbps * 1e6 / 8
	return &bottleneck{rate: rate, delay: rtt / 2, loss: loss, r: rng(seed | 1), queue: max(int(rate*rtt.Seconds()), 64*DefaultMSS)}
}

// sender returns a new flow over b driven by c.
func (b *bottleneck) sender(c *Controller) *link {
	return &link{bottleneck: b, c: c, pkt: DefaultMSS}
}

// runAll simulates the flows over their shared bottleneck until end.
func runAll(end time.Duration, flows ...*link) {
	for {
		var first *link
		var at time.Duration
		var kind int
		for _, f := range flows {
			if a, k := f.next(); first == nil || a < at {
				first, at, kind = f, a, k
			}
		}
		if at >= end {
			return
		}
		first.step(at, kind)
	}
}

// run simulates until end.
func (l *link) run(end time.Duration) {
	for l.t < end {
		l.step(l.next())
	}
}

// reorderWindow is how much later a packet must have been sent than an
// acknowledged one for the older one to count as lost.
const reorderWindow = 5 * time.Millisecond

// Kinds of link events.
const (
	evSend = iota
	evAck
	evTimeout
	evFlush // the peer's timer flush sends the ACKs it held
)

// peerArrival records that the packet of record idx reaches the peer at
// at (packets reach it in order): its ACK comes back at once, or with the
// peer's next flush. Timer flushes due before at run first.
func (l *link) peerArrival(idx int, at time.Duration) {
	if l.flush <= 0 {
		l.acks = append(l.acks, idx)
		l.ackAt = append(l.ackAt, at+l.delay)
		return
	}
	for len(l.pending) > 0 && l.nextTick < at {
		l.peerTick()
	}
	if len(l.pending) == 0 {
		l.nextTick = (at/l.flush + 1) * l.flush // the timer's grid
	}
	l.pending = append(l.pending, peerRec{idx, at})
	if l.batch > 0 && len(l.pending) >= l.batch {
		l.peerFlush(len(l.pending), at)
	}
}

// peerTick runs the peer's timer flush at nextTick: it sends the ACKs of
// the packets that reached the peer by then.
func (l *link) peerTick() {
	if l.ticks++; l.lostEvery > 0 && l.ticks%l.lostEvery < l.lostRun {
		l.nextTick += l.flush
		return
	}
	n := 0
	for n < len(l.pending) && l.pending[n].at <= l.nextTick {
		n++
	}
	l.peerFlush(n, l.nextTick)
	if len(l.pending) > 0 {
		l.nextTick = (l.pending[0].at/l.flush + 1) * l.flush
	}
}

// peerFlush sends at at the ACKs of the first n packets the peer holds.
func (l *link) peerFlush(n int, at time.Duration) {
	for _, p := range l.pending[:n] {
		l.acks = append(l.acks, p.idx)
		l.ackAt = append(l.ackAt, at+l.delay)
	}
	l.pending = append(l.pending[:0], l.pending[n:]...)
}

// peerRec is a packet that reached the peer, whose ACK the peer holds.
type peerRec struct {
	idx int
	at  time.Duration
}

// next returns the time and kind of the flow's next event.
func (l *link) next() (time.Duration, int) {
	wnd := l.c.SendWindow(l.pkt)
	limit := l.c.InflightLimit()
	if l.margin {
		limit -= int64(2*l.pkt) + limit/16
	}
	canSend := (len(l.rtx) > 0 || l.nextSeq-l.una < wnd) && int64(l.inflight) < limit
	tSend := time.Duration(math.MaxInt64)
	if canSend {
		tSend = max(l.nextSend, l.t)
	}
	tAck := time.Duration(math.MaxInt64)
	if l.ackHead < len(l.acks) {
		tAck = l.ackAt[l.ackHead]
	}
	tFlush := time.Duration(math.MaxInt64)
	if len(l.pending) > 0 {
		tFlush = l.nextTick + l.delay
	}
	tRTO := time.Duration(math.MaxInt64)
	if l.inflight > 0 {
		tRTO = l.lastAck + max(4*l.c.retransTime(), 200*time.Millisecond)
	}
	switch {
	case tFlush < tAck && tFlush <= tSend && tFlush <= tRTO:
		return tFlush, evFlush
	case tAck <= tSend && tAck <= tRTO:
		return tAck, evAck
	case tRTO < tSend:
		return tRTO, evTimeout
	}
	return tSend, evSend
}

// step runs the event of kind at time at.
func (l *link) step(at time.Duration, kind int) {
	l.t = at
	switch kind {
	case evAck:
		l.onAck(l.acks[l.ackHead])
		l.ackHead++
	case evTimeout:
		l.timeout()
	case evFlush:
		l.peerTick()
	default:
		l.send()
	}
}

func (l *link) send() {
	var seq int
	if len(l.rtx) > 0 {
		seq = l.rtx[0]
		l.rtx = l.rtx[1:]
		if l.acked[seq] {
			return
		}
	} else {
		seq = l.nextSeq
		l.nextSeq++
		l.acked = append(l.acked, false)
	}
	if l.inflight == 0 {
		l.lastAck = l.t
	}
	idx := len(l.recs)
	l.recs = append(l.recs, rec{seq: seq, sent: l.t})
	l.inflight += l.pkt
	l.c.OnSend(l.t, l.pkt, l.inflight)
	ok := l.enqueue(idx)
	wire := l.pkt
	if d, p := l.c.FEC(); d > 0 {
		wire += l.fecGroup(idx, ok, d, p)
	} else {
		l.grp, l.grpDropped, l.grpLost = l.grp[:0], l.grpDropped[:0], 0
	}
	rate := float64(l.c.WirePacingRate())
	l.nextSend = l.t + time.Duration(float64(wire)/rate*float64(time.Second))
}

// fecGroup adds data packet idx (delivered or not) to the current FEC
// group of shape d+p; once the group has its d data packets, it sends the
// parity through the bottleneck and, if no more than p of the group were
// lost, delivers the lost data packets with the group's last packet. It
// returns the parity bytes sent.
func (l *link) fecGroup(idx int, ok bool, d, p int) int {
	if d != l.grpD || p != l.grpP {
		l.grp, l.grpDropped, l.grpLost, l.grpD, l.grpP = l.grp[:0], l.grpDropped[:0], 0, d, p
	}
	l.grp = append(l.grp, idx)
	if !ok {
		l.grpDropped = append(l.grpDropped, idx)
		l.grpLost++
	}
	if len(l.grp) < d {
		return 0
	}
	for range p {
		if !l.enqueue(-1) {
			l.grpLost++
		}
	}
	if l.grpLost <= p && len(l.grpDropped) > 0 && l.lastArrival > 0 {
		for _, i := range l.grpDropped {
			// Rebuilt when the group's last packet reaches the peer.
			l.peerArrival(i, l.lastArrival-l.delay)
		}
	}
	l.grp, l.grpDropped, l.grpLost = l.grp[:0], l.grpDropped[:0], 0
	return p * l.pkt
}

// enqueue passes a packet through the loss and the bottleneck queue at
// l.t, and reports whether it got through; idx is its record, or -1 for
// FEC parity, which nobody acknowledges.
func (l *link) enqueue(idx int) bool {
	b := l.bottleneck
	if b.r.float() < b.loss {
		return false // lost on the way
	}
	start := max(b.linkFree, l.t)
	wait := start - l.t
	if int(wait.Seconds()*b.rate)+l.pkt > b.queue {
		return false // tail drop
	}
	if l.t >= b.measureFrom {
		b.queueDelay += wait
		b.queueSamples++
		b.maxQueue = max(b.maxQueue, wait)
	}
	b.linkFree = start + time.Duration(float64(l.pkt)/b.rate*float64(time.Second))
	l.lastArrival = b.linkFree + 2*b.delay
	if idx >= 0 {
		l.peerArrival(idx, b.linkFree+b.delay)
	}
	return true
}

func (l *link) markLost(i int) int {
	r := &l.recs[i]
	if r.state != 0 {
		return 0
	}
	r.state = 2
	l.inflight -= l.pkt
	if !l.acked[r.seq] {
		l.rtx = append(l.rtx, r.seq)
	}
	return 1
}

func (l *link) onAck(i int) {
	// A packet is lost once one sent reorderWindow after it is
	// acknowledged (an FEC group completes within that).
	lost := 0
	for ; l.scan < len(l.recs) && l.recs[l.scan].sent+reorderWindow < l.recs[i].sent; l.scan++ {
		lost += l.markLost(l.scan)
	}
	if lost > 0 {
		l.c.OnLoss(l.t, lost)
	}
	r := &l.recs[i]
	if r.state != 0 {
		return
	}
	r.state = 1
	l.inflight -= l.pkt
	l.lastAck = l.t
	if !l.acked[r.seq] {
		l.acked[r.seq] = true
		l.delivered += int64(l.pkt)
		for l.una < l.nextSeq && l.acked[l.una] {
			l.una++
		}
	}
	for time.Duration(len(l.deliveredAt))*time.Second <= l.t {
		l.deliveredAt = append(l.deliveredAt, l.delivered)
	}
	l.c.OnAck(l.t, l.pkt, l.t-r.sent, false)
}

func (l *link) timeout() {
	lost := 0
	for i := l.scan; i < len(l.recs); i++ {
		lost += l.markLost(i)
	}
	l.lastAck = l.t
	if lost > 0 {
		l.c.OnLoss(l.t, lost)
	}
}

// goodput returns the unique bytes delivered per second between whole
// seconds from and to.
func (l *link) goodput(from, to int) float64 {
	to = min(to, len(l.deliveredAt)-1)
	if to <= from {
		return 0
	}
	return float64(l.deliveredAt[to]-l.deliveredAt[from]) / float64(to-from)
}
