package adapt

import (
	"math"
	"time"
)

// Tuning constants of the FEC choice.
const (
	fecTick           = 250 * time.Millisecond // how often the shape is reconsidered
	lossHalfLife      = 5 * time.Second        // half-life of the loss counters
	heldHalfLife      = 20 * time.Second       // half-life of a held estimate without measurement
	minLossSamples    = 50                     // packets a loss estimate needs
	minResidualLosses = 3                      // unrecovered losses that say the raw loss persists
	onHold            = 2 * time.Second        // evidence needed to turn FEC on
	upHold            = 3 * time.Second        // ... to add parity
	downHold          = 8 * time.Second        // ... to remove parity or regroup
	offHold           = 10 * time.Second       // ... to turn FEC off
	downMargin        = 1.5                    // less parity only if still enough at 1.5 times the loss
)

// Kinds of a pending FEC change.
const (
	changeNone = iota
	changeOn
	changeUp
	changeDown
	changeOff
	changeRegroup
)

// decayed is a pair of exponentially decayed counters.
type decayed struct{ n, lost float64 }

func (d *decayed) decay(f float64) { d.n *= f; d.lost *= f }

func (d *decayed) rate() float64 {
	if d.n <= 0 {
		return 0
	}
	return min(d.lost/d.n, 1)
}

// fecState chooses the FEC shape.
type fecState struct {
	cfg *Config

	data, parity int  // current shape
	pinned       bool // fixed by PinFEC
	changes      uint64

	lastTick time.Duration
	tickPkts int
	pktRate  float64 // smoothed packets per second

	in       decayed // from OnFECStats: the peer's packets, before recovery
	raw      decayed // our packets while our FEC was off
	residual decayed // our packets while our FEC was on
	loss     float64 // current estimate of the raw loss
	haveLoss bool

	pending      int
	pendingSince time.Duration
}

func (f *fecState) init(cfg *Config) { f.cfg = cfg }

func (f *fecState) start(now time.Duration) { f.lastTick = now }

func (f *fecState) shape() (int, int) {
	if f.parity == 0 {
		return 0, 0
	}
	return f.data, f.parity
}

func (f *fecState) on() bool { return f.data > 0 && f.parity > 0 }

func (f *fecState) pin(data, parity int) {
	if data == 0 || parity == 0 {
		data, parity = 0, 0
	}
	if data != f.data || parity != f.parity {
		f.changes++
	}
	f.data, f.parity, f.pinned = data, parity, true
	f.pending = changeNone
}

// onSend counts a packet sent; steady is false in Startup and Drain, whose
// losses are the queue's overflow, not the path's loss, and do not count.
func (f *fecState) onSend(steady bool) {
	f.tickPkts++
	if !steady {
		return
	}
	if f.on() {
		f.residual.n++
	} else {
		f.raw.n++
	}
}

func (f *fecState) onLoss(lost int, steady bool) {
	if !steady {
		return
	}
	if f.on() {
		f.residual.lost += float64(lost)
	} else {
		f.raw.lost += float64(lost)
	}
}

// sendLoss is the recent loss rate of our packets (after FEC recovery
// when FEC is on).
func (f *fecState) sendLoss() float64 {
	n := f.raw.n + f.residual.n
	if n < minLossSamples {
		return 0
	}
	return (f.raw.lost + f.residual.lost) / n
}

func (f *fecState) onStats(seen, lost int) {
	f.in.n += float64(seen + lost)
	f.in.lost += float64(lost)
}

// tick reconsiders the shape once per fecTick.
func (f *fecState) tick(now time.Duration, c *Controller) {
	dt := now - f.lastTick
	if dt < fecTick {
		return
	}
	f.lastTick = now
	sec := dt.Seconds()
	rate := float64(f.tickPkts) / sec
	f.tickPkts = 0
	if f.pktRate == 0 {
		f.pktRate = rate
	} else {
		w := min(sec, 1.0) // about a one-second average
		f.pktRate += (rate - f.pktRate) * w
	}
	k := math.Exp2(-sec / lossHalfLife.Seconds())
	f.in.decay(k)
	f.raw.decay(k)
	f.residual.decay(k)
	f.estimate(sec)
	if f.pinned || !f.haveLoss {
		return
	}
	f.decide(now, c)
}

// estimate updates the raw loss estimate; see the package documentation
// for the order of its sources.
func (f *fecState) estimate(sec float64) {
	switch {
	case f.in.n >= minLossSamples:
		f.loss, f.haveLoss = f.in.rate(), true
	case f.raw.n >= minLossSamples:
		f.loss, f.haveLoss = f.raw.rate(), true
	case f.haveLoss && f.on():
		f.loss *= math.Exp2(-sec / heldHalfLife.Seconds())
		// The losses FEC did not recover show what the raw loss must
		// be, once there are enough of them to say.
		if f.residual.n >= minLossSamples && f.residual.lost >= minResidualLosses {
			f.loss = max(f.loss, invertResidual(f.residual.rate(), f.data, f.parity))
		}
	}
}

// decide moves the shape towards the one the loss calls for, after the
// evidence held long enough.
func (f *fecState) decide(now time.Duration, c *Controller) {
	rtt := defaultRTT
	if c.haveRTT {
		rtt = c.minRTT
	}
	want := f.choose(f.loss, rtt)
	wd, wp := want.data, want.parity
	kind := changeNone
	var target fecShape
	switch {
	case !f.on() && wp > 0:
		kind, target = changeOn, want
	case !f.on():
	case wp > f.parity:
		kind, target = changeUp, want
	default:
		down := f.choose(f.loss*downMargin, rtt)
		switch {
		case down.parity == 0:
			kind, target = changeOff, down
		case down.parity < f.parity:
			kind, target = changeDown, down
		case wd >= 2*f.data || 2*wd <= f.data:
			kind, target = changeRegroup, want
		}
	}
	if kind == changeNone {
		f.pending = changeNone
		return
	}
	if kind != f.pending {
		f.pending, f.pendingSince = kind, now
		return
	}
	if now-f.pendingSince < holdOf(kind) {
		return
	}
	if target.data != f.data || target.parity != f.parity {
		f.changes++
	}
	f.data, f.parity = target.data, target.parity
	f.pending = changeNone
}

// holdOf is how long the evidence for a change of kind must hold.
func holdOf(kind int) time.Duration {
	switch kind {
	case changeOn:
		return onHold
	case changeUp:
		return upHold
	case changeOff:
		return offHold
	}
	return downHold
}

// fecShape is an FEC shape.
type fecShape struct{ data, parity int }

// choose returns the shape for loss p at the current packet rate and a
// minimum RTT of rtt.
func (f *fecState) choose(p float64, rtt time.Duration) fecShape {
	cfg := f.cfg
	if p <= cfg.ResidualLoss {
		return fecShape{}
	}
	d := int(f.pktRate * cfg.FECFill * rtt.Seconds())
	d = min(max(d, cfg.MinDataShards), cfg.MaxDataShards)
	for m := 1; m <= cfg.MaxParityShards; m++ {
		if residualLoss(p, d, m) <= cfg.ResidualLoss {
			return fecShape{d, m}
		}
	}
	return fecShape{d, cfg.MaxParityShards}
}

// residualLoss returns the probability that a data packet is lost and not
// recovered in a group of d data and m parity packets, each lost
// independently with probability p: it is lost, and at least m of the
// other d+m-1 are too.
func residualLoss(p float64, d, m int) float64 {
	if p <= 0 {
		return 0
	}
	if p >= 1 {
		return 1
	}
	return p * binomialTail(d+m-1, m, p)
}

// binomialTail returns P(X >= k) for X ~ Binomial(n, p).
func binomialTail(n, k int, p float64) float64 {
	if k <= 0 {
		return 1
	}
	if k > n {
		return 0
	}
	q := 1 - p
	term := math.Pow(q, float64(n)) // P(X = 0)
	below := 0.0
	for i := 0; i < k; i++ {
		below += term
		term *= float64(n-i) / float64(i+1) * p / q
	}
	return max(1-below, 0)
}

// invertResidual returns the raw loss p at which a d+m group leaves
// residual loss r.
func invertResidual(r float64, d, m int) float64 {
	lo, hi := 0.0, 0.5
	if residualLoss(hi, d, m) <= r {
		return hi
	}
	for range 40 {
		mid := (lo + hi) / 2
		if residualLoss(mid, d, m) < r {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}
