package packet

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxQueue bounds a peer's pacing queue, in datagrams.
const maxQueue = 2048

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
	q       [][]byte // ring of pool buffers
	head, n int
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

// send transmits d now or queues a copy of it.
func (pc *pacer) send(d []byte) error {
	if pc.rate.Load() == 0 {
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
		return nil
	}
	if pc.n == maxQueue {
		pc.p.st.QueueDrops.Add(1)
		return nil
	}
	if pc.q == nil {
		pc.q = make([][]byte, maxQueue)
	}
	pc.q[(pc.head+pc.n)%maxQueue] = append(pc.p.c.pool.get(), d...)
	pc.n++
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
		d := pc.q[pc.head]
		pc.q[pc.head] = nil
		pc.head = (pc.head + 1) % maxQueue
		pc.n--
		_ = pc.p.transmit(d)
		if rate != 0 {
			pc.next = pc.next.Add(time.Duration(uint64(len(d)) * uint64(time.Second) / rate))
		}
		pc.p.c.pool.put(d)
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
		pc.p.c.pool.put(pc.q[pc.head])
		pc.q[pc.head] = nil
		pc.head = (pc.head + 1) % maxQueue
		pc.n--
		pc.p.st.QueueDrops.Add(1)
	}
}
