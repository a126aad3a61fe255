// Package adapt is the adaptive controller of one KCP session: it chooses
// the pacing rate, KCP's send and receive windows and the FEC shape of the
// session's sending direction from what the packet layer measures, so that
// nobody has to tune them by hand.
//
// The controller is pure computation: it starts no goroutine, reads no
// clock and allocates nothing per event. The packet layer reports events
// (OnSend, OnAck, OnLoss, OnReceive, OnReceiveSpan, OnFECStats), each with
// the current time as a time.Duration since any fixed origin of its
// choosing (for example time.Since of the session's start), and reads the
// outputs (PacingRate, WirePacingRate, InflightLimit, SendWindow,
// ReceiveWindow, FEC, State) whenever it needs them. A Controller is not
// safe for concurrent use: the packet layer calls it under the lock that
// guards the session.
//
// # Rate and windows
//
// The sending side follows the model of BBR (Cardwell et al., "BBR:
// Congestion-Based Congestion Control", and the IETF drafts): the
// bottleneck bandwidth is the largest delivery rate measured over the last
// ten round trips, the propagation delay the smallest RTT of the last ten
// seconds, and the controller paces at a gain times the bandwidth:
// 2/ln 2 in Startup until the bandwidth stops growing by 25 % for three
// rounds (or for one round that kept a standing queue at the bottleneck),
// its inverse in Drain until the queue it built is gone, then the
// ProbeBW cycle 1.25, 0.75, 1, 1, 1, 1, 1, 1 (one phase per minimum RTT;
// the probing phase ends once it has sent at its gain for the whole phase,
// has the gain's share more than the bandwidth-delay product in flight, or
// lost a packet, and after three phases at most), with a ProbeRTT
// phase at half the window when the minimum RTT has not been seen for ten
// seconds (a sample within minRTTSlack of it counts as seeing it: the
// peer's ACK hold scatters samples above the minimum). The cruising
// phases (gain 1) pace below the bandwidth while the last round trip
// showed a standing queue of more than an eighth of the minimum RTT (at
// least 5 ms), draining the excess over about two minimum RTTs, at no less
// than 0.8 times the bandwidth: the estimate, a maximum of
// samples, reads a few percent above the path's rate, and cruising at it
// filled the bottleneck's queue up to the inflight limit and held it there,
// which is what a message beside a transfer waited behind.
//
// The bandwidth counts the bytes of KCP's datagrams, without FEC parity.
// When a bulk flow's FEC shape changes, the estimate is rescaled by the
// ratio of the two shapes' wire bytes per data byte, as are the rate
// samples of the round trip after the change, which still measure packets
// sent at the old shape: the bottleneck's rate is what stays the same.
//
// The delivery rate of an ACK is the number of bytes acknowledged since the
// acknowledged packet was sent divided by the time since then, or by the
// time between the sends of that packet and of the newest one acknowledged
// when it left, whichever is longer (so that ACKs a peer held back and
// released together do not read as a burst of delivery), which the
// controller derives from the ACK's RTT sample and a ring of (time,
// delivered, latest send) checkpoints: the packet layer keeps no
// per-packet state for it. A round trip ends when a packet sent after the
// round began is acknowledged (again from the RTT sample).
//
// Random loss does not lower the rate: the estimate is a maximum of
// delivery rates, not a reaction to losses. In ProbeBW the pacing rate
// and the inflight limit are 1/(1-p) of what the estimate gives, p being
// the loss baseline (at most 20 %), so that loss before the bottleneck
// leaves it full (lossCompensation). The controller treats the path
// as congested only when, for three consecutive round trips, even the
// smallest RTT of the round stayed well above the minimum (a standing
// queue) while the delivery rate did not grow, and then cuts its bandwidth
// estimate to 85 % of the recent delivery rate; or when the loss rate of
// two consecutive measurement windows jumped well above its own baseline
// (twice the baseline plus two points), and then cuts it to 85 % of
// itself.
//
// InflightLimit is BBR's congestion window, counted in bytes queued or
// sent and neither acknowledged nor known lost, so that a hole does not
// stall it: the bandwidth times the minimum RTT times a gain (in ProbeBW
// the phase's pacing gain, at least 1.1, so that mostly the probing phase
// builds a queue; 1.75 in Startup and Drain), plus the bandwidth times the
// time the peer holds its ACKs: the longest time between two of its ACKs
// over the last ten round trips, at most the ACK delay configured (a kcp-go
// peer flushes its ACKs on a timer, but also as soon as a packet's worth
// wait, every 6 ms at 100 Mbit/s; covering its whole 30 ms interval kept a
// standing queue of most of it at the bottleneck, which delayed everything
// behind it and left two flows sharing a link anywhere from 13/87 to
// 78/22; ackHold). Where the configured delay exceeds twice the minimum RTT
// (loopback, a LAN), the excess is most of the round trip a window sees:
// the probing phase's limit takes it times the gain as well, and a ProbeBW
// phase lasts the minimum RTT plus the excess, so that probing can raise
// the delivery rate. In Startup it is also at least a slow-start
// window, which starts at InitialWindow packets and grows by every byte
// delivered (doubling each round, as a window-limited round's rate sample
// lags) until a round's smallest RTT shows a queue (HyStart's delay
// increase; the margin grows by the part of the ACK delay that the
// round's samples, all answered in one flush, may hold), at most twice
// the bandwidth-delay product (with the excess ACK delay times two as
// well). The packet layer sets KCP's
// send window after every ACK to the packets KCP has out plus what the
// limit still allows
// (PacedSendWindow), so that KCP lets out no more than that: what it
// sends waits neither in the pacing queue, where KCP's retransmission
// timers would run out, nor in the bottleneck's queue, which would
// overflow.
//
// That window is at most SendWindow, which covers the bandwidth times the
// minimum RTT plus the time a retransmission takes (a smoothed RTT and
// four RTT deviations; two, three or four retransmissions when 0.5 %, 2 %
// or 10 % of our packets are lost, since a retransmission is then lost
// too every few windows), and at least twice the bandwidth-delay product,
// so that a lost packet, which holds KCP's window until its
// retransmission is acknowledged, never stalls the pipe. The receive
// window (ReceiveWindow) is sized the same way from the rate at which data
// arrives, times three, and is at least twice the span the peer's data
// takes at this end (OnReceiveSpan), which shows at once a sender the
// window holds back, so that a sender (ours or an old kcptun peer with a
// fixed window policy) is never capped by it. (The packet layer keeps the
// window from shrinking below the edge it already advertised.)
//
// # FEC
//
// FEC is off while the path is clean. From the measured loss p the
// controller picks the data shards so that a group fills within a quarter
// of the minimum RTT at the current packet rate (at least 2, up to 20 for
// bulk), then the fewest parity shards that bring the residual loss after
// recovery (a binomial tail) under the target (1 % by default). A bulk
// flow on a path whose minimum RTT is under 30 ms sends no FEC: there a
// re-send costs less than parity. Nor does a flow that fills the link
// (most of its RTT samples are of packets sent with a backlog) while the
// largest send window covers the minimum RTT and a retransmission: each
// parity packet takes a data packet's place at the bottleneck, a re-send
// only the place of the packet that was lost, and the window keeps the
// pipe full while holes wait. A flow at its own rate, or held back by the
// peer's receive window, keeps its parity. It changes the shape only after
// the evidence held for seconds: 2 s to turn on, 3 s for more parity, 8 s
// for less or a new group size, 10 s of a clean path to turn off.
//
// A thin flow is one whose packets cannot fill a group of two within a
// quarter of the minimum RTT (below 200 packets a second at 40 ms) and
// whose RTT samples are mostly of packets sent with nothing queued behind
// them: a game's or a remote shell's messages. A loss it does not recover
// holds every message behind it for a retransmission (an RTO, 100 ms or
// more), while its parity costs it little in absolute bytes. So a thin flow
// gets groups of one data shard, whose parity shards are copies of it and
// leave with it (nothing waits for a group to fill), and as many as bring
// the residual loss under ThinResidualLoss (1e-4: 1+1 below 1 % loss, 1+2
// up to 4 %, 1+3 up to 10 %); it turns FEC on and adds parity after 0.5 s of
// evidence, and adds parity only when the loss is 1.5 times what its shape
// covers (its estimate rests on few packets). Every session starts as a
// thin flow with the shape for ThinPriorLoss (5 %: 1+3), so that its first
// packets are protected before anything is measured; the precaution ends
// when loss is measured (the measured shape applies), after a tick in which
// the session sent no data, when the flow shows it is not thin (more
// packets in part of a tick than a thin flow sends: a bulk flow drops it
// within its first 16 packets), or after 10 s without a measurement (the
// flow's own losses, measured with FEC off, decide from then on). A flow
// that stops being thin gets the bulk rule's shape at once; a bulk flow
// becomes thin (and gets the thin rule's shape) only after it looked thin
// for four ticks in a row, so that a lull does not flap its shape.
//
// Losses while the rate model is in Startup or Drain, or while the latest
// RTT sample shows a queue at the bottleneck, are a queue's overflow, not
// the path's random loss: they count neither for FEC nor for the send
// window's cover.
//
// The loss p comes, in order of preference, from the FEC sequence-number
// gaps of the packets the peer sends us (OnFECStats: not hidden by
// recovery, and the path is usually lossy both ways alike; it is what
// measures the path while our own FEC hides our losses; the packet layer
// feeds it while WantsPeerLoss, for thin flows), from the
// losses of our own packets while our FEC is off (OnLoss over OnSend), and
// otherwise, while our FEC is on and the peer sends no FEC, from the
// estimate held when it turned on, decaying slowly unless the residual loss
// shows it is still needed.
package adapt

import (
	"math"
	"slices"
	"time"
)

// Mode is the phase of the controller's rate model.
type Mode uint8

// The modes of the rate model, as in BBR.
const (
	// ModeStartup doubles the sending rate every round trip until the
	// delivery rate stops growing.
	ModeStartup Mode = iota
	// ModeDrain empties the queue Startup built at the bottleneck.
	ModeDrain
	// ModeProbeBW cruises at the estimated bandwidth, probing for more
	// one round trip in eight.
	ModeProbeBW
	// ModeProbeRTT lowers the window for at least 200 ms to measure the
	// path's minimum RTT again.
	ModeProbeRTT
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case ModeStartup:
		return "startup"
	case ModeDrain:
		return "drain"
	case ModeProbeBW:
		return "probe-bw"
	case ModeProbeRTT:
		return "probe-rtt"
	}
	return "unknown"
}

// Defaults of Config's fields.
const (
	DefaultMSS              = 1350
	DefaultInitialWindow    = 32
	DefaultMinReceiveWindow = 128
	DefaultMaxWindow        = 32768
	DefaultResidualLoss     = 0.01
	DefaultMinDataShards    = 2
	DefaultMaxDataShards    = 20
	DefaultMaxParityShards  = 8
	DefaultFECFill          = 0.25
	DefaultThinResidualLoss = 1e-4
	DefaultThinPriorLoss    = 0.05
)

// Config are a Controller's fixed parameters. The zero value of each field
// selects its default.
type Config struct {
	// MSS is the size in bytes of a full packet, as counted by OnSend,
	// used before any packet size is known. Default DefaultMSS.
	MSS int
	// InitialWindow is the send window, in packets, before the first
	// bandwidth estimate, and the smallest outside ProbeRTT. Default
	// DefaultInitialWindow.
	InitialWindow int
	// MinReceiveWindow is the smallest receive window, in packets.
	// Default DefaultMinReceiveWindow.
	MinReceiveWindow int
	// MaxWindow bounds both windows, in packets (KCP's window field has
	// 16 bits). Default DefaultMaxWindow.
	MaxWindow int
	// RateLimit caps WirePacingRate in bytes per second; 0 means no cap.
	// SetRateLimit changes it later.
	RateLimit int64
	// ResidualLoss is the loss rate FEC aims to leave after recovery;
	// FEC stays off while the measured loss is below it. Default
	// DefaultResidualLoss.
	ResidualLoss float64
	// MinDataShards and MaxDataShards bound the data shards of an FEC
	// group. Defaults DefaultMinDataShards and DefaultMaxDataShards.
	MinDataShards, MaxDataShards int
	// MaxParityShards bounds the parity shards of an FEC group. Default
	// DefaultMaxParityShards.
	MaxParityShards int
	// FECFill is the fraction of the minimum RTT within which an FEC group
	// should fill at the current packet rate. Default DefaultFECFill.
	FECFill float64
	// ThinResidualLoss is the residual loss FEC aims for on a thin flow
	// (one that sends without a backlog, too few packets to fill a group
	// of MinDataShards within FECFill of the RTT, such as a game's
	// messages), whose groups hold one data shard; FEC stays off while the
	// measured loss is below it. Default DefaultThinResidualLoss.
	ThinResidualLoss float64
	// ThinPriorLoss is the loss a thin flow's FEC assumes until the path's
	// loss is measured. 0 selects DefaultThinPriorLoss; a negative value
	// turns the precaution off.
	ThinPriorLoss float64
	// Seed varies the ProbeBW phase the controller starts in, so that
	// sessions started together do not probe in step.
	Seed uint64
	// AckDelay is the longest time the peer may hold an ACK before
	// sending it (KCP sends ACKs once per flush interval unless told to
	// send them at once). The bandwidth-delay product, and with it the
	// windows and the inflight limit, covers the time the peer is seen to
	// hold its ACKs, at most this (State.AckHold), and an RTT within that
	// hold (and a margin) of the minimum is not taken for a queue.
	// Default 0.
	AckDelay time.Duration
}

func (c *Config) fill() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MSS, DefaultMSS)
	def(&c.InitialWindow, DefaultInitialWindow)
	def(&c.MinReceiveWindow, DefaultMinReceiveWindow)
	def(&c.MaxWindow, DefaultMaxWindow)
	def(&c.MinDataShards, DefaultMinDataShards)
	def(&c.MaxDataShards, DefaultMaxDataShards)
	def(&c.MaxParityShards, DefaultMaxParityShards)
	c.MaxDataShards = max(c.MaxDataShards, c.MinDataShards)
	c.InitialWindow = min(c.InitialWindow, c.MaxWindow)
	c.MinReceiveWindow = min(c.MinReceiveWindow, c.MaxWindow)
	if !(c.ResidualLoss > 0 && c.ResidualLoss < 1) {
		c.ResidualLoss = DefaultResidualLoss
	}
	if !(c.FECFill > 0 && c.FECFill <= 4) {
		c.FECFill = DefaultFECFill
	}
	if !(c.ThinResidualLoss > 0 && c.ThinResidualLoss < 1) {
		c.ThinResidualLoss = DefaultThinResidualLoss
	}
	switch {
	case c.ThinPriorLoss == 0 || c.ThinPriorLoss >= 1 || math.IsNaN(c.ThinPriorLoss):
		c.ThinPriorLoss = DefaultThinPriorLoss
	case c.ThinPriorLoss < 0:
		c.ThinPriorLoss = 0
	}
	c.RateLimit = max(c.RateLimit, 0)
	c.AckDelay = max(c.AckDelay, 0)
}

// Tuning constants of the rate model.
const (
	startupGain = 2.885 // 2/ln 2: doubles the delivery rate per round
	drainGain   = 1 / startupGain
	probeGain   = 1.25
	cwndGain    = 2.0
	// startupInflightGain bounds what is in flight (InflightLimit) in
	// Startup and Drain, in minimum RTTs of the bandwidth: room for the
	// delivery rate to grow by three quarters each round. With room for
	// half more, 10 % loss over 200 ms held the growth below the quarter
	// per round that keeps Startup going, and Startup ended at a twentieth
	// of the path's rate, which ProbeBW's probes, one round in eight, took
	// tens of seconds to win back. BBR's 2 let a late-coming flow's Startup
	// crowd out the flow it joined (TestSimSharing at 100 ms).
	startupInflightGain = 1.75
	// cruiseInflightGain is the least gain of InflightLimit in ProbeBW:
	// room for the delivery rate to show a little more than the estimate
	// when ACKs come late (a busy host), without a standing queue.
	cruiseInflightGain = 1.1
	minCruiseGain      = 0.8                    // the least pacing gain of a cruising phase that drains a queue
	bwRounds           = 10                     // rounds of the bandwidth max filter
	minRTTWindow       = 10 * time.Second       // age of the minimum RTT before ProbeRTT
	probeRTTTime       = 200 * time.Millisecond // time ProbeRTT holds the small window
	fullBwGrowth       = 1.25                   // growth per round that keeps Startup going
	fullBwRounds       = 3                      // rounds without it that end Startup
	drainMaxRounds     = 3                      // Drain ends after this many rounds at most
	congestionBeta     = 0.85                   // the cut of the bandwidth estimate on congestion
	queueRounds        = 3                      // rounds with a standing queue that mean congestion
	lossWindowPkts     = 200                    // packets a loss measurement window needs
	lossSpikeWins      = 2                      // consecutive windows of a loss spike that mean congestion
	baselineWindows    = 5                      // windows whose median starts the loss baseline
	defaultRTT         = 100 * time.Millisecond // assumed before any RTT sample
	cpRing             = 256                    // delivered checkpoints kept
	cpFirst            = 16                     // checkpoints room is made for at first
	minCPGap           = 250 * time.Microsecond // finest checkpoint spacing
)

// hystartSamples is how many RTT samples of a round show its smallest RTT:
// a peer that holds its ACKs for up to a flush interval answers the packets
// that arrive just before its flush at once.
const hystartSamples = 8

// hystartMargin is how far above the minimum RTT the smallest RTT of a
// round must be to show a queue that ends slow start: an eighth of the
// minimum RTT, between 4 and 16 ms (HyStart's delay threshold).
func hystartMargin(minRTT time.Duration) time.Duration {
	return min(max(minRTT/8, 4*time.Millisecond), 16*time.Millisecond)
}

// ackBunching is how much of the peer's ACK delay the smallest RTT of the
// current round may still hold: the ACK delay less the time over which
// the round's samples came (from its first to its latest). A peer that
// holds its ACKs for a flush interval answers every packet that arrived
// within the interval at once, so a round whose samples all came in one
// flush (a window sent at once that no bottleneck spread out: loopback, a
// LAN) measured one packet's ACK delay, up to the whole interval, not the
// path's RTT; samples that came over a whole interval include a packet
// that arrived just before a flush. It is at most ackExcess: on a path
// whose own RTT dominates, a window is spread out by the bottleneck and
// HyStart's margin stays as it was.
func (c *Controller) ackBunching() time.Duration {
	return min(max(c.cfg.AckDelay-(c.roundLastRTT-c.roundFirstRTT), 0), c.ackExcess())
}

// ackExcess is how far the peer's ACK delay exceeds twice the minimum RTT:
// zero on a path whose own RTT dominates, nearly the whole ACK delay on
// loopback or a LAN, where a window sent at once is answered at the peer's
// next flush and the round trip is mostly that wait. Probing counts it as
// part of the round trip (its window grows by the gain on it too, and a
// phase lasts it), and so does slow start's cap; elsewhere the ACK delay
// is covered once, not times a gain, so as to queue less.
func (c *Controller) ackExcess() time.Duration {
	return max(c.cfg.AckDelay-2*c.minRTT, 0)
}

// ackHold is how long the peer holds an ACK, which the windows cover beyond
// the minimum RTT: the longest time between two packets with ACKs over the
// last ten round trips, at most the configured AckDelay (which it is until a
// round trip was measured). A kcp-go peer sends its ACKs on every flush, and
// flushes at once when enough ACKs for a packet of them wait (about 55 at
// the usual MTU), so at 100 Mbit/s it holds an ACK for 6 ms, not for its
// whole flush interval; covering the whole interval kept a standing queue of
// most of it at the bottleneck (everything behind it waited that long, and
// two flows sharing a link split it anywhere from 13/87 to 78/22). A packet
// acknowledged by an ACK waited at the peer for no longer than the time
// since the peer's previous ACKs, which is what this measures (longer when
// an ACK was lost or the sender was idle, which errs on the side of the
// larger window). On a lossy path the cover used to rise to the whole
// interval, as the windows counted lost packets in flight until KCP re-sent
// them; the packet layer now takes them out as soon as a later transmission
// is acknowledged (RACK's rule), and the whole interval only kept messages
// beside a transfer at 5 % loss 20-60 ms longer at p99.
func (c *Controller) ackHold() time.Duration {
	if c.rounds == 0 {
		return c.cfg.AckDelay
	}
	return min(c.ackGapMax, c.cfg.AckDelay)
}

// probeCycle is ProbeBW's pacing gain per phase.
var probeCycle = [8]float64{probeGain, 0.75, 1, 1, 1, 1, 1, 1}

// checkpoint is the cumulative delivered byte count at a time, with the
// send time of the newest packet acknowledged by then.
type checkpoint struct {
	at        time.Duration
	delivered int64
	lastSent  time.Duration // -1: no packet with a send time acknowledged yet
}

// Controller is the adaptive controller of one session; see the package
// documentation. Create it with New.
type Controller struct {
	cfg     Config
	started bool
	last    time.Duration // the latest event's time

	// RTT.
	haveRTT      bool
	lastRTT      time.Duration
	minRTT       time.Duration
	minRTTStamp  time.Duration
	srtt, rttvar time.Duration

	// Delivery rate.
	delivered int64
	lastSent  time.Duration // send time of the newest packet acknowledged; -1: none
	cps       []checkpoint  // ring; grows by doubling from cpFirst to cpRing
	cpHead    int           // index of the newest checkpoint
	cpLen     int

	// Rounds and the bandwidth filter.
	rounds          uint64
	roundStart      time.Duration
	roundMax        float64 // largest rate sample of the current round
	roundMinRTT     time.Duration
	lastQueue       time.Duration // the standing queue the last round showed (cruiseGain)
	roundSamples    int           // RTT samples in the current round
	roundFirstRTT   time.Duration // when the round's first RTT sample came
	roundLastRTT    time.Duration // when its latest came
	roundAppLimited bool
	roundAckGap     time.Duration // the longest time between ACKs of the current round
	lastAckAt       time.Duration // when OnAck was last called; -1: never
	ackGapRing      [bwRounds]time.Duration
	ackGapMax       time.Duration // the longest of ackGapRing
	bwRing          [bwRounds]float64
	bwIdx           int
	btlbw           float64 // bytes per second

	// State machine.
	mode          Mode
	modeStart     time.Duration
	modeRound     uint64
	filled        bool
	fullBw        float64
	fullBwCnt     int
	cycleIdx      int
	cycleStart    time.Duration
	phaseLoss     bool
	phaseSent     float64 // bytes sent in the current ProbeBW phase
	probeRTTArmed bool
	probeRTTDone  time.Duration
	probeRTTRound uint64
	pacing        float64 // bytes per second, before FEC and the cap
	inflight      int64
	slowStart     float64 // Startup's window grown by what is delivered, bytes
	slowStartDone bool    // a queue stopped slow start's growth
	appLimited    bool    // the latest RTT sample was of an app-limited packet
	avgPkt        float64 // average packet size of OnSend

	// Congestion detection.
	queueCnt      int
	lastRoundMax  float64
	fecF          float64       // fecFactor when the bandwidth estimate last followed it
	fecK          float64       // the rescale of the latest change of fecF, 0 before any
	fecAt         time.Duration // when that change was made
	winSent       int64
	winLost       int64
	winsSeen      int
	baseInit      [baselineWindows]float64
	baseline      float64
	spikes        int
	congestEvents uint64

	// Counters.
	sentPkts, lostPkts int64

	// Receiving side.
	rcvStart time.Duration
	rcvBytes int64
	rcvRing  [bwRounds]float64
	rcvIdx   int
	rcvRate  float64
	spanRing [bwRounds]int // the peer's largest span of each interval, packets
	spanCur  int           // ... of the current interval
	spanMax  int           // the largest in spanRing and spanCur

	// FEC.
	fec fecState

	// Pins.
	pinSnd, pinRcv int
	rng            uint64
	pacedWnd       int // PacedSendWindow's latest result; 0: never called
}

// New returns a controller with the parameters of cfg (zero fields take
// their defaults).
func New(cfg Config) *Controller {
	cfg.fill()
	c := &Controller{cfg: cfg, rng: cfg.Seed*0x9E3779B97F4A7C15 + 1, avgPkt: float64(cfg.MSS), lastSent: -1, lastAckAt: -1}
	c.slowStart = float64(cfg.InitialWindow * cfg.MSS)
	c.fec.init(&c.cfg)
	c.updatePacing()
	return c
}

// start sets the time origin at the first event, and returns now, or the
// latest time seen if now is earlier (the controller's clock never goes
// back).
func (c *Controller) start(now time.Duration) time.Duration {
	if c.started {
		now = max(now, c.last)
		c.last = now
		return now
	}
	c.started = true
	c.last = now
	c.roundStart = now
	c.modeStart = now
	c.rcvStart = now
	c.cps = make([]checkpoint, cpFirst)
	c.cps[0] = checkpoint{at: now, lastSent: -1}
	c.cpHead, c.cpLen = 0, 1
	c.fec.start(now)
	return now
}

// OnSend records that one packet of bytes bytes (a KCP datagram before FEC
// and encryption, first transmission or retransmission; not FEC parity)
// left, and that inflight bytes (the same unit) are now sent and neither
// acknowledged nor known lost. OnAck and OnLoss lower the controller's copy
// of inflight until the next OnSend.
func (c *Controller) OnSend(now time.Duration, bytes, inflight int) {
	now = c.start(now)
	c.inflight = int64(max(inflight, 0))
	if bytes > 0 {
		c.avgPkt += (float64(bytes) - c.avgPkt) / 16
	}
	c.sentPkts++
	c.winSent++
	c.phaseSent += float64(max(bytes, 0))
	c.fec.onSend(now, c.measuring(), c)
	c.fecTick(now)
}

// OnAck records that the peer acknowledged delivered bytes (of packets
// acknowledged for the first time). rtt is the RTT sample of the
// acknowledged packet (now minus the time its latest transmission left, 0
// when there is none); appLimited says the sender had no data waiting when
// that packet left, so that a low delivery rate is not mistaken for the
// path's.
func (c *Controller) OnAck(now time.Duration, delivered int, rtt time.Duration, appLimited bool) {
	now = c.start(now)
	delivered = max(delivered, 0)
	c.inflight = max(c.inflight-int64(delivered), 0)
	c.delivered += int64(delivered)
	if c.lastAckAt >= 0 {
		c.roundAckGap = max(c.roundAckGap, now-c.lastAckAt)
	}
	c.lastAckAt = now
	if c.mode == ModeStartup && !c.filled && !c.slowStartDone {
		// Slow start, until a queue at the bottleneck shows the pipe
		// full (HyStart's delay increase): a window still doubling then
		// overflows the queue within the round. The estimate's own
		// limit goes on.
		if c.roundSamples >= hystartSamples && c.roundMinRTT > c.minRTT+hystartMargin(c.minRTT)+c.ackBunching() {
			c.slowStartDone = true
		} else {
			c.slowStart += float64(delivered)
		}
	}
	if rtt > 0 {
		c.updateRTT(now, rtt)
		sample := c.rateSample(now, rtt)
		if c.fecK > 0 && now-rtt < c.fecAt+c.srtt {
			// The sample spans packets sent at the shape before the
			// latest change (syncFECFactor).
			sample *= c.fecK
		}
		c.lastSent = max(c.lastSent, now-rtt)
		if now-rtt >= c.roundStart {
			c.endRound(now, appLimited)
		}
		if appLimited {
			c.roundAppLimited = true
		}
		c.appLimited = appLimited
		if sample > 0 && (!appLimited || sample > c.btlbw) {
			c.roundMax = max(c.roundMax, sample)
			c.btlbw = max(c.btlbw, sample)
		}
		if c.roundMinRTT == 0 || rtt < c.roundMinRTT {
			c.roundMinRTT = rtt
		}
		if c.roundSamples == 0 {
			c.roundFirstRTT = now
		}
		c.roundLastRTT = now
		c.roundSamples++
		c.fec.onSample(now, appLimited, c)
	}
	c.addCheckpoint(now)
	c.updateMode(now)
	c.updatePacing()
	c.fecTick(now)
}

// OnLoss records that lost packets were declared lost (the packet layer
// saw KCP retransmit them: fast retransmission or timeout).
func (c *Controller) OnLoss(now time.Duration, lost int) {
	now = c.start(now)
	if lost <= 0 {
		return
	}
	c.lostPkts += int64(lost)
	c.winLost += int64(lost)
	c.inflight = max(c.inflight-int64(float64(lost)*c.avgPkt), 0)
	c.phaseLoss = true
	c.fec.onLoss(lost, c.measuring() && !c.queued())
	c.fecTick(now)
}

// OnReceive records that bytes bytes of KCP data arrived from the peer
// (the receiving side's measurement for ReceiveWindow).
func (c *Controller) OnReceive(now time.Duration, bytes int) {
	now = c.start(now)
	c.rcvBytes += int64(max(bytes, 0))
	iv := max(c.windowRTT(), 10*time.Millisecond)
	if el := now - c.rcvStart; el >= iv {
		c.rcvRing[c.rcvIdx] = float64(c.rcvBytes) / el.Seconds()
		c.spanRing[c.rcvIdx] = c.spanCur
		c.rcvIdx = (c.rcvIdx + 1) % bwRounds
		c.rcvRate, c.spanMax, c.spanCur = 0, 0, 0
		for i, r := range c.rcvRing {
			c.rcvRate = max(c.rcvRate, r)
			c.spanMax = max(c.spanMax, c.spanRing[i])
		}
		c.rcvBytes = 0
		c.rcvStart = now
	}
	c.fecTick(now)
}

// OnReceiveSpan records that the peer's data now spans packets sequence
// numbers at this end: from the next one KCP waits for to the highest one
// that arrived. A sender whose window KCP counts from its oldest
// unacknowledged packet needs that much receive window, and more as it
// grows; ReceiveWindow keeps twice the largest span of the last intervals.
func (c *Controller) OnReceiveSpan(packets int) {
	c.spanCur = max(c.spanCur, packets)
	c.spanMax = max(c.spanMax, packets)
}

// OnFECStats records that, since the last call, seen FEC-framed packets
// arrived from the peer and lost more are missing by their FEC sequence
// numbers (counted before recovery). It is the controller's preferred loss
// measure for choosing the FEC shape.
func (c *Controller) OnFECStats(now time.Duration, seen, lost int) {
	now = c.start(now)
	if seen <= 0 && lost <= 0 {
		return
	}
	c.fec.onStats(max(seen, 0), max(lost, 0))
	c.fecTick(now)
}

// WantsPeerLoss reports whether the packet layer should feed OnFECStats
// now: while the flow is thin, whose own FEC hides its losses, so that only
// the peer's packets measure the path. A bulk flow's FEC keeps to its own
// losses: the peer's counts, around shape changes and stalls, fed back into
// ever more parity.
func (c *Controller) WantsPeerLoss() bool { return c.fec.thin }

// SetRateLimit caps WirePacingRate at bytesPerSecond; 0 removes the cap.
func (c *Controller) SetRateLimit(bytesPerSecond int64) {
	c.cfg.RateLimit = max(bytesPerSecond, 0)
}

// PinWindow fixes SendWindow at snd and ReceiveWindow at rcv packets; a
// value of 0 lets that window adapt again.
func (c *Controller) PinWindow(snd, rcv int) {
	c.pinSnd, c.pinRcv = max(snd, 0), max(rcv, 0)
}

// PinFEC fixes the FEC shape at data+parity shards (0, 0 pins it off).
func (c *Controller) PinFEC(data, parity int) {
	c.fec.pin(max(data, 0), max(parity, 0))
	c.syncFECFactor()
}

// UnpinFEC lets the FEC shape adapt again, starting from the pinned one.
func (c *Controller) UnpinFEC() { c.fec.pinned = false }

// updateRTT feeds an RTT sample to the minimum filter and the smoothed
// estimate.
func (c *Controller) updateRTT(now, rtt time.Duration) {
	c.lastRTT = rtt
	expired := c.haveRTT && now-c.minRTTStamp > minRTTWindow
	switch {
	case !c.haveRTT || rtt <= c.minRTT || expired:
		c.minRTT, c.minRTTStamp = rtt, now
	case rtt <= c.minRTT+minRTTSlack(c.minRTT):
		// The path showed its minimum again, within the noise of the
		// peer's ACK hold: the minimum is not stale, and a ProbeRTT
		// would only idle the link (a lossy link's holes keep KCP's
		// window, counted from the oldest of them, above ProbeRTT's
		// half a BDP, so nothing new leaves until it ends). A path
		// whose RTT grew by more never comes this close, and its
		// minimum expires as before.
		c.minRTTStamp = now
	}
	if !c.haveRTT {
		c.srtt, c.rttvar = rtt, rtt/2
	} else {
		d := c.srtt - rtt
		if d < 0 {
			d = -d
		}
		c.rttvar += (d - c.rttvar) / 4
		c.srtt += (rtt - c.srtt) / 8
	}
	c.haveRTT = true
	if expired && c.mode != ModeProbeRTT && c.mode != ModeStartup {
		c.enter(now, ModeProbeRTT)
		c.probeRTTArmed = false
	}
}

// minRTTSlack is how far above the minimum RTT a sample may be and still
// show the minimum again: a thirty-second of it, at least half a
// millisecond. KCP's timestamps echo the peer's flush, so samples at an
// empty queue scatter above the minimum by up to the peer's ACK hold and
// rarely match it exactly. A minimum kept by such samples is at most this
// much below a path whose RTT grew by less, a BDP off by 3 %.
func minRTTSlack(minRTT time.Duration) time.Duration {
	return max(minRTT/32, 500*time.Microsecond)
}

// cpGap is the spacing of delivered checkpoints.
func (c *Controller) cpGap() time.Duration {
	if !c.haveRTT {
		return minCPGap
	}
	return max(c.minRTT/32, minCPGap)
}

// addCheckpoint records the delivered count at now. The newest checkpoint
// follows every ACK; a new one starts once the newest is cpGap after the one
// before it, so that the ring spans many round trips, and only at a later
// time than the newest's: the newest then holds everything delivered by its
// time. (Freezing it at the first of several ACKs taken at one instant left
// a checkpoint that missed the others, and rate samples measured from it
// counted them as delivered later: a burst of ACKs read as a faster rate.)
//
// The ring starts with room for cpFirst checkpoints and doubles whenever it
// is full, up to cpRing, from where the oldest one makes room: a session
// that exchanged a few messages holds a small one.
func (c *Controller) addCheckpoint(now time.Duration) {
	n := len(c.cps)
	prev := c.cps[(c.cpHead-1+n)%n]
	if head := c.cps[c.cpHead].at; head < now && (c.cpLen == 1 || head-prev.at >= c.cpGap()) {
		if c.cpLen == n && n < cpRing {
			c.growCheckpoints()
			n = len(c.cps)
		}
		c.cpHead = (c.cpHead + 1) % n
		c.cpLen = min(c.cpLen+1, n)
	}
	c.cps[c.cpHead] = checkpoint{at: now, delivered: c.delivered, lastSent: c.lastSent}
}

// growCheckpoints doubles the full ring. The ring fills from index 0 and
// wraps only once it has cpRing entries, so a full ring that grows holds its
// checkpoints in order, the newest last.
func (c *Controller) growCheckpoints() {
	cps := make([]checkpoint, min(2*len(c.cps), cpRing))
	copy(cps, c.cps)
	c.cps = cps
}

// cp returns the i-th oldest checkpoint.
func (c *Controller) cp(i int) checkpoint {
	n := len(c.cps)
	return c.cps[(c.cpHead-c.cpLen+1+i+n)%n]
}

// rateSample returns the delivery rate of the packet acknowledged now,
// sent at now-rtt: the bytes delivered since the newest checkpoint at or
// before the send time, over the longer of two intervals (as in BBR's
// delivery rate estimation): the time since that checkpoint (the ACK
// interval), and the time between the send of the newest packet the
// checkpoint had seen acknowledged and the send of this one (the send
// interval). The ACK interval alone overestimates whenever ACKs bunch up:
// a peer that holds its ACKs for up to a flush interval (KCP's default),
// or ACKs lost and made up for by a later cumulative one, deliver in one
// instant bytes that the path carried over a longer time. The bytes
// delivered between the two sends left no faster than the send interval
// allows, so the longer interval bounds the sample by what both the path
// and the sender did. (Called before the ACK's own checkpoint is added.)
func (c *Controller) rateSample(now, rtt time.Duration) float64 {
	sent := now - rtt
	lo, hi := 0, c.cpLen-1 // binary search for the last checkpoint at or before sent
	if c.cp(lo).at > sent {
		return 0 // older than anything we know
	}
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if c.cp(mid).at <= sent {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	p := c.cp(lo)
	elapsed := now - p.at
	if p.lastSent >= 0 {
		elapsed = max(elapsed, sent-p.lastSent)
	}
	if elapsed <= 0 {
		return 0
	}
	return float64(c.delivered-p.delivered) / elapsed.Seconds()
}

// endRound closes the current round trip at now. endAppLimited says the
// ACK that closes it is of an app-limited packet: as in BBR, the check for
// a full pipe looks at that sample only, since a window-limited sender
// leaves some packets without a backlog in every round.
func (c *Controller) endRound(now time.Duration, endAppLimited bool) {
	c.rounds++
	prevBw := c.btlbw
	completedMax, appLimited, minRTT := c.roundMax, c.roundAppLimited, c.roundMinRTT
	older := slices.Max(c.bwRing[:]) // the largest delivery rate of the rounds before
	c.bwRing[c.bwIdx] = completedMax
	c.bwIdx = (c.bwIdx + 1) % bwRounds
	c.btlbw = slices.Max(c.bwRing[:])
	c.lastQueue = 0
	if minRTT > 0 && c.roundSamples >= hystartSamples {
		c.lastQueue = max(minRTT-c.minRTT, 0)
	}
	c.roundMax, c.roundAppLimited, c.roundMinRTT, c.roundSamples = 0, false, 0, 0
	c.roundStart = now
	c.ackGapRing[c.rounds%bwRounds] = c.roundAckGap
	c.roundAckGap = 0
	c.ackGapMax = slices.Max(c.ackGapRing[:])

	if !c.filled && !endAppLimited {
		// A round that did not grow the rate by a quarter and kept a
		// queue at the bottleneck all along (its smallest RTT well above
		// the minimum) shows the pipe full at once: waiting for two more
		// rounds without growth let the slow-start window overflow the
		// bottleneck's queue each round, and KCP's timers, whose RTT
		// doubled, re-sent thousands of packets that were only late.
		standing := minRTT > 0 && c.haveRTT && minRTT > c.minRTT+c.queueMargin()
		if prevBw >= c.fullBw*fullBwGrowth {
			c.fullBw, c.fullBwCnt = prevBw, 0
		} else if c.fullBwCnt++; c.fullBwCnt >= fullBwRounds || standing {
			c.filled = true
		}
	}
	if c.mode == ModeProbeBW && !appLimited && minRTT > 0 {
		c.checkQueue(now, minRTT, completedMax, older)
	}
	c.lastRoundMax = completedMax
	if c.winSent >= lossWindowPkts {
		c.checkLoss(now)
	}
}

// checkQueue looks for a standing queue that the delivery rate does not
// explain: the smallest RTT of the round well above the minimum while the
// round's delivery rate stays below 1.1 times the largest of the rounds
// before (older).
func (c *Controller) checkQueue(now, roundMinRTT time.Duration, roundMax, older float64) {
	queued := roundMinRTT > c.minRTT+c.queueMargin()
	growing := roundMax > older*1.1
	if !queued || growing {
		c.queueCnt = 0
		return
	}
	if c.queueCnt++; c.queueCnt >= queueRounds {
		c.congestion(now, max(roundMax, c.lastRoundMax))
	}
}

// checkLoss closes a loss measurement window and looks for a loss rate well
// above its baseline.
func (c *Controller) checkLoss(now time.Duration) {
	r := float64(c.winLost) / float64(c.winSent)
	c.winSent, c.winLost = 0, 0
	if c.mode != ModeProbeBW {
		return
	}
	if c.winsSeen < baselineWindows {
		c.baseInit[c.winsSeen] = r
		c.winsSeen++
		if c.winsSeen == baselineWindows {
			c.baseline = median5(c.baseInit)
		}
		return
	}
	spike := 2*c.baseline + 0.02
	// The baseline follows every window, a spike's only up to the spike
	// threshold: following only the windows below it, it settled in the
	// lower tail of a steady loss rate (2 % on a 5 % path), where the
	// windows above it read as spikes.
	c.baseline += (min(r, spike) - c.baseline) / 8
	if r > spike {
		if c.spikes++; c.spikes >= lossSpikeWins {
			c.spikes = 0
			// Cut from the estimate, not from the last round's delivery:
			// a round that waited for a retransmission delivered little
			// without saying anything of the path's rate.
			c.congestion(now, c.btlbw)
		}
		return
	}
	c.spikes = 0
}

// median5 returns the median of five values.
func median5(v [baselineWindows]float64) float64 {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	return v[len(v)/2]
}

// congestion cuts the bandwidth estimate to congestionBeta times rate (or
// the current estimate, if lower) and drains for one phase.
func (c *Controller) congestion(now time.Duration, rate float64) {
	if rate <= 0 || rate > c.btlbw {
		rate = c.btlbw
	}
	target := rate * congestionBeta
	for i := range c.bwRing {
		c.bwRing[i] = min(c.bwRing[i], target)
	}
	c.roundMax = min(c.roundMax, target)
	c.btlbw = target
	c.queueCnt = 0
	c.congestEvents++
	c.cycleIdx, c.cycleStart, c.phaseLoss, c.phaseSent = 1, now, false, 0 // the 0.75 phase
}

// enter switches to mode m at now.
func (c *Controller) enter(now time.Duration, m Mode) {
	c.mode, c.modeStart, c.modeRound = m, now, c.rounds
	if m == ModeProbeBW {
		// Start in a random phase other than the draining one.
		c.rng ^= c.rng << 13
		c.rng ^= c.rng >> 7
		c.rng ^= c.rng << 17
		c.cycleIdx = int(c.rng % 7)
		if c.cycleIdx >= 1 {
			c.cycleIdx++
		}
		c.cycleStart, c.phaseLoss, c.phaseSent = now, false, 0
	}
}

// queueMargin is how far above the minimum RTT a round's smallest sample
// must be to show a standing queue (which ends Startup, or counts towards
// congestion in ProbeBW): a quarter of the minimum RTT, at least 5 ms, and
// the ACK hold the windows cover (ackHold).
func (c *Controller) queueMargin() time.Duration {
	return c.queueSlack() + c.ackHold()
}

// queueSlack is the part of the queue margins beyond the ACK hold: a
// quarter of the minimum RTT, at least 5 ms.
func (c *Controller) queueSlack() time.Duration {
	return max(c.minRTT/4, 5*time.Millisecond)
}

// queued reports whether the latest RTT sample shows a queue at the
// bottleneck, so that a loss now is likely its overflow.
func (c *Controller) queued() bool {
	return c.haveRTT && c.lastRTT > c.minRTT+c.queueMargin()
}

// steady reports whether the rate model is past Startup and Drain, whose
// losses do not measure the path.
func (c *Controller) steady() bool { return c.mode == ModeProbeBW || c.mode == ModeProbeRTT }

// measuring reports whether losses now measure the path: past Startup and
// Drain, or while the sender is application-limited (a game's flow, which
// never fills the pipe and so stays in Startup, builds no queue).
func (c *Controller) measuring() bool { return c.steady() || c.appLimited }

// bdp returns the estimated bandwidth-delay product in bytes, with the
// time the peer holds its ACKs.
func (c *Controller) bdp() float64 {
	if !c.haveRTT {
		return 0
	}
	return c.btlbw * (c.minRTT + c.ackHold()).Seconds()
}

// updateMode advances the state machine after an ACK.
func (c *Controller) updateMode(now time.Duration) {
	switch c.mode {
	case ModeStartup:
		if c.filled {
			c.enter(now, ModeDrain)
		}
	case ModeDrain:
		if float64(c.inflight) <= c.bdp() || c.rounds-c.modeRound >= drainMaxRounds {
			c.enter(now, ModeProbeBW)
		}
	case ModeProbeBW:
		c.advanceCycle(now)
	case ModeProbeRTT:
		target := c.probeRTTWindowBytes()
		if !c.probeRTTArmed && (float64(c.inflight) <= target || now-c.modeStart > 2*c.minRTT+probeRTTTime) {
			c.probeRTTArmed = true
			c.probeRTTDone = now + probeRTTTime
			c.probeRTTRound = c.rounds
		}
		if c.probeRTTArmed && now >= c.probeRTTDone && c.rounds > c.probeRTTRound {
			c.minRTTStamp = now
			if c.filled {
				c.enter(now, ModeProbeBW)
			} else {
				c.enter(now, ModeStartup)
			}
		}
	}
}

// advanceCycle moves ProbeBW to its next phase when the current one is
// done.
func (c *Controller) advanceCycle(now time.Duration) {
	g := probeCycle[c.cycleIdx]
	el := now - c.cycleStart
	// A phase lasts a round trip: where the peer's ACK delay makes most
	// of it, a phase of the minimum RTT would end before the ACKs that
	// show its effect.
	phase := c.minRTT + c.ackExcess()
	full := el > phase
	inflight := float64(c.inflight)
	next := false
	switch {
	case g > 1:
		// The probe is done once it lost a packet, filled its share of
		// InflightLimit (g times the path's share; the ACK hold is
		// covered once, not g times), or sent at its gain for the
		// whole phase. The last is what ends a probe that loses
		// nothing: the packet layer lets out a little less than the
		// limit (KCP's window moves by a sixteenth), so inflight never
		// reached the target, and such a probe ran for three phases
		// and queued three times what it should.
		sentAll := c.phaseSent >= g*c.btlbw*phase.Seconds()
		next = full && (c.phaseLoss || inflight >= c.inflightFor(g) || sentAll || el > 3*phase)
	case g < 1:
		next = full
	default:
		next = full
	}
	if next {
		c.cycleIdx = (c.cycleIdx + 1) % len(probeCycle)
		c.cycleStart, c.phaseLoss, c.phaseSent = now, false, 0
	}
}

// gain returns the current pacing gain.
func (c *Controller) gain() float64 {
	switch c.mode {
	case ModeStartup:
		return startupGain
	case ModeDrain:
		return drainGain
	case ModeProbeBW:
		if g := probeCycle[c.cycleIdx]; g != 1 {
			return g
		}
		return c.cruiseGain()
	}
	return 1
}

// cruiseGain is the pacing gain of ProbeBW's cruising phases: 1, or less
// while the last round trip showed a standing queue (its smallest RTT above
// the minimum) of more than queueTarget, so as to drain the excess over
// about two minimum RTTs, at least minCruiseGain. The bandwidth estimate,
// the largest of ten rounds' samples, reads a few percent above the path's
// rate (ACKs that came in a bunch; a window of FEC-rebuilt packets, which
// took no room at the bottleneck): cruising at it filled the queue up to
// InflightLimit and held it there.
func (c *Controller) cruiseGain() float64 {
	excess := c.lastQueue - c.queueTarget()
	if excess <= 0 || !c.haveRTT {
		return 1
	}
	return max(1-excess.Seconds()/(2*max(c.minRTT, time.Millisecond).Seconds()), minCruiseGain)
}

// queueTarget is the standing queue cruising leaves alone: an eighth of the
// minimum RTT, at least 5 ms. It keeps the pipe full across an ACK that
// comes late.
func (c *Controller) queueTarget() time.Duration {
	return max(c.minRTT/8, 5*time.Millisecond)
}

// updatePacing recomputes the pacing rate.
func (c *Controller) updatePacing() {
	r := c.gain() * c.btlbw
	if c.btlbw == 0 {
		rtt := defaultRTT
		if c.haveRTT {
			rtt = max(c.minRTT, time.Millisecond)
		}
		r = startupGain * float64(c.cfg.InitialWindow*c.cfg.MSS) / rtt.Seconds()
	}
	if c.mode == ModeStartup && !c.filled {
		r = max(r, c.pacing) // Startup never slows down
	}
	if c.mode == ModeProbeBW {
		r *= c.lossCompensation()
	}
	c.pacing = r
}

// maxCompensatedLoss bounds the loss rate lossCompensation makes up for.
const maxCompensatedLoss = 0.2

// lossCompensation is what ProbeBW multiplies its pacing rate and inflight
// limit by so that the link stays full through its usual random loss (the
// loss baseline, at most maxCompensatedLoss): 1/(1-p). The bandwidth
// estimate is the rate the bottleneck delivers. Where packets are lost
// before it (a lossy access link in front of a congested hop), sending at
// that rate left the bottleneck a fraction p short of full, and a packet
// lost there stays in flight until it is known lost, so the inflight limit
// fell short by as much. Where they are lost after it, the delivery rate
// is already the bottleneck's rate times 1-p, and 1/(1-p) of it fills the
// bottleneck exactly. FEC recovers what it can before the baseline counts
// a loss, so parity and this compensation do not add up.
func (c *Controller) lossCompensation() float64 {
	return 1 / (1 - min(c.baseline, maxCompensatedLoss))
}

// fecTick lets the FEC choice reconsider its shape, and keeps the bandwidth
// estimate in step with the shape it chose.
func (c *Controller) fecTick(now time.Duration) {
	c.fec.tick(now, c)
	c.syncFECFactor()
}

// syncFECFactor rescales the bandwidth estimate when a bulk flow's FEC
// shape changed its wire bytes per data byte (fecFactor) from old to f:
// the estimate counts data bytes, and the bottleneck carries data and
// parity, so what it delivered at the old shape is worth old/f as much data
// at the new one. Without it, FEC turning on paced data and parity at the
// rate measured for the data alone (a fifth above the path's rate for
// 10+2) until ten round trips had passed. The precaution of a thin flow
// (its first packets' copies) and its end are not rescaled: a thin flow's
// estimate does not measure the path, and Startup's own samples follow.
func (c *Controller) syncFECFactor() {
	f := c.fecFactor()
	old := c.fecF
	if f == old {
		return
	}
	c.fecF = f
	if old == 0 || !c.steady() || c.fec.thin {
		return
	}
	k := old / f
	c.fecK, c.fecAt = k, c.last
	for i := range c.bwRing {
		c.bwRing[i] *= k
	}
	c.btlbw *= k
	c.roundMax *= k
	c.lastRoundMax *= k
	c.updatePacing()
}

// fecFactor is the wire bytes per data byte of the current FEC shape.
func (c *Controller) fecFactor() float64 {
	d, p := c.fec.shape()
	if d == 0 || p == 0 {
		return 1
	}
	return float64(d+p) / float64(d)
}

// PacingRate returns the rate in bytes per second at which KCP datagrams
// (the unit of OnSend, before FEC parity and encryption) should leave,
// within the rate limit.
func (c *Controller) PacingRate() int64 {
	r := c.pacing
	if lim := float64(c.cfg.RateLimit); lim > 0 {
		r = min(r, lim/c.fecFactor())
	}
	return int64(math.Ceil(r))
}

// WirePacingRate returns PacingRate with the current FEC shape's parity
// added: the rate for a pacing queue that carries parity too. It is at most
// the rate limit.
func (c *Controller) WirePacingRate() int64 {
	r := float64(c.PacingRate()) * c.fecFactor()
	if lim := c.cfg.RateLimit; lim > 0 {
		r = min(r, float64(lim))
	}
	return int64(math.Ceil(r))
}

// retransTime is the time a retransmission takes to be acknowledged: a
// smoothed RTT and four deviations.
func (c *Controller) retransTime() time.Duration {
	if !c.haveRTT {
		return defaultRTT
	}
	return max(c.srtt, c.minRTT) + 4*c.rttvar
}

// TimeoutMargin is how much longer than the RTT it measures KCP's
// retransmission timer should wait (see the packet layer's timeoutHint):
// KCP adds only the larger of its flush interval and four RTT deviations
// to its smoothed RTT, which a queue that grows within a round trip
// outruns (by a quarter of the minimum RTT while probing for bandwidth,
// plus what one flush hands the pacing queue at once; by up to a whole
// minimum RTT in Startup and Drain), and then KCP re-sends everything in
// flight at once.
func (c *Controller) TimeoutMargin() time.Duration {
	if !c.haveRTT {
		return c.cfg.AckDelay
	}
	if c.mode == ModeStartup || c.mode == ModeDrain {
		// Slow start's last round doubles what is in flight, and the
		// bottleneck's queue can then add up to a whole minimum RTT
		// within one round trip.
		return c.minRTT + c.cfg.AckDelay
	}
	return c.minRTT/4 + c.cfg.AckDelay
}

// retransRounds is how many transmissions of one packet the send window
// covers: on a lossy path a retransmission is itself lost often enough (at
// 5 % loss, about twice per window of 700 packets) that covering one would
// still stall the pipe.
func (c *Controller) retransRounds() int {
	switch l := c.fec.sendLoss(); {
	case l >= 0.1:
		return 4
	case l >= 0.02:
		return 3
	case l >= 0.005:
		return 2
	}
	return 1
}

// windowRTT is the RTT the receive window assumes.
func (c *Controller) windowRTT() time.Duration {
	if !c.haveRTT {
		return defaultRTT
	}
	return max(c.srtt, c.minRTT)
}

// probeRTTWindowBytes is ProbeRTT's window: half the BDP, at least four
// packets.
func (c *Controller) probeRTTWindowBytes() float64 {
	return max(c.bdp()/2, float64(4*c.cfg.MSS))
}

// packets converts bytes to whole packets of mss bytes within [lo, hi].
func packets(bytes float64, mss, lo, hi int) int {
	if mss <= 0 {
		mss = DefaultMSS
	}
	n := math.Ceil(bytes / float64(mss))
	if n > float64(hi) {
		return hi
	}
	return max(int(n), lo)
}

// InflightLimit returns the most bytes (the unit of OnSend) that should be
// queued or in flight, neither acknowledged nor known lost: the bandwidth
// times the minimum RTT times the mode's gain (in ProbeBW the phase's
// pacing gain, at least cruiseInflightGain; startupInflightGain in Startup
// and Drain), plus the bandwidth times the peer's ACK hold (ackHold; half the
// bandwidth-delay product in ProbeRTT; in ProbeBW's probing phase also the
// gain less one times the bandwidth times ackExcess), and two
// packets, at least six; or
// InitialWindow packets before the first estimate. In Startup it is also
// at least the slow-start window (InitialWindow packets plus every byte
// delivered in Startup, so that it doubles each round whatever the rate
// samples say), up to cwndGain times the bandwidth-delay product, until a
// round shows a queue: a window-limited round's rate sample spans more
// than the minimum RTT (the ACK delay, the burst), so the estimate alone
// grew the limit by less than half each round. (A cap of 2/ln 2, BBR's,
// overflowed a queue of one bandwidth-delay product on a 10 Mbit/s, 200
// ms path by half before the queue showed, a round later.) It is BBR's
// congestion window; unlike KCP's
// send window it does not count lost packets, so a hole never stalls it.
// The packet layer applies it through KCP's send window
// (PacedSendWindow).
func (c *Controller) InflightLimit() int64 {
	mss := float64(c.cfg.MSS)
	if c.btlbw == 0 || !c.haveRTT {
		return int64(c.cfg.InitialWindow) * int64(c.cfg.MSS)
	}
	var b float64
	switch c.mode {
	case ModeProbeRTT:
		b = c.probeRTTWindowBytes()
	case ModeStartup:
		b = c.inflightFor(startupInflightGain)
		if !c.slowStartDone {
			b = max(b, min(c.slowStart, c.inflightFor(cwndGain)+(cwndGain-1)*c.btlbw*c.ackExcess().Seconds()))
		}
	case ModeDrain:
		b = c.inflightFor(startupInflightGain)
	default:
		g := probeCycle[c.cycleIdx]
		b = c.inflightFor(max(g, cruiseInflightGain)) * c.lossCompensation() // a queue mostly while probing
		if g > 1 {
			// Probing must be able to raise the delivery rate by g even
			// where the peer's ACK delay, not the path, makes most of
			// the round trip (loopback, a LAN).
			b += (g - 1) * c.btlbw * c.ackExcess().Seconds()
		}
	}
	return int64(max(b, 4*mss) + 2*mss)
}

// inflightFor is g times the bandwidth times the minimum RTT, plus the
// bandwidth times the time the peer holds its ACKs (ackHold): the bytes
// that arrived but wait for their ACK need cover once, not g times.
func (c *Controller) inflightFor(g float64) float64 {
	if !c.haveRTT {
		return 0
	}
	return c.btlbw * (g*c.minRTT.Seconds() + c.ackHold().Seconds())
}

// SendWindow returns the largest send window in packets of mss bytes: the
// pinned value, or a window that covers the bandwidth times the minimum RTT
// plus the time KCP takes to re-send a packet (a retransmission's time and
// TimeoutMargin, once or more often on a lossy path), and the mode's gain
// times the bandwidth-delay product. Unless pinned, the window KCP gets is
// PacedSendWindow, which this bounds.
func (c *Controller) SendWindow(mss int) int {
	if c.pinSnd > 0 {
		return c.pinSnd
	}
	hi := c.cfg.MaxWindow
	if c.btlbw == 0 || !c.haveRTT {
		return c.cfg.InitialWindow
	}
	bdp := c.bdp()
	if c.mode == ModeProbeRTT {
		return packets(c.probeRTTWindowBytes(), mss, 4, hi)
	}
	g := cwndGain
	if c.mode == ModeStartup || c.mode == ModeDrain {
		g = startupGain
	}
	cover := c.recoveryCover(c.retransRounds())
	if c.mode == ModeStartup {
		// Slow start's window runs ahead of the estimate; its holes
		// need room beyond it as much.
		cover = max(cover, 2*c.slowStart)
	}
	return min(packets(max(g*bdp, cover), mss, c.cfg.InitialWindow, hi)+2, hi)
}

// recoveryCover is the bytes the send window must span so that a packet
// re-sent up to rounds times holds up nothing: the bandwidth times the
// minimum RTT and that many retransmissions. KCP waits its timeout, which
// timeoutHint lengthens by TimeoutMargin, before it re-sends a re-send
// that was lost again.
func (c *Controller) recoveryCover(rounds int) float64 {
	return c.btlbw * (c.minRTT + time.Duration(rounds)*(c.retransTime()+c.TimeoutMargin())).Seconds()
}

// windowCovers says whether the largest send window (Config.MaxWindow)
// covers the bandwidth times the minimum RTT and one retransmission's
// time (recoveryCover), so that a hole waiting for its re-send holds the
// pipe up only when that re-send is lost too. The bandwidth is the one the
// link would carry as data with FEC off (the estimate times fecFactor), so
// that the answer does not follow the shape it decides; once no, it is yes
// again only below coverHysteresis of the window. Without an estimate it is
// yes.
func (c *Controller) windowCovers(before bool) bool {
	if c.btlbw == 0 || !c.haveRTT {
		return true
	}
	need := c.recoveryCover(1) * c.fecFactor()
	limit := float64(c.cfg.MaxWindow * c.cfg.MSS)
	if !before {
		limit *= coverHysteresis
	}
	return need <= limit
}

// coverHysteresis is the share of the largest window that must cover a
// flow's recovery before windowCovers says yes again after a no.
const coverHysteresis = 0.8

// PacedSendWindow returns KCP's send window in packets of mss bytes for a
// sender whose window now spans span packets (from the oldest packet the
// peer has not acknowledged cumulatively to the next new one) of which
// inflight bytes are in flight and queued bytes wait in the pacing queue
// (neither acknowledged nor declared lost): the span plus the packets
// InflightLimit still allows and the pacing queue has room for (see
// QueueBudget), at most SendWindow. KCP counts its window from the oldest
// unacknowledged packet, so this lets new data out only as far as BBR's
// congestion window allows while a hole waits for its retransmission,
// instead of letting the whole of SendWindow out at once: what KCP sends
// then waits neither in the pacing queue (where KCP's retransmission
// timers would run out) nor in the bottleneck's queue (which would
// overflow). A pinned window is returned as it is. The result is what
// State reports as SendWindow until the next call.
func (c *Controller) PacedSendWindow(mss, span int, inflight, queued int64) int {
	cover := c.SendWindow(mss)
	if c.pinSnd > 0 {
		return cover
	}
	if mss <= 0 {
		mss = DefaultMSS
	}
	inflight, queued = max(inflight, 0), max(queued, 0)
	room := max(min(c.InflightLimit()-inflight-queued, c.QueueBudget()-queued), 0)
	w := max(span, 0) + int((room+int64(mss)-1)/int64(mss))
	c.pacedWnd = min(max(w, 1), cover)
	return c.pacedWnd
}

// queueTime is how long the pacing queue may take to send what KCP's send
// window lets into it (see QueueBudget).
const queueTime = 10 * time.Millisecond

// QueueBudget is the most bytes (the unit of OnSend) the pacing queue
// should hold: what the pacing rate sends while the peer holds its ACKs
// (ackHold: KCP hands over new data when ACKs come, and the window opens by
// a flush's worth of ACKs at once) and queueTime more; where TimeoutMargin
// leaves room, what it sends in two ACK holds and queueTime, since a lost
// datagram of ACKs doubles the wait for the next.
// KCP starts a packet's retransmission timer when the packet enters the
// queue, so a queue that takes longer to send than the timer's margin over
// the RTT (a window that opened by hundreds of packets when a hole was
// filled, sent at the rate of a bandwidth estimate that dropped meanwhile)
// makes KCP time out and re-send what has not even left.
//
// A budget of one ACK hold left the link idle whenever an ACK datagram
// was lost: at 10 Mbit/s, 200 ms and 5 % loss, the bottleneck carried less
// than 9 Mbit/s in two of every five 100 ms intervals, and the transfer
// moved 8.3-8.5 Mbit/s against 9.1-9.2 with the second hold.
func (c *Controller) QueueBudget() int64 {
	t := c.ackHold() + queueTime
	if c.haveRTT {
		t = max(t, min(2*c.ackHold()+queueTime, c.TimeoutMargin()))
	}
	b := float64(c.PacingRate()) * t.Seconds()
	return max(int64(b), 4*int64(c.cfg.MSS))
}

// ReceiveWindow returns the receive window to advertise, in packets of mss
// bytes: the pinned value, or three times the rate at which data arrives
// times the RTT plus a retransmission's time, and at least twice the
// largest span the peer's data took over the last ten intervals
// (OnReceiveSpan), at least MinReceiveWindow. The rate lags a sender in
// slow start by a round trip or two; the span shows at once a sender
// that the window holds back, and doubling it leaves room for a round of
// growth.
func (c *Controller) ReceiveWindow(mss int) int {
	if c.pinRcv > 0 {
		return c.pinRcv
	}
	b := 3 * c.rcvRate * (c.windowRTT() + c.retransTime()).Seconds()
	return min(max(packets(b, mss, c.cfg.MinReceiveWindow, c.cfg.MaxWindow), 2*c.spanMax), c.cfg.MaxWindow)
}

// FEC returns the FEC shape for the packets sent from now on: data and
// parity shards, or 0, 0 for no FEC.
func (c *Controller) FEC() (data, parity int) { return c.fec.shape() }

// State is a snapshot of a controller, for per-session statistics.
type State struct {
	// Mode is the rate model's phase.
	Mode Mode
	// Bandwidth is the estimated bottleneck bandwidth, in bytes per
	// second of KCP data (the largest delivery rate of the last ten round
	// trips); 0 before the first measurement.
	Bandwidth int64
	// MinRTT is the smallest RTT sample of the last ten seconds; 0 before
	// the first sample.
	MinRTT time.Duration
	// SmoothedRTT is the smoothed RTT (RFC 6298 weights); 0 before the
	// first sample.
	SmoothedRTT time.Duration
	// AckHold is the time the windows cover beyond the minimum RTT for
	// the peer's holding of its ACKs: on a clean path the longest time
	// between two of its ACKs over the last ten round trips, on a path
	// with 4 % loss or more Config.AckDelay (which it also is until the
	// first round trip ends), and in between a mix of the two.
	AckHold time.Duration
	// PacingRate is PacingRate(): bytes per second of KCP data.
	PacingRate int64
	// WirePacingRate is WirePacingRate(): PacingRate with FEC parity.
	WirePacingRate int64
	// PacingGain is the current multiplier of Bandwidth.
	PacingGain float64
	// SendWindow and ReceiveWindow are the windows, in packets of the
	// configured MSS.
	SendWindow, ReceiveWindow int
	// InflightLimit is InflightLimit(), in bytes.
	InflightLimit int64
	// ReceiveRate is the largest rate at which data arrived over the
	// last ten intervals of one RTT, in bytes per second.
	ReceiveRate int64
	// DataShards and ParityShards are the FEC shape (0, 0 when off).
	DataShards, ParityShards int
	// Loss is the estimated loss rate of the path before FEC recovery,
	// 0 to 1, that chooses the FEC shape.
	Loss float64
	// LinkBound says the flow fills the link and the largest send window
	// covers the minimum RTT and a retransmission, so it sends no FEC
	// whatever the loss (see the package documentation).
	LinkBound bool
	// LossBaseline is the usual loss rate of our packets, which only a
	// jump well above counts as congestion.
	LossBaseline float64
	// PacketRate is the smoothed rate of packets sent per second.
	PacketRate float64
	// Rounds counts the round trips measured.
	Rounds uint64
	// CongestionEvents counts the cuts of the bandwidth estimate.
	CongestionEvents uint64
	// FECChanges counts the changes of FEC shape.
	FECChanges uint64
	// SentPackets and LostPackets count OnSend's packets and OnLoss's.
	SentPackets, LostPackets int64
	// WindowPinned and FECPinned say whether PinWindow or PinFEC fixed
	// those outputs.
	WindowPinned, FECPinned bool
}

// stateSendWindow is the send window State reports: PacedSendWindow's
// latest result, or SendWindow when it was never called or is pinned.
func (c *Controller) stateSendWindow() int {
	if c.pacedWnd > 0 && c.pinSnd == 0 {
		return c.pacedWnd
	}
	return c.SendWindow(c.cfg.MSS)
}

// State returns a snapshot of the controller.
func (c *Controller) State() State {
	d, p := c.fec.shape()
	var rtt, srtt time.Duration
	if c.haveRTT {
		rtt, srtt = c.minRTT, c.srtt
	}
	return State{
		Mode:             c.mode,
		Bandwidth:        int64(c.btlbw),
		MinRTT:           rtt,
		SmoothedRTT:      srtt,
		AckHold:          c.ackHold(),
		PacingRate:       c.PacingRate(),
		WirePacingRate:   c.WirePacingRate(),
		PacingGain:       c.gain(),
		SendWindow:       c.stateSendWindow(),
		ReceiveWindow:    c.ReceiveWindow(c.cfg.MSS),
		InflightLimit:    c.InflightLimit(),
		ReceiveRate:      int64(c.rcvRate),
		DataShards:       d,
		ParityShards:     p,
		Loss:             c.fec.loss,
		LinkBound:        c.fec.linkBound(),
		LossBaseline:     c.baseline,
		PacketRate:       c.fec.pktRate,
		Rounds:           c.rounds,
		CongestionEvents: c.congestEvents,
		FECChanges:       c.fec.changes,
		SentPackets:      c.sentPkts,
		LostPackets:      c.lostPkts,
		WindowPinned:     c.pinSnd > 0 || c.pinRcv > 0,
		FECPinned:        c.fec.pinned,
	}
}
