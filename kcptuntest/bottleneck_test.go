package kcptuntest

import (
	"errors"
	"testing"
	"time"
)

// TestSharedBottleneck sends a burst through each of two relays whose up
// links share one bottleneck: the datagrams of both are serialised at the
// shared rate, so together they take as long as both would through one
// link, twice what either takes alone.
func TestSharedBottleneck(t *testing.T) {
	const (
		rate  = 1_000_000 // bits per second
		size  = 1000
		burst = 100 // per relay: 100 kB, 0.8 s of transmission alone
	)
	b, err := NewBottleneck(rate, 4*burst*size)
	if err != nil {
		t.Fatal(err)
	}
	targets, relays, start := sharedBursts(t, burst, size, func(i int) Config {
		return Config{Up: Link{Shared: b}, Seed: int64(i)}
	})
	perDatagram := time.Duration(float64(size*8) / rate * float64(time.Second))
	var last time.Time
	for i, r := range relays {
		st := settle(t, r, true, burst, targets[i])
		if st.DroppedQueue != 0 || st.Delivered != burst {
			t.Errorf("relay %d: stats %+v: want all %d datagrams delivered through a queue that holds them all", i, st, burst)
		}
		if as := targets[i].arrivals(); len(as) > 0 && as[len(as)-1].at.After(last) {
			last = as[len(as)-1].at
		}
	}
	// The bottleneck transmits one datagram of either relay at a time (in
	// whatever order the relays read them), and timers never fire early:
	// the last cannot arrive before the time of all 2*burst has passed.
	if took, want := last.Sub(start), time.Duration(2*burst)*perDatagram; took < want*9/10 {
		t.Errorf("the last of %d datagrams arrived after %v, want at least %v (a shared bottleneck)", 2*burst, took, want)
	}
}

// sharedBursts starts two relays configured by cfg(0) and cfg(1), each with a
// target and a client, and has each client send burst datagrams of size
// bytes, interleaved; it returns when the last was sent, with the time the
// first was.
func sharedBursts(t *testing.T, burst, size int, cfg func(i int) Config) (targets [2]*endpoint, relays [2]*Relay, start time.Time) {
	t.Helper()
	var clients [2]*endpoint
	for i := range relays {
		targets[i] = newTarget(t, false)
		relays[i] = newRelay(t, targets[i].addr().String(), cfg(i))
		clients[i] = newClient(t, relays[i].Addr())
	}
	start = time.Now()
	for i := range burst {
		for _, c := range clients {
			c.send(t, uint64(i), size)
		}
	}
	return targets, relays, start
}

// TestSharedBottleneckQueue checks that the shared queue drops what does
// not fit, counting it in the stats of the direction it came from.
func TestSharedBottleneckQueue(t *testing.T) {
	const (
		rate  = 1_000_000
		queue = 16 << 10
		size  = 1000
		burst = 100
	)
	b, err := NewBottleneck(rate, queue)
	if err != nil {
		t.Fatal(err)
	}
	if b.Bandwidth() != rate || b.QueueBytes() != queue {
		t.Errorf("bottleneck %d bit/s %d bytes, want %d and %d", b.Bandwidth(), b.QueueBytes(), rate, queue)
	}
	targets, relays, start := sharedBursts(t, burst, size, func(int) Config {
		return Config{Down: Link{Delay: time.Millisecond}, Up: Link{Shared: b}}
	})
	var received time.Time
	waitFor(t, "the relays to take the bursts", func() bool {
		received = time.Now()
		return relays[0].Stats().Up.Received == burst && relays[1].Stats().Up.Received == burst
	})
	var delivered, dropped uint64
	for i, r := range relays {
		st := settle(t, r, true, burst, targets[i])
		if st.Delivered+st.DroppedQueue != burst {
			t.Errorf("relay %d: stats %+v do not add up to %d", i, st, burst)
		}
		delivered += st.DeliveredBytes
		dropped += st.DroppedQueue
	}
	if dropped == 0 {
		t.Errorf("two %d-byte bursts into one %d-byte queue dropped nothing", burst*size, queue)
	}
	// One queue's worth, plus what drained while the bursts arrived, plus
	// the datagram in transmission: not one queue per relay.
	drained := float64(rate) / 8 * received.Sub(start).Seconds()
	if limit := float64(queue+2*size) + drained; float64(delivered) > limit {
		t.Errorf("delivered %d bytes in all, want at most %.0f", delivered, limit)
	}
}

func TestBottleneckValidation(t *testing.T) {
	if _, err := NewBottleneck(0, 0); err == nil {
		t.Error("NewBottleneck with no bandwidth: no error")
	}
	if _, err := NewBottleneck(1e6, -1); err == nil {
		t.Error("NewBottleneck with a negative queue: no error")
	}
	b, err := NewBottleneck(1e6, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.QueueBytes() != DefaultQueueBytes {
		t.Errorf("default queue %d bytes, want %d", b.QueueBytes(), DefaultQueueBytes)
	}
	if r, err := NewRelay("127.0.0.1:9", Config{Down: Link{Shared: &Bottleneck{}}}); !errors.Is(err, ErrBadBottleneck) {
		if r != nil {
			r.Close()
		}
		t.Errorf("NewRelay with a zero Bottleneck: error %v, want ErrBadBottleneck", err)
	}
	r := newRelay(t, "127.0.0.1:9", Config{Up: Link{Shared: b}})
	if err := r.SetLinks(Link{Shared: &Bottleneck{}}, Link{}); !errors.Is(err, ErrBadBottleneck) {
		t.Errorf("SetLinks with a zero Bottleneck: error %v, want ErrBadBottleneck", err)
	}
	if up, _ := r.Links(); up.Shared != b {
		t.Error("Links does not return the shared bottleneck")
	}
}
