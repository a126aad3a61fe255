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
)

// Workloads lists every workload, in the order tables show them.
var Workloads = []string{Bulk, RR, Conns}

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

	// RR and Conns: samples, unanswered requests (RR), latency quantiles.
	N       int     `json:"n,omitempty"`
	Missing int     `json:"missing,omitempty"`
	P50ms   float64 `json:"p50_ms,omitempty"`
	P99ms   float64 `json:"p99_ms,omitempty"`
	MaxMs   float64 `json:"max_ms,omitempty"`
	PerSec  float64 `json:"per_sec,omitempty"` // Conns: connections per second

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
	return s.Path.Validate()
}

// Run measures s. It takes about s.Duration plus set-up and, for RR, up to
// 3 s waiting for the last responses; ctx may cut it short. An error means
// the measurement could not be made at all; a Result with partial figures
// comes with it when some were.
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
	tb, err := newTestbed(s.System, s.Path, s.Seed)
	if err != nil {
		return res, err
	}
	switch s.Workload {
	case Bulk:
		err = runBulk(ctx, tb, s, &res)
	case RR:
		err = runRR(ctx, tb, s, &res)
	case Conns:
		err = runConns(ctx, tb, s, &res)
	}
	st := tb.relay.Stats()
	if cerr := tb.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("bench: close %s: %w", s.System, cerr)
	}
	if s.Workload != Bulk { // bulk measures its own window
		res.WireBytes = wireBytes(st, tb.ipPackets)
	}
	if res.PayloadBytes > 0 {
		res.WirePerPayload = float64(res.WireBytes) / float64(res.PayloadBytes)
	}
	res.LostDatagrams = st.Up.DroppedLoss + st.Down.DroppedLoss
	res.QueueDrops = st.Up.DroppedQueue + st.Down.DroppedQueue
	res.Seconds = time.Since(start).Seconds()
	res.CPUSeconds = cpuSeconds() - cpu0
	res.PeakRSSMiB = peakRSSMiB()
	if err != nil {
		res.Err = err.Error()
	}
	return res, err
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

func runBulk(ctx context.Context, tb *testbed, s Spec, res *Result) error {
	c, err := dial(ctx, tb, loadserver.ModeSink)
	if err != nil {
		return fmt.Errorf("bench: bulk dial: %w", err)
	}
	defer c.Close()
	// Bound the bytes written as well as the time: twice what the path can
	// carry, or 1 GiB without a bandwidth cap.
	limit := int64(1 << 30)
	if s.Path.Bandwidth > 0 {
		limit = min(limit, 2*int64(float64(s.Path.Bandwidth)/8*s.Duration.Seconds())+1<<20)
	}
	data := incompressible()
	done := make(chan error, 1)
	go func() {
		var sent int64
		for off := 0; sent < limit; off = (off + bulkChunk) % len(data) {
			n, err := c.Write(data[off : off+bulkChunk])
			sent += int64(n)
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	warm := s.Duration / 3
	t0 := time.Now()
	timer := time.NewTimer(warm)
	defer timer.Stop()
	var (
		b1     int64
		st1    kcptuntest.Stats
		t1     time.Time
		werr   error
		ended  bool
		phase2 bool
	)
loop:
	for {
		select {
		case <-timer.C:
			if !phase2 {
				phase2 = true
				t1, b1, st1 = time.Now(), tb.srv.Received(), tb.relay.Stats()
				timer.Reset(s.Duration - warm)
				continue
			}
			break loop
		case werr = <-done:
			ended = true
			if werr != nil {
				break loop
			}
		case <-ctx.Done():
			werr = ctx.Err()
			break loop
		}
	}
	t2, b2, st2 := time.Now(), tb.srv.Received(), tb.relay.Stats()
	_ = c.Close() // unblocks the writer
	if !ended {
		<-done
	}
	if !phase2 {
		return fmt.Errorf("bench: bulk stopped after %v: %w", time.Since(t0).Round(time.Millisecond), werr)
	}
	res.PayloadBytes = b2 - b1
	res.GoodputMbps = float64(res.PayloadBytes) * 8 / t2.Sub(t1).Seconds() / 1e6
	res.WireBytes = wireBytes(st2, tb.ipPackets) - wireBytes(st1, tb.ipPackets)
	if werr != nil && !errors.Is(werr, io.EOF) {
		return fmt.Errorf("bench: bulk write: %w", werr)
	}
	return nil
}

func runRR(ctx context.Context, tb *testbed, s Spec, res *Result) error {
	c, err := dial(ctx, tb, loadserver.ModeEcho)
	if err != nil {
		return fmt.Errorf("bench: rr dial: %w", err)
	}
	defer c.Close()
	maxReq := int(s.Duration/rrInterval) + 1
	sent := make([]time.Time, maxReq) // written by the sender before the request goes out
	rtts := make([]time.Duration, 0, maxReq)
	var mu sync.Mutex
	nsent := 0
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
	var werr error
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
	samples := slices.Clone(rtts)
	n := nsent
	mu.Unlock()
	fillLatency(res, samples)
	res.Missing = n - len(samples)
	res.PayloadBytes = int64(2 * rrSize * len(samples))
	if werr != nil {
		return fmt.Errorf("bench: rr write: %w", werr)
	}
	return nil
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
