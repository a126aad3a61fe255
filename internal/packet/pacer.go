package packet

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxQueue bounds a peer's pacing queue, in datagrams. The queue starts
// small and grows on demand, so that an idle peer holds little memory; it is
// twice the adaptive controller's largest send window (adaptMaxWindow), so
// that what KCP's window lets out always fits.
const maxQueue = 8192

// pacingBurst is how far a paced sender may run ahead of its schedule.
const pacingBurst = 2 * time.Millisecond

// pacer is a peer's sending queue. With no rate every datagram goes out at
// once; with a rate they leave at that rate, in order, through a bounded
// queue that a timer drains (no goroutine while it is empty). What does not
// fit is dropped and counted in Stats.QueueDrops.
type pacer struct {
	p    *Peer
	rate atomic.Uint64 // bytes per second; 0: unpaced

	mu      sync.Mutex
	q       []qent  // ring of pool buffers; grows up to maxQueue, nil while empty
	ring    *[]qent // what q came from, for ringPools
	head, n int
	dups    int       // queued copies (qmeta.dup)
	next    time.Time // when the next datagram may leave
	timer   *time.Timer
	armed   bool
	stopped bool
}

func (pc *pacer) setRate(r uint64) {
	pc.rate.Store(r)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.drainLocked()
}

// qent is one queued datagram with what the adaptive controller needs to
// know when it leaves (zero for parity and for peers without a controller).
type qent struct {
	d []byte
	m qmeta
}

// send transmits or queues a copy of d, which the caller keeps.
func (pc *pacer) send(d []byte) error {
	return pc.sendOwned(append(pc.p.c.pool.get(), d...), qmeta{})
}

// sendOwned transmits or queues d, a datagram in a buffer from the Conn's
// pool, which belongs to the pacer from here on; m describes the KCP data
// it carries. Handing the buffer on instead of copying it saves two copies
// of every datagram, each into a buffer that is rarely in the cache.
func (pc *pacer) sendOwned(d []byte, m qmeta) error {
	if pc.rate.Load() == 0 && pc.p.ad.Load() == nil {
		pc.mu.Lock()
		empty := pc.n == 0
		pc.mu.Unlock()
		if empty {
			return pc.p.transmit(d)
		}
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.stopped {
		pc.p.c.pool.put(d)
		return nil
	}
	if pc.n == len(pc.q) && !pc.grow() {
		pc.p.c.pool.put(d)
		pc.p.st.QueueDrops.Add(1)
		return nil
	}
	pc.q[(pc.head+pc.n)%len(pc.q)] = qent{d: d, m: m}
	pc.n++
	if m.dup {
		pc.dups++
	}
	pc.drainLocked()
	return nil
}

// drainLocked sends what the rate allows and arms the timer for the rest.
func (pc *pacer) drainLocked() {
	if pc.stopped {
		return
	}
	now := time.Now()
	rate := pc.rate.Load()
	if pc.next.Before(now.Add(-pacingBurst)) {
		pc.next = now.Add(-pacingBurst)
	}
	for pc.n > 0 {
		if rate != 0 && pc.next.After(now) {
			if !pc.armed {
				pc.armed = true
				if pc.timer == nil {
					pc.timer = time.AfterFunc(pc.next.Sub(now), pc.fire)
				} else {
					pc.timer.Reset(pc.next.Sub(now))
				}
			}
			return
		}
		e := pc.q[pc.head]
		d := e.d
		pc.q[pc.head] = qent{}
		pc.head = (pc.head + 1) % len(pc.q)
		pc.n--
		if e.m.dup {
			pc.dups--
		}
		if rate != 0 {
			pc.next = pc.next.Add(time.Duration(uint64(len(d)) * uint64(time.Second) / rate))
		}
		if pc.p.transmit(d) == nil && e.m.data > 0 {
			// Copies queued behind a datagram are no backlog: a thin
			// flow's datagrams stay application-limited.
			pc.p.transmitted(e.m, pc.n > pc.dups)
		}
	}
	pc.release()
}

// grow enlarges the full ring, keeping its order; it reports false at
// maxQueue. The rings come from ringPools, by size.
func (pc *pacer) grow() bool {
	if len(pc.q) >= maxQueue {
		return false
	}
	ring := takeRing(min(max(2*len(pc.q), minRing), maxQueue))
	q := *ring
	for i := range pc.n {
		q[i] = pc.q[(pc.head+i)%len(pc.q)]
		pc.q[(pc.head+i)%len(pc.q)] = qent{}
	}
	putRing(pc.ring)
	pc.q, pc.ring, pc.head = q, ring, 0
	return true
}

// release hands the ring back once the queue is empty, so that an idle peer
// holds none; pc.mu is held.
func (pc *pacer) release() {
	if pc.n == 0 && pc.ring != nil {
		putRing(pc.ring)
		pc.q, pc.ring, pc.head = nil, nil, 0
	}
}

// minRing is the size of a pacing queue's first ring; each growth doubles it.
const minRing = 64

// ringPools recycle the pacers' rings among all peers, one pool per size
// (minRing, 2·minRing, ... maxQueue), so that a queue that empties and fills
// again allocates nothing.
var ringPools [ringSizes]sync.Pool // *[]qent

// ringSizes is how many ring sizes there are, minRing to maxQueue.
const ringSizes = 8

// ringClass returns the pool index of a ring of n entries, or -1 if n is
// not one of the sizes grow makes.
func ringClass(n int) int {
	for i, size := 0, minRing; i < ringSizes; i, size = i+1, 2*size {
		if n == size {
			return i
		}
	}
	return -1
}

// takeRing returns an empty ring of n entries.
func takeRing(n int) *[]qent {
	if c := ringClass(n); c >= 0 {
		if r, ok := ringPools[c].Get().(*[]qent); ok {
			return r
		}
	}
	q := make([]qent, n)
	return &q
}

// putRing recycles a ring from takeRing (nil is ignored), whose entries must
// be clear.
func putRing(r *[]qent) {
	if r == nil {
		return
	}
	if c := ringClass(len(*r)); c >= 0 {
		ringPools[c].Put(r)
	}
}

func (pc *pacer) fire() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.armed = false
	pc.drainLocked()
}

// stop drops what is queued (counting it) and stops the timer.
func (pc *pacer) stop() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.stopped = true
	if pc.timer != nil {
		pc.timer.Stop()
	}
	for pc.n > 0 {
		pc.p.c.pool.put(pc.q[pc.head].d)
		pc.q[pc.head] = qent{}
		pc.head = (pc.head + 1) % len(pc.q)
		pc.n--
		pc.p.st.QueueDrops.Add(1)
	}
	pc.dups = 0
	pc.release()
}
