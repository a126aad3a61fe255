package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/loadserver"
	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// The workloads Run can measure.
const (
	// Bulk sends incompressible bytes one way, client to server, for the
	// whole duration; goodput is measured at the receiver over the last two
	// thirds, after start-up.
	Bulk = "bulk"
	// RR sends a 64-byte request every 20 ms (50 Hz) on one connection and
	// times each echoed response.
	RR = "rr"
	// Conns opens up to 100 connections one after the other, each carrying
	// one 64-byte request and its response, and times each from dial to
	// response.
	Conns = "conns"
	// Loaded runs Bulk on one connection and, after the bulk's start-up
	// (the first third of the duration), the RR pattern on a second
	// connection of the same system until the end: latency under load.
	// For the KCP systems the second connection is a second stream on the
	// client's session, as kcptun forwards several TCP connections; for TCP
	// it is a second TCP connection.
	Loaded = "loaded"
	// Share runs two independent Bulk flows of the system, started
	// together, through one bottleneck: two SDK clients (so two sessions
	// and two controllers), or two TCP connections. Each flow has its own
	// relay and server; the relays' directions share one Bottleneck per
	// direction. It needs a bandwidth cap.
	Share = "share"
	// VsCubic is Share with the second flow replaced by a kernel TCP CUBIC
	// flow (the tcp-linux system): how much the system leaves to
	// well-behaved TCP. It needs a bandwidth cap and what tcp-linux needs.
	VsCubic = "vs-cubic"
)

// Workloads lists every workload, in the order tables show them.
var Workloads = []string{Bulk, RR, Conns, Loaded, Share, VsCubic}

// DefaultWorkloads are the workloads cmd/matrix runs when none are named:
// the single-flow ones of the original matrix. The others are run on the
// paths that matter to them, so that the full matrix keeps its length.
var DefaultWorkloads = []string{Bulk, RR, Conns}

// twoFlows reports whether workload runs two flows through a shared
// bottleneck.
func twoFlows(workload string) bool { return workload == Share || workload == VsCubic }

// competitor returns the system of the second flow of a two-flow workload.
func competitor(workload, system string) string {
	if workload == VsCubic {
		return TCPLinux
	}
	return system
}

// WorkloadAvailable reports why workload cannot run here, or nil: vs-cubic
// needs the tcp-linux system (see SystemAvailable).
func WorkloadAvailable(workload string) error {
	if workload == VsCubic {
		return SystemAvailable(TCPLinux)
	}
	return nil
}

const (
	rrSize       = 64
	rrInterval   = 20 * time.Millisecond
	maxConns     = 100
	bulkChunk    = 32 << 10
	drainTimeout = 3 * time.Second // waiting for the last responses of RR
	setupTimeout = 15 * time.Second
)

// Spec names one measurement: a workload on a system over a path.
type Spec struct {
	System   string        `json:"system"`
	Workload string        `json:"workload"`
	Path     Path          `json:"path"`
	Duration time.Duration `json:"duration"`
	Seed     int64         `json:"seed"`
}

// Result is the outcome of one Spec. Latencies are in milliseconds, rates
// in Mbit/s (10^6 bit/s), CPU in seconds of the whole process (both ends,
// the emulator and the netstacks), PeakRSS in MiB of the whole process over
// its lifetime.
type Result struct {
	System   string  `json:"system"`
	Workload string  `json:"workload"`
	LossPct  float64 `json:"loss_pct"`
	RTTms    float64 `json:"rtt_ms"`
	BwMbps   float64 `json:"bw_mbps"`
	Seconds  float64 `json:"seconds"`

	// Bulk: goodput over the measured window, and the path's limits: C(1-p)
	// for any protocol, Ck/(k+m) for the datagrams FEC leaves to data.
	GoodputMbps  float64 `json:"goodput_mbps,omitempty"`
	LimitLoss    float64 `json:"limit_loss_mbps,omitempty"`
	LimitFEC     float64 `json:"limit_fec_mbps,omitempty"`
	PayloadBytes int64   `json:"payload_bytes"`

	// RR, Conns and Loaded: samples, unanswered requests (RR, Loaded),
	// latency quantiles. Loaded also fills the bulk fields above, for its
	// bulk connection.
	N       int     `json:"n,omitempty"`
	Missing int     `json:"missing,omitempty"`
	P50ms   float64 `json:"p50_ms,omitempty"`
	P99ms   float64 `json:"p99_ms,omitempty"`
	MaxMs   float64 `json:"max_ms,omitempty"`
	PerSec  float64 `json:"per_sec,omitempty"` // Conns: connections per second

	// Share and VsCubic: the goodput of each flow over the measured window,
	// the system's first, Competitor's second (GoodputMbps is their sum);
	// FirstShare is the first flow's fraction of the sum, Jain is Jain's
	// fairness index of the two, (a+b)^2 / 2(a^2+b^2), 1 for an even split
	// and 0.5 when one flow gets everything.
	Competitor string    `json:"competitor,omitempty"`
	FlowMbps   []float64 `json:"flow_mbps,omitempty"`
	FirstShare float64   `json:"first_share,omitempty"`
	Jain       float64   `json:"jain,omitempty"`

	// WireBytes counts what entered the emulated links in both directions,
	// with 28 bytes of IP and UDP header added per KCP datagram (TCP's
	// datagrams are whole IP packets already); WirePerPayload divides it by
	// PayloadBytes.
	WireBytes      int64   `json:"wire_bytes"`
	WirePerPayload float64 `json:"wire_per_payload"`
	LostDatagrams  uint64  `json:"lost_datagrams"`
	QueueDrops     uint64  `json:"queue_drops"`

	CPUSeconds float64 `json:"cpu_s"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	Err        string  `json:"error,omitempty"`
}

// Validate reports a bad field of s.
func (s Spec) Validate() error {
	if !slices.Contains(Systems, s.System) {
		return fmt.Errorf("bench: unknown system %q: want one of %s", s.System, strings.Join(Systems, ", "))
	}
	if !slices.Contains(Workloads, s.Workload) {
		return fmt.Errorf("bench: unknown workload %q: want one of %s", s.Workload, strings.Join(Workloads, ", "))
	}
	if s.Duration < 100*time.Millisecond || s.Duration > 10*time.Minute {
		return fmt.Errorf("bench: duration %v: want 100ms..10m", s.Duration)
	}
	if twoFlows(s.Workload) && s.Path.Bandwidth <= 0 {
		return fmt.Errorf("bench: workload %s needs a bandwidth cap for its flows to share: %w", s.Workload, ErrNoBottleneck)
	}
	return s.Path.Validate()
}

// ErrNoBottleneck is wrapped by the error of a two-flow workload (Share,
// VsCubic) on a path without a bandwidth cap.
var ErrNoBottleneck = errors.New("no bottleneck")

// Run measures s. It takes about s.Duration plus set-up and, for RR and
// Loaded, up to 3 s waiting for the last responses; ctx may cut it short.
// An error means the measurement could not be made at all; a Result with
// partial figures comes with it when some were.
func Run(ctx context.Context, s Spec) (Result, error) {
	res := Result{
		System: s.System, Workload: s.Workload,
		LossPct: s.Path.Loss * 100, RTTms: float64(s.Path.RTT) / 1e6, BwMbps: float64(s.Path.Bandwidth) / 1e6,
	}
	if err := s.Validate(); err != nil {
		return res, err
	}
	if s.Path.Bandwidth > 0 {
		c := float64(s.Path.Bandwidth) / 1e6
		res.LimitLoss = c * (1 - s.Path.Loss)
		res.LimitFEC = c * fecEfficiency
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	var (
		tbs []*testbed
		err error
	)
	if twoFlows(s.Workload) {
		res.Competitor = competitor(s.Workload, s.System)
		tbs, err = newSharedTestbeds(s.Path, s.Seed, s.System, res.Competitor)
	} else {
		var tb *testbed
		tb, err = newTestbed(s.System, s.Path, s.Path.RelayConfig(s.Seed))
		tbs = []*testbed{tb}
	}
	if err != nil {
		return res, err
	}
	tb := tbs[0]
	switch s.Workload {
	case Bulk:
		err = runBulk(ctx, tb, s, &res)
	case RR:
		err = runRR(ctx, tb, s, &res)
	case Conns:
		err = runConns(ctx, tb, s, &res)
	case Loaded:
		err = runLoaded(ctx, tb, s, &res)
	case Share, VsCubic:
		err = runShare(ctx, tbs, s, &res)
	}
	st := statsOf(tbs)
	for _, t := range tbs {
		if cerr := t.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("bench: close %s: %w", s.System, cerr)
		}
	}
	if !measuresWindow(s.Workload) {
		res.WireBytes = st.wire
	}
	if res.PayloadBytes > 0 {
		res.WirePerPayload = float64(res.WireBytes) / float64(res.PayloadBytes)
	}
	res.LostDatagrams = st.lost
	res.QueueDrops = st.queueDrops
	res.Seconds = time.Since(start).Seconds()
	res.CPUSeconds = cpuSeconds() - cpu0
	res.PeakRSSMiB = peakRSSMiB()
	if err != nil {
		res.Err = err.Error()
	}
	return res, err
}

// measuresWindow reports whether workload counts wire bytes over its own
// measured window, not the whole run.
func measuresWindow(workload string) bool { return workload != RR && workload != Conns }

// pathStats sums the counters of the relays of one or more testbeds.
type pathStats struct {
	wire, payload    int64 // wire bytes (see wireBytes), payload bytes taken by sink servers
	lost, queueDrops uint64
}

func statsOf(tbs []*testbed) pathStats {
	var ps pathStats
	for _, t := range tbs {
		st := t.relay.Stats()
		ps.wire += wireBytes(st, t.ipPackets)
		ps.payload += t.srv.Received()
		ps.lost += st.Up.DroppedLoss + st.Down.DroppedLoss
		ps.queueDrops += st.Up.DroppedQueue + st.Down.DroppedQueue
	}
	return ps
}

// wireBytes is what entered both links, with IP and UDP headers.
func wireBytes(st kcptuntest.Stats, ipPackets bool) int64 {
	b := st.Up.ReceivedBytes + st.Down.ReceivedBytes
	if !ipPackets {
		b += udpIPOverhead * (st.Up.Received + st.Down.Received)
	}
	return int64(b)
}

// dial opens a connection on tb in the given protocol mode.
func dial(ctx context.Context, tb *testbed, mode byte) (net.Conn, error) {
	return loadserver.Dial(ctx, tb.dial, mode, setupTimeout)
}

// incompressible is the bulk payload: random bytes, so that snappy cannot
// shrink what the KCP systems send.
var incompressible = sync.OnceValue(func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 1<<20)
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
})

// bulkLimit bounds the bytes a bulk flow writes over d as well as its
// time: twice what the path can carry, or 1 GiB without a bandwidth cap.
func bulkLimit(p Path, d time.Duration) int64 {
	limit := int64(1 << 30)
	if p.Bandwidth > 0 {
		limit = min(limit, 2*int64(float64(p.Bandwidth)/8*d.Seconds())+1<<20)
	}
	return limit
}

// bulkFlows are bulk writers, one connection each, whose first failure is
// reported on failed.
type bulkFlows struct {
	conns  []net.Conn
	failed chan error // capacity len(conns): each writer sends at most once
	wg     sync.WaitGroup
}

// startBulk dials a sink connection on each testbed and writes
// incompressible bytes to it, up to limit bytes, until stop. Every write
// has a deadline of deadline.
func startBulk(ctx context.Context, tbs []*testbed, limit int64, deadline time.Time) (*bulkFlows, error) {
	f := &bulkFlows{failed: make(chan error, len(tbs))}
	for i, tb := range tbs {
		c, err := dial(ctx, tb, loadserver.ModeSink)
		if err != nil {
			f.stop()
			return nil, fmt.Errorf("bench: bulk dial (flow %d): %w", i+1, err)
		}
		_ = c.SetWriteDeadline(deadline)
		f.conns = append(f.conns, c)
	}
	data := incompressible()
	for i, c := range f.conns {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var sent int64
			for off := 0; sent < limit; off = (off + bulkChunk) % len(data) {
				n, err := c.Write(data[off : off+bulkChunk])
				sent += int64(n)
				if err != nil {
					f.failed <- fmt.Errorf("flow %d: %w", i+1, err)
					return
				}
			}
		}()
	}
	return f, nil
}

// wait waits d, or less when a writer fails or ctx ends, which it returns.
// A writer that reaches its byte limit is not a failure.
func (f *bulkFlows) wait(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case err := <-f.failed:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop closes the connections, which ends the writers, and waits for them.
func (f *bulkFlows) stop() {
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.wg.Wait()
}

// bulkWindow runs the bulk flows over tbs for s.Duration and measures the
// last two thirds: it waits out the start-up, takes a snapshot, calls
// during (if not nil) with the time left and waits for it to return, or
// waits that time, and takes a second snapshot. It returns the two
// snapshots of each testbed (payload received and wire bytes) and their
// times. A writer's failure ends the window early; before the first
// snapshot it is an error.
func bulkWindow(ctx context.Context, tbs []*testbed, s Spec, during func(time.Duration)) (before, after []pathStats, t1, t2 time.Time, err error) {
	limit := bulkLimit(s.Path, s.Duration+drainTimeout)
	f, err := startBulk(ctx, tbs, limit, time.Now().Add(s.Duration+drainTimeout+setupTimeout))
	if err != nil {
		return nil, nil, t1, t2, err
	}
	defer f.stop()
	snap := func() []pathStats {
		ps := make([]pathStats, len(tbs))
		for i, tb := range tbs {
			ps[i] = statsOf([]*testbed{tb})
		}
		return ps
	}
	warm := s.Duration - measuredWindow(s.Duration)
	t0 := time.Now()
	if werr := f.wait(ctx, warm); werr != nil {
		return nil, nil, t1, t2, fmt.Errorf("bench: bulk stopped after %v: %w", time.Since(t0).Round(time.Millisecond), werr)
	}
	t1, before = time.Now(), snap()
	var werr error
	if during != nil {
		during(s.Duration - warm)
		select {
		case werr = <-f.failed:
		default:
		}
	} else {
		werr = f.wait(ctx, s.Duration-warm)
	}
	t2, after = time.Now(), snap()
	if werr != nil && !errors.Is(werr, io.EOF) {
		err = fmt.Errorf("bench: bulk write: %w", werr)
	}
	return before, after, t1, t2, err
}

// measuredWindow is the part of a bulk run of duration d that bulkWindow
// measures: the last two thirds, after the start-up.
func measuredWindow(d time.Duration) time.Duration { return d - d/3 }

// mbps is a goodput in Mbit/s.
func mbps(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) * 8 / d.Seconds() / 1e6
}

func runBulk(ctx context.Context, tb *testbed, s Spec, res *Result) error {
	before, after, t1, t2, err := bulkWindow(ctx, []*testbed{tb}, s, nil)
	if before == nil {
		return err
	}
	res.PayloadBytes = after[0].payload - before[0].payload
	res.GoodputMbps = mbps(res.PayloadBytes, t2.Sub(t1))
	res.WireBytes = after[0].wire - before[0].wire
	return err
}

// runLoaded measures the RR pattern on a second connection while a bulk
// transfer runs on the first, from the end of the bulk's start-up to the
// end of the duration; the bulk goes on while the last answers drain.
func runLoaded(ctx context.Context, tb *testbed, s Spec, res *Result) error {
	var (
		samples []time.Duration
		sent    int
		rrErr   error
	)
	before, after, t1, t2, err := bulkWindow(ctx, []*testbed{tb}, s, func(left time.Duration) {
		c, derr := dial(ctx, tb, loadserver.ModeEcho)
		if derr != nil {
			rrErr = fmt.Errorf("bench: loaded rr dial: %w", derr)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(left + drainTimeout + setupTimeout))
		samples, sent, rrErr = exchange(ctx, c, int(left/rrInterval)+1)
		if rrErr != nil {
			rrErr = fmt.Errorf("bench: loaded rr: %w", rrErr)
		}
	})
	if before == nil {
		return err
	}
	// The window includes the drain of the last answers, during which the
	// bulk still runs.
	res.PayloadBytes = after[0].payload - before[0].payload
	res.GoodputMbps = mbps(res.PayloadBytes, t2.Sub(t1))
	res.WireBytes = after[0].wire - before[0].wire
	fillLatency(res, samples)
	res.Missing = sent - len(samples)
	if rrErr != nil {
		return rrErr
	}
	if len(samples) == 0 {
		return errors.New("bench: loaded: no answer to any request during the bulk transfer")
	}
	return err
}

// runShare measures two bulk flows started together, one on each testbed
// of tbs, which share a bottleneck.
func runShare(ctx context.Context, tbs []*testbed, s Spec, res *Result) error {
	before, after, t1, t2, err := bulkWindow(ctx, tbs, s, nil)
	if before == nil {
		return err
	}
	flows := make([]float64, len(tbs))
	for i := range tbs {
		b := after[i].payload - before[i].payload
		res.PayloadBytes += b
		res.WireBytes += after[i].wire - before[i].wire
		flows[i] = mbps(b, t2.Sub(t1))
	}
	fillShare(res, flows)
	return err
}

// fillShare sets the two-flow figures of res from the flows' goodputs.
func fillShare(res *Result, flows []float64) {
	res.FlowMbps = flows
	var sum, sq float64
	for _, f := range flows {
		sum += f
		sq += f * f
	}
	res.GoodputMbps = sum
	if sum > 0 && len(flows) > 0 {
		res.FirstShare = flows[0] / sum
		res.Jain = sum * sum / (float64(len(flows)) * sq)
	}
}

func runRR(ctx context.Context, tb *testbed, s Spec, res *Result) error {
	c, err := dial(ctx, tb, loadserver.ModeEcho)
	if err != nil {
		return fmt.Errorf("bench: rr dial: %w", err)
	}
	defer c.Close()
	samples, sent, err := exchange(ctx, c, int(s.Duration/rrInterval)+1)
	fillLatency(res, samples)
	res.Missing = sent - len(samples)
	res.PayloadBytes = int64(2 * rrSize * len(samples))
	if err != nil {
		return fmt.Errorf("bench: rr write: %w", err)
	}
	return nil
}

// exchange sends up to maxReq 64-byte requests on c, one every 20 ms,
// and times each echoed response; it waits up to 3 s after the last
// request for the answers, then closes c. It returns the round trips, the
// number of requests sent, and the error that stopped the sending.
func exchange(ctx context.Context, c net.Conn, maxReq int) (rtts []time.Duration, nsent int, werr error) {
	sent := make([]time.Time, maxReq) // written by the sender before the request goes out
	rtts = make([]time.Duration, 0, maxReq)
	var mu sync.Mutex
	readDone := make(chan error, 1)
	go func() {
		var buf [rrSize]byte
		for {
			if _, err := io.ReadFull(c, buf[:]); err != nil {
				readDone <- err
				return
			}
			now := time.Now()
			seq := int(binary.LittleEndian.Uint64(buf[:8]))
			mu.Lock()
			if seq >= 0 && seq < nsent {
				rtts = append(rtts, now.Sub(sent[seq]))
			}
			done := len(rtts) == maxReq
			mu.Unlock()
			if done {
				readDone <- nil
				return
			}
		}
	}()
	var req [rrSize]byte
	tick := time.NewTicker(rrInterval)
	defer tick.Stop()
	for seq := 0; seq < maxReq && werr == nil; seq++ {
		binary.LittleEndian.PutUint64(req[:8], uint64(seq))
		mu.Lock()
		sent[seq] = time.Now()
		nsent = seq + 1
		mu.Unlock()
		if _, err := c.Write(req[:]); err != nil {
			werr = err
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			werr = ctx.Err()
		}
	}
	drain := time.NewTimer(drainTimeout)
	defer drain.Stop()
	readerDone := false
	select {
	case <-readDone:
		readerDone = true
	case <-drain.C:
	case <-ctx.Done():
	}
	_ = c.Close()
	if !readerDone {
		<-readDone // the closed connection ends its read
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(rtts), nsent, werr
}

func runConns(ctx context.Context, tb *testbed, s Spec, res *Result) error {
	deadline := time.Now().Add(s.Duration)
	var lat []time.Duration
	var req, resp [rrSize]byte
	t0 := time.Now()
	var err error
	for i := 0; i < maxConns && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		start := time.Now()
		var c net.Conn
		c, err = dial(ctx, tb, loadserver.ModeEcho)
		if err != nil {
			err = fmt.Errorf("bench: conns dial %d: %w", i, err)
			break
		}
		_ = c.SetDeadline(time.Now().Add(setupTimeout))
		_, err = c.Write(req[:])
		if err == nil {
			_, err = io.ReadFull(c, resp[:])
		}
		_ = c.Close()
		if err != nil {
			err = fmt.Errorf("bench: conns exchange %d: %w", i, err)
			break
		}
		lat = append(lat, time.Since(start))
	}
	fillLatency(res, lat)
	if el := time.Since(t0).Seconds(); el > 0 {
		res.PerSec = float64(len(lat)) / el
	}
	res.PayloadBytes = int64((2*rrSize + 1) * len(lat))
	return err
}

// fillLatency sets N and the quantiles of res from samples (nearest rank).
func fillLatency(res *Result, samples []time.Duration) {
	res.N = len(samples)
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	q := func(p float64) float64 {
		i := int(p*float64(len(samples))+0.999999) - 1
		i = min(max(i, 0), len(samples)-1)
		return float64(samples[i]) / 1e6
	}
	res.P50ms, res.P99ms, res.MaxMs = q(0.50), q(0.99), float64(samples[len(samples)-1])/1e6
}
