package kcptuntest

import (
	"container/heap"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// smallBuf is the buffer capacity of pooled packets; larger datagrams get a
// buffer of their own size.
const smallBuf = 2048

// packet is one copy of a datagram in flight in a direction.
type packet struct {
	buf   []byte
	c     *client // the client the datagram comes from or goes to
	due   int64   // delivery time, nanoseconds since the relay's epoch
	seq   uint64  // tie-break for equal due times: scheduling order
	index int     // position in the heap

	// normal is the delivery time the packet would have had without
	// reordering, and wait the number of successors still to overtake it;
	// wait > 0 means the packet is held back.
	normal int64
	wait   int
}

var packetPool = sync.Pool{New: func() any { return &packet{buf: make([]byte, 0, smallBuf)} }}

func getPacket(b []byte, c *client) *packet {
	var p *packet
	if len(b) <= smallBuf {
		p = packetPool.Get().(*packet)
	} else {
		p = &packet{buf: make([]byte, 0, len(b))}
	}
	p.buf = append(p.buf[:0], b...)
	p.c = c
	return p
}

func putPacket(p *packet) {
	if cap(p.buf) != smallBuf {
		return
	}
	p.c = nil
	p.wait = 0
	packetPool.Put(p)
}

// packetHeap orders packets by due time, then by seq.
type packetHeap []*packet

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].seq < h[j].seq
}
func (h packetHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *packetHeap) Push(x any) {
	p := x.(*packet)
	p.index = len(*h)
	*h = append(*h, p)
}
func (h *packetHeap) Pop() any {
	old := *h
	n := len(old)
	p := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	p.index = -1
	return p
}

// Stream numbers for the per-stage random generators.
const (
	streamLoss = iota
	streamDup
	streamJitter
	streamReorder
	numStreams
)

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// newStream returns the generator of one stage of one direction.
func newStream(seed int64, dir, stage uint64) *rand.PCG {
	s1 := splitmix64(splitmix64(uint64(seed)) ^ (dir<<32 | stage))
	return rand.NewPCG(s1, splitmix64(s1))
}

// unit returns a uniform float64 in [0, 1).
func unit(g *rand.PCG) float64 {
	return float64(g.Uint64()>>11) * 0x1p-53
}

// decider makes the random decisions of one direction. It is not safe for
// concurrent use.
type decider struct {
	link  Link
	bad   bool // Gilbert-Elliott state
	rng   [numStreams]*rand.PCG
	queue int // effective bandwidth queue size
	dist  int // effective reorder distance
}

func newDecider(seed int64, dir uint64, l Link) *decider {
	d := &decider{}
	for i := range d.rng {
		d.rng[i] = newStream(seed, dir, uint64(i))
	}
	d.setLink(l)
	return d
}

func (d *decider) setLink(l Link) {
	d.link = l.clone()
	if d.link.Burst == nil {
		d.bad = false
	}
	d.queue = d.link.queueLimit()
	d.dist = max(d.link.ReorderDistance, 1)
}

// lose decides whether the next datagram is lost. It draws two values
// whatever the link, so that the sequence of decisions stays aligned with
// the datagrams when the link changes.
func (d *decider) lose() bool {
	g := d.rng[streamLoss]
	move, u := unit(g), unit(g)
	b := d.link.Burst
	if b == nil {
		return u < d.link.Loss
	}
	if d.bad {
		if move < b.PBadToGood {
			d.bad = false
		}
	} else if move < b.PGoodToBad {
		d.bad = true
	}
	if d.bad {
		return u < b.LossBad
	}
	return u < b.LossGood
}

// duplicate decides whether the next datagram that was not lost is copied.
func (d *decider) duplicate() bool {
	return unit(d.rng[streamDup]) < d.link.Duplicate
}

// delay returns the delay of the next copy: Delay plus uniform jitter.
func (d *decider) delay() int64 {
	u := unit(d.rng[streamJitter])
	v := int64(d.link.Delay)
	if j := int64(d.link.Jitter); j > 0 {
		v += int64((2*u - 1) * float64(j))
	}
	return max(v, 0)
}

// reorder decides whether the next copy is held back.
func (d *decider) reorder() bool {
	return unit(d.rng[streamReorder]) < d.link.Reorder
}

// counters of one direction; see LinkStats.
type counters struct {
	received, receivedBytes   uint64
	droppedLoss, droppedQueue uint64
	duplicated, reordered     uint64
}

// direction is one direction of a relay: its decisions, its queue of
// packets in flight and the scheduler goroutine that delivers them.
type direction struct {
	r  *Relay
	up bool

	mu        sync.Mutex
	dec       *decider
	immediate bool
	busyUntil int64 // when the bandwidth queue empties, ns since epoch
	heap      packetHeap
	held      []*packet // held back for reordering, in arrival order
	inFlight  int       // buffer bytes of the packets in heap
	seq       uint64
	cnt       counters

	// Updated outside mu.
	pending        atomic.Int64 // copies accepted and not yet written
	delivered      atomic.Uint64
	deliveredBytes atomic.Uint64
	sendErrors     atomic.Uint64

	wake chan struct{} // capacity 1: the heap's head moved earlier
}

func newDirection(r *Relay, up bool, seed int64, l Link) *direction {
	dir := uint64(1)
	if up {
		dir = 0
	}
	d := &direction{r: r, up: up, dec: newDecider(seed, dir, l), wake: make(chan struct{}, 1)}
	d.immediate = d.dec.link.immediate()
	return d
}

func (d *direction) setLink(l Link) {
	d.mu.Lock()
	d.dec.setLink(l)
	d.immediate = d.dec.link.immediate()
	d.mu.Unlock()
}

func (d *direction) link() Link {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dec.link.clone()
}

// datagram is a datagram read from a socket, with the client it comes from
// or goes to.
type datagram struct {
	b []byte
	c *client
}

// outbox collects datagrams to write, in order, and writes them in
// batches. It belongs to one goroutine.
type outbox struct {
	w    batchWriter
	cs   []*client
	bufs [][]byte
}

func (o *outbox) add(c *client, b []byte) {
	o.cs = append(o.cs, c)
	o.bufs = append(o.bufs, b)
}

// input takes datagrams read from one side of the direction; their
// buffers are only used during the call. Datagrams that go the fast path
// are written to o, and o is flushed, before input returns.
func (d *direction) input(in []datagram, o *outbox) {
	d.mu.Lock()
	fast := d.immediate && len(d.heap) == 0
	var now int64
	if !fast {
		now = d.r.now()
	}
	headDue := int64(-1) // when the scheduler wakes up next, -1 for never
	if len(d.heap) > 0 {
		headDue = d.heap[0].due
	}
	direct, queued := 0, 0
	for _, dg := range in {
		n := len(dg.b)
		d.cnt.received++
		d.cnt.receivedBytes += uint64(n)
		lost := d.dec.lose()
		copies := 1
		if d.dec.duplicate() {
			copies = 2
		}
		// Draw the per-copy values now, before anything that depends on
		// timing, so that the streams stay aligned with the datagrams.
		var delays [2]int64
		var reorder [2]bool
		for i := range copies {
			delays[i] = d.dec.delay()
			reorder[i] = d.dec.reorder()
		}
		if lost {
			d.cnt.droppedLoss++
			continue
		}
		if copies == 2 {
			d.cnt.duplicated++
		}
		if fast {
			for range copies {
				o.add(dg.c, dg.b)
			}
			direct += copies
			continue
		}
		for i := range copies {
			if d.enqueue(dg, now, delays[i], reorder[i]) {
				queued++
			}
		}
	}
	d.pending.Add(int64(direct + queued))
	wake := len(d.heap) > 0 && (headDue < 0 || d.heap[0].due < headDue)
	d.mu.Unlock()
	if wake {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	if direct > 0 {
		d.flush(o)
		d.pending.Add(-int64(direct))
	}
}

// enqueue puts a copy of dg through the bandwidth queue and into the delay
// line, and reports whether it was accepted. d.mu is held.
func (d *direction) enqueue(dg datagram, now, delay int64, reorder bool) bool {
	n := len(dg.b)
	size := max(n, smallBuf)
	if d.inFlight+size > MaxInFlightBytes {
		d.cnt.droppedQueue++
		return false
	}
	depart := now
	if sb := d.dec.link.Shared; sb != nil {
		wait, ok := sb.admit(n)
		if !ok {
			d.cnt.droppedQueue++
			return false
		}
		depart = now + wait
	} else if bw := d.dec.link.Bandwidth; bw > 0 {
		start := max(now, d.busyUntil)
		if backlog := start - now; backlog > 0 &&
			float64(backlog)*float64(bw)/8e9+float64(n) > float64(d.dec.queue) {
			d.cnt.droppedQueue++
			return false
		}
		d.busyUntil = start + int64(float64(n)*8e9/float64(bw))
		depart = d.busyUntil
	}
	p := getPacket(dg.b, dg.c)
	d.inFlight += size
	p.normal = depart + delay
	d.seq++
	p.seq = d.seq
	if reorder {
		p.wait = d.dec.dist
		p.due = p.normal + int64(ReorderTimeout)
		d.held = append(d.held, p)
		heap.Push(&d.heap, p)
		return true
	}
	p.due = p.normal
	heap.Push(&d.heap, p)
	d.overtake(p)
	return true
}

// overtake counts p as overtaking every held packet and releases those
// that have been overtaken enough, right after p. d.mu is held.
func (d *direction) overtake(p *packet) {
	if len(d.held) == 0 {
		return
	}
	j := 0
	for _, h := range d.held {
		h.wait--
		if h.wait > 0 {
			d.held[j] = h
			j++
			continue
		}
		h.due = max(h.normal, p.due)
		d.seq++
		h.seq = d.seq
		heap.Fix(&d.heap, h.index)
		d.cnt.reordered++
	}
	clear(d.held[j:])
	d.held = d.held[:j]
}

// unhold removes p from the held list. d.mu is held.
func (d *direction) unhold(p *packet) {
	for i, h := range d.held {
		if h == p {
			copy(d.held[i:], d.held[i+1:])
			d.held[len(d.held)-1] = nil
			d.held = d.held[:len(d.held)-1]
			return
		}
	}
}

// flush writes the datagrams of o, in batches of consecutive datagrams of
// the same client, and empties o.
func (d *direction) flush(o *outbox) {
	for i := 0; i < len(o.cs); {
		c := o.cs[i]
		j := i + 1
		for j < len(o.cs) && o.cs[j] == c {
			j++
		}
		d.writeRun(&o.w, c, o.bufs[i:j])
		i = j
	}
	clear(o.cs)
	clear(o.bufs)
	o.cs, o.bufs = o.cs[:0], o.bufs[:0]
}

// writeRun writes datagrams of client c to their next hop.
func (d *direction) writeRun(w *batchWriter, c *client, bufs [][]byte) {
	total := len(bufs)
	var sent, bytes int
	if d.up {
		s := c.up.Load()
		for len(bufs) > 0 {
			n, nb, done, err := w.write(s, nil, bufs)
			sent, bytes, bufs = sent+n, bytes+nb, bufs[done:]
			if err == nil {
				break
			}
			// The socket is closed: Rebind replaced it, and the rest go
			// out of the new one, or the relay is closing.
			ns := c.up.Load()
			if ns == s {
				break
			}
			s = ns
		}
	} else {
		sent, bytes, _, _ = w.write(d.r.ln, c, bufs)
	}
	if sent > 0 {
		d.delivered.Add(uint64(sent))
		d.deliveredBytes.Add(uint64(bytes))
	}
	if failed := total - sent; failed > 0 {
		d.sendErrors.Add(uint64(failed))
	}
}

// run is the scheduler: it delivers the packets of the heap when they are
// due, sleeping on a single timer in between.
func (d *direction) run() {
	defer d.r.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []*packet
	var o outbox
	for {
		select {
		case <-d.r.done:
			return
		default:
		}
		d.mu.Lock()
		now := d.r.now()
		for len(d.heap) > 0 && d.heap[0].due <= now {
			p := heap.Pop(&d.heap).(*packet)
			if p.wait > 0 {
				d.unhold(p)
			}
			d.inFlight -= max(len(p.buf), smallBuf)
			batch = append(batch, p)
		}
		wait := int64(-1)
		if len(d.heap) > 0 {
			wait = d.heap[0].due - now
		}
		d.mu.Unlock()

		if len(batch) > 0 {
			for _, p := range batch {
				o.add(p.c, p.buf)
			}
			d.flush(&o)
			for i, p := range batch {
				putPacket(p)
				batch[i] = nil
			}
			d.pending.Add(-int64(len(batch)))
			batch = batch[:0]
			continue // time has passed: look again before sleeping
		}
		if wait < 0 {
			select {
			case <-d.wake:
			case <-d.r.done:
				return
			}
			continue
		}
		timer.Reset(time.Duration(wait))
		select {
		case <-timer.C:
		case <-d.wake:
		case <-d.r.done:
			return
		}
	}
}

// stats returns the direction's counters. It reads them in an order that
// makes a snapshot with Received = n and Pending = 0 final for the first n
// datagrams: every copy of them written and counted in Delivered or
// SendErrors.
func (d *direction) stats() LinkStats {
	d.mu.Lock()
	c := d.cnt
	d.mu.Unlock()
	pending := d.pending.Load()
	return LinkStats{
		Received:       c.received,
		ReceivedBytes:  c.receivedBytes,
		Delivered:      d.delivered.Load(),
		DeliveredBytes: d.deliveredBytes.Load(),
		DroppedLoss:    c.droppedLoss,
		DroppedQueue:   c.droppedQueue,
		Duplicated:     c.duplicated,
		Reordered:      c.reordered,
		SendErrors:     d.sendErrors.Load(),
		Pending:        int(pending),
	}
}
