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
	thinHold          = 500 * time.Millisecond // evidence a thin flow needs to turn FEC on or add parity
	priorHold         = 10 * time.Second       // how long a thin flow's precaution lasts unmeasured
	thinUpMargin      = 1.5                    // a thin flow adds parity only if needed at 1/1.5 of the loss
	thinBurstPkts     = 16                     // packets within a tick that can show a flow is not thin
	thinTicks         = 4                      // ticks a bulk flow must look thin to become thin
	fillTicks         = 2                      // ticks in a row that change whether a flow fills the link
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

	// Thin flows (see thinFlow).
	thin        bool          // the flow is thin
	classified  bool          // thin was decided at least once
	thinShape   bool          // the current shape was chosen by the thin rule
	prior       bool          // the current shape is the precaution, not measured
	priorSpent  bool          // the precaution ran its course unmeasured; not again
	priorSince  time.Duration // when the precaution started
	tickSamples int           // RTT samples in the current tick
	tickAppLim  int           // of those, samples of packets sent app-limited
	thinCount   int           // consecutive ticks a bulk flow looked thin

	// Flows that fill the link (see linkBound).
	filling   bool // most RTT samples of recent ticks were of packets sent with a backlog
	fillCount int  // consecutive ticks with samples that said otherwise
	covered   bool // the largest send window covers a retransmission (windowCovers)
}

// init sets the configuration and starts the thin flow's precaution: until
// the flow shows otherwise, a session is presumed thin, so that its first
// packets (a handshake, a game's first messages and answers) are protected.
func (f *fecState) init(cfg *Config) {
	f.cfg = cfg
	f.thin = true
	f.covered = true // until an estimate says otherwise
	f.startPrior(0, nil)
	f.changes = 0 // the initial shape is no change
}

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
	f.pending, f.prior, f.thinShape = changeNone, false, false
}

// onSend counts a packet sent; steady is false in Startup and Drain, whose
// losses are the queue's overflow, not the path's loss, and do not count.
func (f *fecState) onSend(now time.Duration, steady bool, c *Controller) {
	f.tickPkts++
	if f.thin && f.tickPkts >= thinBurstPkts {
		// More packets since the tick began than a thin flow sends in
		// that time: a bulk flow started. Its parity would cost
		// bandwidth, so the thin shape goes at once.
		el := max(now-f.lastTick, time.Millisecond)
		if float64(f.tickPkts)/el.Seconds() > f.thinRate(c) {
			f.thin, f.classified = false, true
			f.leaveThin(c)
		}
	}
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
	pkts := f.tickPkts
	rate := float64(pkts) / sec
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
	if f.pinned {
		f.tickSamples, f.tickAppLim = 0, 0
		return
	}
	f.classifyFilling()
	f.covered = c == nil || c.windowCovers(f.covered)
	f.classify(pkts, c)
	f.tickSamples, f.tickAppLim = 0, 0
	if f.prior && (f.haveLoss || !f.thin || now-f.priorSince >= priorHold) {
		// The precaution ends: measured loss decides from now on, or
		// the flow is not thin, or nothing measured the path for
		// priorHold (then the flow's own losses will, with FEC off).
		f.prior = false
		f.priorSpent = f.priorSpent || now-f.priorSince >= priorHold
		if !f.haveLoss {
			f.set(fecShape{}, false)
		}
	}
	if !f.haveLoss {
		return
	}
	f.decide(now, c)
}

// onSample counts an RTT sample for the thin-flow test; appLimited says the
// sampled packet left with nothing queued behind it. Such a sample of a
// flow not known to be bulk starts the thin flow's precaution again after
// an idle tick ended it (not after it expired unmeasured: the flow's own
// losses, measured with FEC off, decide then).
func (f *fecState) onSample(now time.Duration, appLimited bool, c *Controller) {
	f.tickSamples++
	if appLimited {
		f.tickAppLim++
	}
	if f.pinned || !appLimited || (f.classified && !f.thin) {
		return
	}
	f.classified, f.thin = true, true
	if !f.on() && !f.haveLoss && !f.priorSpent {
		f.startPrior(now, c)
	}
}

// thinRate is the packet rate below which a flow is thin: its packets
// cannot fill a group of MinDataShards within FECFill of the minimum RTT. A
// thin flow that also sends without a backlog gets groups of one data
// shard (see the package documentation).
func (f *fecState) thinRate(c *Controller) float64 {
	return float64(f.cfg.MinDataShards) / (f.cfg.FECFill * f.rtt(c).Seconds())
}

// rtt is the RTT the shape is chosen for.
func (f *fecState) rtt(c *Controller) time.Duration {
	if c != nil && c.haveRTT {
		return max(c.minRTT, time.Millisecond)
	}
	return defaultRTT
}

// classify decides at the end of a tick whether the flow is thin: it sent
// data in the tick, at most half of its RTT samples were of packets sent
// with a backlog, and its packet rate cannot fill a minimal group in time.
// A tick without samples keeps the classification; an idle tick ends the
// precaution (onSample starts it again when the thin flow sends).
func (f *fecState) classify(pkts int, c *Controller) {
	if pkts == 0 {
		if f.prior {
			f.prior = false
			f.set(fecShape{}, false)
		}
		return
	}
	slow := f.pktRate < f.thinRate(c)
	thin := f.thin
	switch {
	case !slow:
		thin = false
	case f.tickSamples > 0:
		thin = 2*f.tickAppLim >= f.tickSamples
	}
	if thin && !f.thin && f.classified {
		// A flow known to be bulk becomes thin only after thinTicks
		// ticks in a row (a bulk flow's lull must not flap its shape).
		if f.thinCount++; f.thinCount < thinTicks {
			return
		}
	}
	f.thinCount = 0
	if thin == f.thin && f.classified {
		return
	}
	f.thin, f.classified = thin, true
	if !thin {
		f.leaveThin(c)
	} else if f.haveLoss {
		// A measured shape for a thin flow applies at once: it only
		// costs a thin flow's bytes.
		f.set(f.choose(f.loss, f.rtt(c)), true)
	}
}

// classifyFilling decides at the end of a tick whether the flow fills the
// link: more than half of the tick's RTT samples were of packets sent with
// a backlog (queued behind them, or up against the inflight limit). It
// changes its mind after fillTicks ticks in a row that say otherwise; a
// tick without samples changes nothing.
func (f *fecState) classifyFilling() {
	if f.tickSamples == 0 {
		return
	}
	if filling := 2*f.tickAppLim < f.tickSamples; filling == f.filling {
		f.fillCount = 0
		return
	}
	if f.fillCount++; f.fillCount >= fillTicks {
		f.filling, f.fillCount = !f.filling, 0
	}
}

// linkBound says whether parity would cost this flow its goodput: it fills
// the link, so every parity packet takes the place of a data packet at the
// bottleneck, while a re-send takes only the place of the packet that was
// lost; and its largest send window covers a retransmission, so the holes
// re-sends fill hold nothing up. Where the window is too small for that (a
// long fat path: 4096 packets are 2.3 times the BDP at 100 Mbit/s and 200
// ms), parity spares holes that would stall the pipe. A flow that leaves
// the link room (a stream at its own rate, or a sender held back by the
// peer's receive window) pays for parity with room it has.
func (f *fecState) linkBound() bool { return f.filling && f.covered }

// leaveThin replaces a shape chosen for a thin flow by the choice for the
// flow it became, at once: a thin flow's parity is a copy of every packet.
func (f *fecState) leaveThin(c *Controller) {
	f.thin = false
	if !f.thinShape || f.pinned {
		return
	}
	f.prior = false
	var s fecShape
	if f.haveLoss {
		s = f.choose(f.loss, f.rtt(c))
	}
	f.set(s, false)
}

// startPrior turns on the thin flow's precaution: the shape for
// ThinPriorLoss, until loss is measured.
func (f *fecState) startPrior(now time.Duration, c *Controller) {
	f.set(f.choose(f.cfg.ThinPriorLoss, f.rtt(c)), true)
	f.prior, f.priorSince = f.on(), now
}

// set switches to shape s now, counting a change.
func (f *fecState) set(s fecShape, thin bool) {
	if s.parity == 0 {
		s = fecShape{}
	}
	if s.data != f.data || s.parity != f.parity {
		f.changes++
	}
	f.data, f.parity, f.thinShape = s.data, s.parity, thin && s.parity > 0
	f.pending = changeNone
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
	rtt := f.rtt(c)
	want := f.choose(f.loss, rtt)
	if f.thin && f.on() {
		// A thin flow's estimate rests on few packets: more parity only
		// when the loss is well above what the current shape covers.
		if up := f.choose(f.loss/thinUpMargin, rtt); up.parity <= f.parity {
			want = fecShape{f.data, min(want.parity, f.parity)}
		}
	}
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
	if now-f.pendingSince < f.holdOf(kind) {
		return
	}
	f.set(target, f.thin)
}

// holdOf is how long the evidence for a change of kind must hold. A thin
// flow turns FEC on and adds parity quickly: its parity costs little, and
// every loss it does not recover stalls the messages behind it.
func (f *fecState) holdOf(kind int) time.Duration {
	switch kind {
	case changeOn, changeUp:
		if f.thin {
			return thinHold
		}
	}
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

// bulkFECMinRTT is the shortest minimum RTT on which a bulk flow sends
// FEC. On a shorter path KCP re-sends a lost packet within a few tens of
// milliseconds, which the send window covers, so a loss costs the link
// about the packet itself; parity costs its share of the link whether or
// not anything is lost, and a group that fills within a quarter of so
// short an RTT is small, its share large. With FEC pinned off against the
// shapes chosen here, 20 ms paths moved 3-9 % more at 5 and 10 % loss (10
// and 100 Mbit/s); at 50 ms the two were even, at 100 ms FEC moved more.
const bulkFECMinRTT = 30 * time.Millisecond

// choose returns the shape for loss p at the current packet rate and a
// minimum RTT of rtt: for a thin flow one data shard and the parity that
// brings the residual loss under ThinResidualLoss, otherwise a group that
// fills within FECFill of the RTT and parity for ResidualLoss, or none on a
// path shorter than bulkFECMinRTT or for a flow that parity would cost
// goodput (linkBound).
func (f *fecState) choose(p float64, rtt time.Duration) fecShape {
	cfg := f.cfg
	target, d := cfg.ResidualLoss, 1
	if f.thin {
		target = cfg.ThinResidualLoss
	} else {
		if rtt < bulkFECMinRTT || f.linkBound() {
			return fecShape{}
		}
		d = int(f.pktRate * cfg.FECFill * rtt.Seconds())
		d = min(max(d, cfg.MinDataShards), cfg.MaxDataShards)
	}
	if p <= target {
		return fecShape{}
	}
	for m := 1; m <= cfg.MaxParityShards; m++ {
		if residualLoss(p, d, m) <= target {
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
