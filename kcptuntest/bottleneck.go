package kcptuntest

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrBadBottleneck is wrapped by the error a Relay returns for a Link whose
// Shared bottleneck was not made by NewBottleneck.
var ErrBadBottleneck = errors.New("bottleneck not made by NewBottleneck")

// Bottleneck is a bandwidth stage that several directions, of one Relay or
// of several, can share: a Link whose Shared field points to it serialises
// its copies at the bottleneck's rate through the bottleneck's one drop-tail
// queue, one after the other with the copies of every other direction that
// shares it, as flows compete at a router. Relays of different systems (say
// kcptun's UDP and a TCP path carried as UDP datagrams) can so share one
// queue. Create one with NewBottleneck; it is safe for concurrent use and
// holds no goroutine.
type Bottleneck struct {
	bandwidth int64 // bit/s, > 0
	queue     int   // bytes
	epoch     time.Time

	mu        sync.Mutex
	busyUntil int64 // when the queue empties, ns since epoch
}

// NewBottleneck returns a bottleneck of bandwidth bits per second behind a
// drop-tail FIFO of queueBytes payload bytes, counted as Link.QueueBytes
// is: a copy is dropped when the bytes still to transmit plus its own size
// exceed queueBytes, except that a copy finding the bottleneck idle is
// always accepted. queueBytes 0 selects DefaultQueueBytes; any value is
// capped to MaxInFlightBytes.
func NewBottleneck(bandwidth int64, queueBytes int) (*Bottleneck, error) {
	if bandwidth <= 0 {
		return nil, fmt.Errorf("kcptuntest: bottleneck bandwidth %d bit/s: must be positive", bandwidth)
	}
	if queueBytes < 0 {
		return nil, fmt.Errorf("kcptuntest: bottleneck queue %d bytes: must not be negative", queueBytes)
	}
	if queueBytes == 0 {
		queueBytes = DefaultQueueBytes
	}
	return &Bottleneck{bandwidth: bandwidth, queue: min(queueBytes, MaxInFlightBytes), epoch: time.Now()}, nil
}

// Bandwidth returns the bottleneck's rate in bits per second.
func (b *Bottleneck) Bandwidth() int64 { return b.bandwidth }

// QueueBytes returns the bottleneck's queue capacity in bytes.
func (b *Bottleneck) QueueBytes() int { return b.queue }

// admit puts a copy of n bytes in the queue and returns how long from now
// its last bit leaves, in nanoseconds, or false when the queue is full.
func (b *Bottleneck) admit(n int) (wait int64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := int64(time.Since(b.epoch))
	start := max(now, b.busyUntil)
	if backlog := start - now; backlog > 0 &&
		float64(backlog)*float64(b.bandwidth)/8e9+float64(n) > float64(b.queue) {
		return 0, false
	}
	b.busyUntil = start + int64(float64(n)*8e9/float64(b.bandwidth))
	return b.busyUntil - now, true
}
