package kcptuntest

import (
	"fmt"
	"math"
	"time"
)

const (
	// DefaultMaxClients is the number of upstream sockets, one per client
	// source address, that a Relay opens at most when Config.MaxClients is
	// zero.
	DefaultMaxClients = 1024

	// DefaultQueueBytes is the smallest bandwidth queue a Link gets when it
	// has a Bandwidth cap and QueueBytes is zero; the default is the larger
	// of this and the link's bandwidth-delay product.
	DefaultQueueBytes = 64 << 10

	// MaxInFlightBytes bounds the buffer space taken by the datagrams in
	// flight in one direction of a Relay: those waiting in the bandwidth
	// queue, in the delay line or held back for reordering. Buffers are
	// counted by capacity, 2 KiB for datagrams up to 2 KiB. A datagram that
	// would exceed the bound is dropped and counted in LinkStats.DroppedQueue.
	// A Link's QueueBytes is capped to it as well.
	MaxInFlightBytes = 32 << 20

	// ReorderTimeout is how long past its normal delivery time a datagram
	// held back for reordering waits for the successors that are to overtake
	// it before it is delivered anyway.
	ReorderTimeout = 10 * time.Millisecond
)

// GilbertElliott is a two-state Markov model of bursty loss. The chain is
// in a good or a bad state and starts in the good one. For every datagram
// the chain first moves, from good to bad with probability PGoodToBad or
// from bad to good with probability PBadToGood, and the datagram is then
// lost with the loss probability of the new state: LossGood or LossBad.
//
// Over time the chain spends the fraction PGoodToBad/(PGoodToBad+PBadToGood)
// of datagrams in the bad state, and a stay in the bad state lasts
// 1/PBadToGood datagrams on average. StationaryLoss gives the resulting loss
// rate. For example {PGoodToBad: 0.01, PBadToGood: 0.25, LossGood: 0,
// LossBad: 1} loses about 3.8 % of datagrams in bursts of 4 on average.
type GilbertElliott struct {
	// PGoodToBad is the probability, per datagram, of moving from the
	// good state to the bad one.
	PGoodToBad float64
	// PBadToGood is the probability, per datagram, of moving from the bad
	// state back to the good one.
	PBadToGood float64
	// LossGood is the loss probability of a datagram in the good state.
	LossGood float64
	// LossBad is the loss probability of a datagram in the bad state.
	LossBad float64
}

// StationaryLoss returns the long-run fraction of datagrams that g loses.
// A chain that never leaves the good state (both transition probabilities
// zero) loses LossGood.
func (g GilbertElliott) StationaryLoss() float64 {
	p, r := g.PGoodToBad, g.PBadToGood
	if p+r == 0 {
		return g.LossGood
	}
	bad := p / (p + r)
	return (1-bad)*g.LossGood + bad*g.LossBad
}

// Link describes the impairments of one direction of a Relay. The zero
// Link is a perfect link: it delivers every datagram, once, in order, as
// fast as it can. The package documentation gives the order in which the
// impairments apply.
type Link struct {
	// Loss is the probability, in [0, 1], that a datagram is dropped,
	// independently of every other datagram. It is ignored when Burst is
	// set. 1 emulates a dead path.
	Loss float64

	// Burst, when not nil, replaces Loss with a Gilbert-Elliott model of
	// bursty loss. The Relay keeps its own copy of the model's parameters.
	Burst *GilbertElliott

	// Duplicate is the probability, in [0, 1], that a datagram that was not
	// lost is delivered twice. Both copies then go through the bandwidth,
	// delay and reordering stages.
	Duplicate float64

	// Bandwidth caps the rate of the link, in bits per second, counting
	// UDP payload bytes only. 0 means no cap.
	Bandwidth int64

	// QueueBytes is the capacity, in payload bytes, of the drop-tail FIFO
	// in front of a capped link, the datagram in transmission included: a
	// datagram is dropped when the bytes still to transmit plus its own
	// size exceed QueueBytes, except that a datagram finding the link idle
	// is always accepted. 0 selects the larger of DefaultQueueBytes and the
	// bandwidth-delay product Bandwidth/8 * Delay. Any value is capped to
	// MaxInFlightBytes. It is ignored when Bandwidth is 0.
	QueueBytes int

	// Delay is the base one-way delay added to every datagram, after the
	// bandwidth queue.
	Delay time.Duration

	// Jitter spreads the delay: each datagram is delayed by Delay plus a
	// value drawn uniformly from [-Jitter, +Jitter], and never by less than
	// zero. Jitter larger than Delay therefore raises the mean delay a
	// little. Jitter reorders datagrams sent closer together than it.
	Jitter time.Duration

	// Reorder is the probability, in [0, 1], that a datagram is held back
	// so that the next ReorderDistance datagrams of the same direction
	// overtake it; it is delivered right after the last of them, or
	// ReorderTimeout after its normal delivery time if they do not come.
	Reorder float64

	// ReorderDistance is how many later datagrams overtake a datagram held
	// back for reordering. 0 means 1.
	ReorderDistance int

	// Shared, when not nil, replaces Bandwidth and QueueBytes with a
	// bottleneck that other directions, of this Relay or others, may share
	// (see Bottleneck). It is shared, not copied: Links returns the same
	// pointer.
	Shared *Bottleneck
}

// immediate reports whether l forwards datagrams without queueing them.
func (l *Link) immediate() bool {
	return l.Delay == 0 && l.Jitter == 0 && l.Bandwidth == 0 && l.Reorder == 0 && l.Shared == nil
}

// queueLimit returns the effective bandwidth queue size of l in bytes.
func (l *Link) queueLimit() int {
	q := l.QueueBytes
	if q == 0 {
		bdp := float64(l.Bandwidth) / 8 * l.Delay.Seconds()
		q = DefaultQueueBytes
		if bdp > float64(q) {
			q = int(math.Min(bdp, MaxInFlightBytes))
		}
	}
	return min(q, MaxInFlightBytes)
}

// clone returns a copy of l that shares no memory with it.
func (l Link) clone() Link {
	if l.Burst != nil {
		b := *l.Burst
		l.Burst = &b
	}
	return l
}

// validate checks every field of l; name prefixes the field names in the
// error, as in "Config.Up".
func (l *Link) validate(name string) error {
	if err := checkProb(name+".Loss", l.Loss); err != nil {
		return err
	}
	if l.Burst != nil {
		b := l.Burst
		for _, f := range []struct {
			field string
			v     float64
		}{
			{"PGoodToBad", b.PGoodToBad},
			{"PBadToGood", b.PBadToGood},
			{"LossGood", b.LossGood},
			{"LossBad", b.LossBad},
		} {
			if err := checkProb(name+".Burst."+f.field, f.v); err != nil {
				return err
			}
		}
	}
	if err := checkProb(name+".Duplicate", l.Duplicate); err != nil {
		return err
	}
	if err := checkProb(name+".Reorder", l.Reorder); err != nil {
		return err
	}
	if l.Bandwidth < 0 {
		return fmt.Errorf("kcptuntest: invalid %s.Bandwidth %d: must not be negative", name, l.Bandwidth)
	}
	if l.Shared != nil && l.Shared.bandwidth <= 0 {
		return fmt.Errorf("kcptuntest: invalid %s.Shared: %w", name, ErrBadBottleneck)
	}
	if l.QueueBytes < 0 {
		return fmt.Errorf("kcptuntest: invalid %s.QueueBytes %d: must not be negative", name, l.QueueBytes)
	}
	if l.Delay < 0 {
		return fmt.Errorf("kcptuntest: invalid %s.Delay %v: must not be negative", name, l.Delay)
	}
	if l.Jitter < 0 {
		return fmt.Errorf("kcptuntest: invalid %s.Jitter %v: must not be negative", name, l.Jitter)
	}
	if l.ReorderDistance < 0 {
		return fmt.Errorf("kcptuntest: invalid %s.ReorderDistance %d: must not be negative", name, l.ReorderDistance)
	}
	return nil
}

func checkProb(field string, v float64) error {
	if !(v >= 0 && v <= 1) { // also rejects NaN
		return fmt.Errorf("kcptuntest: invalid %s %v: must be a probability in [0, 1]", field, v)
	}
	return nil
}

// Config configures a Relay.
type Config struct {
	// Up impairs datagrams from clients to the target.
	Up Link
	// Down impairs datagrams from the target to clients.
	Down Link

	// Seed seeds every random choice of the relay; the same seed and
	// links give the same sequence of decisions in each direction. Zero is
	// a seed like any other: use, say, time.Now().UnixNano() for a
	// different sequence on every run.
	Seed int64

	// ListenAddr is the local UDP address the relay listens on, for
	// clients to send to. Empty means "127.0.0.1:0", a free loopback port.
	ListenAddr string

	// MaxClients bounds the number of upstream sockets, one per client
	// source address. 0 means DefaultMaxClients. Datagrams from clients
	// beyond the bound are dropped and counted in Stats.DroppedClients.
	MaxClients int
}

func (c *Config) validate() error {
	if err := c.Up.validate("Config.Up"); err != nil {
		return err
	}
	if err := c.Down.validate("Config.Down"); err != nil {
		return err
	}
	if c.MaxClients < 0 {
		return fmt.Errorf("kcptuntest: invalid Config.MaxClients %d: must not be negative", c.MaxClients)
	}
	return nil
}
