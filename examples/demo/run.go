package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/seed-fc8f924e/kcptun"
	"github.com/seed-fc8f924e/kcptun/internal/kerneltcp"
	"github.com/seed-fc8f924e/kcptun/internal/loadserver"
	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

const (
	msgSize      = 64
	msgInterval  = 20 * time.Millisecond // 50 Hz
	kcpMTU       = 1350
	minWindow    = 32
	maxWindow    = 8192
	progressTick = 500 * time.Millisecond
	drainTimeout = 2 * time.Second // waiting for the last answers
	setupTimeout = 15 * time.Second
)

// side is one system under test behind its own emulator.
type side struct {
	name      string
	relay     *kcptuntest.Relay
	dial      func(ctx context.Context) (net.Conn, error)
	srv       *loadserver.Server
	close     func()
	ipPackets bool // the relay carries whole IP packets (TCP), else UDP payloads

	// results
	bulkBytes int64
	bulkErr   error
	msgs      msgStats
	wire      int64 // bytes that entered the links, both directions
	payload   int64 // payload bytes carried, both directions
}

// relayConfig is the emulated link: the same in both directions.
func (c config) relayConfig() kcptuntest.Config {
	l := kcptuntest.Link{Loss: c.loss, Delay: c.rtt / 2, Bandwidth: c.bw}
	bdp := int(float64(c.bw) / 8 * c.rtt.Seconds())
	l.QueueBytes = max(bdp, kcptuntest.DefaultQueueBytes)
	return kcptuntest.Config{Up: l, Down: l, Seed: 1}
}

// kcpOptions are the kcptun settings: the SDK's defaults in the fast2
// profile, with KCP windows and smux buffers sized to the link (1.5 and 2
// bandwidth-delay products), since KCP in these profiles has no congestion
// control and would otherwise overflow the link's queue or wait on its
// window.
func (c config) kcpOptions() []kcptun.Option {
	bdp := int(float64(c.bw) / 8 * c.rtt.Seconds())
	w := min(max(3*bdp/(2*kcpMTU), minWindow), maxWindow)
	return []kcptun.Option{
		kcptun.WithMode(kcptun.ModeFast2),
		kcptun.WithWindow(w, w),
		kcptun.WithSmuxBuffer(max(kcptun.DefaultSmuxBuffer, 2*bdp), max(kcptun.DefaultStreamBuffer, 2*bdp)),
	}
}

func newKCPSide(c config) (*side, error) {
	opts := c.kcpOptions()
	ln, err := kcptun.Listen("127.0.0.1:0", opts...)
	if err != nil {
		return nil, fmt.Errorf("kcptun listen: %w", err)
	}
	relay, err := kcptuntest.NewRelay(ln.Addr().String(), c.relayConfig())
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("kcptun side: %w", err)
	}
	cl, err := kcptun.NewClient(relay.Addr().String(), opts...)
	if err != nil {
		_ = relay.Close()
		_ = ln.Close()
		return nil, fmt.Errorf("kcptun client: %w", err)
	}
	s := &side{name: "kcptun (fast2)", relay: relay, dial: cl.DialContext, srv: loadserver.Start(ln)}
	s.close = func() {
		s.srv.Close()
		_ = cl.Close()
		_ = relay.Close()
	}
	return s, nil
}

func newTCPSide(ctx context.Context, c config) (*side, error) {
	p, err := kerneltcp.New(ctx, "demo", c.relayConfig(), c.tcpCC)
	if err != nil {
		return nil, err
	}
	cc := c.tcpCC
	if cc == "" {
		cc = "kernel default"
	}
	s := &side{name: "TCP (Linux, " + cc + ")", relay: p.Relay(), dial: p.Dial, srv: loadserver.Start(p.Listener()), ipPackets: true}
	s.close = func() {
		s.srv.Close()
		p.Close()
	}
	return s, nil
}

// run runs the demo with c and writes its report to w.
func run(ctx context.Context, c config, w io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	fmt.Fprintf(w, "kcptun demo: %g%% loss each way, %v round trip, %g Mbit/s, the same emulated link for both systems\n",
		c.loss*100, c.rtt, float64(c.bw)/1e6)
	kcp, err := newKCPSide(c)
	if err != nil {
		return err
	}
	defer kcp.close()
	sides := []*side{kcp}
	var tcpNote string
	if c.noTCP {
		tcpNote = "TCP baseline skipped (-no-tcp)."
	} else if tcp, err := newTCPSide(ctx, c); err != nil {
		if !errors.Is(err, kerneltcp.ErrUnavailable) {
			return err
		}
		tcpNote = err.Error() + "; showing kcptun only."
	} else {
		defer tcp.close()
		sides = append(sides, tcp)
	}
	if tcpNote != "" {
		fmt.Fprintln(w, tcpNote)
	}

	// Phase 1: bulk, every side at once, each over its own emulator.
	phase(ctx, w, "bulk", c.duration, sides, func(ctx context.Context, s *side) { s.bulkBytes, s.bulkErr = bulk(ctx, s, c) },
		func(s *side, el time.Duration) string {
			return fmt.Sprintf("%s %6.2f Mbit/s", short(s.name), mbps(s.srv.Received(), el))
		})
	for _, s := range sides {
		s.payload = s.srv.Received()
	}
	// Phase 2: small messages.
	phase(ctx, w, "messages", c.duration, sides, func(ctx context.Context, s *side) { s.msgs.err = messages(ctx, s, c) },
		func(s *side, _ time.Duration) string {
			n, p50 := s.msgs.progress()
			return fmt.Sprintf("%s %4d answered, p50 %4.0f ms", short(s.name), n, p50)
		})
	for _, s := range sides {
		st := s.relay.Stats()
		s.wire = wireBytes(st, s.ipPackets)
		s.payload += int64(2 * msgSize * s.msgs.answered())
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	report(w, c, sides)
	return nil
}

func short(name string) string { n, _, _ := strings.Cut(name, " "); return n }

func mbps(b int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(b) * 8 / d.Seconds() / 1e6
}

// wireBytes is what entered both links, with 28 bytes of IP and UDP header
// added per datagram that is not an IP packet already.
func wireBytes(st kcptuntest.Stats, ipPackets bool) int64 {
	b := st.Up.ReceivedBytes + st.Down.ReceivedBytes
	if !ipPackets {
		b += 28 * (st.Up.Received + st.Down.Received)
	}
	return int64(b)
}

// phase runs work on every side at once for d, printing a progress line
// every half second, and waits for all of them.
func phase(ctx context.Context, w io.Writer, name string, d time.Duration, sides []*side,
	work func(context.Context, *side), line func(*side, time.Duration) string) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range sides {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(ctx, s)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	start := time.Now()
	// On a terminal the progress line rewrites itself; elsewhere (a pipe, a
	// test) it is printed once a second.
	live := isTerminal(w)
	every := time.Second
	if live {
		every = progressTick
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last time.Time
	show := func(final bool) {
		if final && !live && time.Since(last) < every/2 {
			return // the last tick said it already
		}
		last = time.Now()
		el := min(time.Since(start), d)
		parts := []string{fmt.Sprintf("[%-8s %4.1fs/%v]", name, el.Seconds(), d)}
		for _, s := range sides {
			parts = append(parts, line(s, el))
		}
		text := strings.Join(parts, "   ")
		switch {
		case live && final:
			fmt.Fprint(w, "\r"+text+"  \n")
		case live:
			fmt.Fprint(w, "\r"+text+"  ")
		default:
			fmt.Fprintln(w, text)
		}
	}
	for {
		select {
		case <-tick.C:
			show(false)
		case <-done:
			show(true)
			return
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// dialMode opens a connection on s and sends the protocol's mode byte.
func dialMode(ctx context.Context, s *side, mode byte) (net.Conn, error) {
	return loadserver.Dial(ctx, s.dial, mode, setupTimeout)
}

// bulk writes incompressible bytes until ctx ends and returns what the
// server received.
func bulk(ctx context.Context, s *side, c config) (int64, error) {
	conn, err := dialMode(ctx, s, loadserver.ModeSink)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // unblocks Write
	defer stop()
	defer conn.Close()
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 32<<10)
	for i := 0; i+8 <= len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
	}
	// Bounded in bytes as well as time: twice what the link can carry.
	limit := 2*int64(float64(c.bw)/8*c.duration.Seconds()) + 1<<20
	for sent := int64(0); sent < limit && ctx.Err() == nil; {
		n, err := conn.Write(buf)
		sent += int64(n)
		if err != nil {
			break
		}
	}
	return s.srv.Received(), nil
}

// msgStats collects the round trips of the messages phase.
type msgStats struct {
	mu   sync.Mutex
	sent []time.Time
	rtts []time.Duration
	err  error
}

func (m *msgStats) progress() (int, float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rtts) == 0 {
		return 0, 0
	}
	s := slices.Clone(m.rtts)
	slices.Sort(s)
	return len(s), float64(s[len(s)/2]) / 1e6
}

func (m *msgStats) answered() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rtts)
}

// quantile returns the q-quantile of the round trips in ms (nearest rank).
func (m *msgStats) quantile(q float64) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rtts) == 0 {
		return 0
	}
	s := slices.Clone(m.rtts)
	slices.Sort(s)
	i := min(max(int(q*float64(len(s))+0.999999)-1, 0), len(s)-1)
	return float64(s[i]) / 1e6
}

// messages sends a 64-byte message every 20 ms until ctx ends, and times
// each echo; answers still missing 2 s after the last message count as
// unanswered.
func messages(ctx context.Context, s *side, c config) error {
	conn, err := dialMode(ctx, s, loadserver.ModeEcho)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	m := &s.msgs
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		var buf [msgSize]byte
		for {
			if _, err := io.ReadFull(conn, buf[:]); err != nil {
				return
			}
			now := time.Now()
			seq := binary.LittleEndian.Uint64(buf[:8])
			m.mu.Lock()
			if seq < uint64(len(m.sent)) {
				m.rtts = append(m.rtts, now.Sub(m.sent[seq]))
			}
			all := len(m.rtts) == len(m.sent) && ctx.Err() != nil
			m.mu.Unlock()
			if all {
				return
			}
		}
	}()
	tick := time.NewTicker(msgInterval)
	defer tick.Stop()
	var msg [msgSize]byte
	maxMsgs := int(c.duration/msgInterval) + 1
	for seq := 0; seq < maxMsgs && ctx.Err() == nil; seq++ {
		binary.LittleEndian.PutUint64(msg[:8], uint64(seq))
		m.mu.Lock()
		m.sent = append(m.sent, time.Now())
		m.mu.Unlock()
		if _, err := conn.Write(msg[:]); err != nil {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	drain := time.NewTimer(drainTimeout)
	defer drain.Stop()
	select {
	case <-readDone:
	case <-drain.C:
	}
	_ = conn.Close()
	<-readDone
	return nil
}

// report prints the table and the verdict.
func report(w io.Writer, c config, sides []*side) {
	fmt.Fprintln(w)
	rows := [][]string{{""}}
	for _, s := range sides {
		rows[0] = append(rows[0], s.name)
	}
	add := func(label string, f func(*side) string) {
		r := []string{label}
		for _, s := range sides {
			r = append(r, f(s))
		}
		rows = append(rows, r)
	}
	add("bulk throughput", func(s *side) string { return fmt.Sprintf("%.2f Mbit/s", mbps(s.bulkBytes, c.duration)) })
	add("small messages p50", func(s *side) string { return fmt.Sprintf("%.0f ms", s.msgs.quantile(0.50)) })
	add("small messages p99", func(s *side) string { return fmt.Sprintf("%.0f ms", s.msgs.quantile(0.99)) })
	add("messages answered", func(s *side) string {
		s.msgs.mu.Lock()
		defer s.msgs.mu.Unlock()
		return fmt.Sprintf("%d of %d", len(s.msgs.rtts), len(s.msgs.sent))
	})
	add("wire bytes per payload byte", func(s *side) string {
		if s.payload == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", float64(s.wire)/float64(s.payload))
	})
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, cell := range r {
			widths[i] = max(widths[i], len(cell))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			fmt.Fprintf(&b, "%-*s   ", widths[i], cell)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	for _, s := range sides {
		if s.bulkErr != nil {
			fmt.Fprintf(w, "note: %s, bulk: %v\n", s.name, s.bulkErr)
		}
		if s.msgs.err != nil {
			fmt.Fprintf(w, "note: %s, messages: %v\n", s.name, s.msgs.err)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, verdict(c, sides))
}

func verdict(c config, sides []*side) string {
	k := sides[0]
	kt := mbps(k.bulkBytes, c.duration)
	if len(sides) < 2 {
		return fmt.Sprintf("Verdict: kcptun moved %.2f Mbit/s of the link's %g with %g%% loss and answered small messages in %.0f ms at p99 (no TCP figures to compare with here).",
			kt, float64(c.bw)/1e6, c.loss*100, k.msgs.quantile(0.99))
	}
	t := sides[1]
	tt := mbps(t.bulkBytes, c.duration)
	kp, tp := k.msgs.quantile(0.99), t.msgs.quantile(0.99)
	speed := "as fast as"
	switch {
	case tt <= 0 && kt > 0:
		speed = "while TCP moved nothing,"
	case kt >= 1.1*tt:
		speed = fmt.Sprintf("%.1fx faster than", kt/tt)
	case tt >= 1.1*kt:
		speed = fmt.Sprintf("%.1fx slower than", tt/kt)
	}
	lat := "about the same p99 latency as TCP"
	switch {
	case kp > 0 && tp >= 1.2*kp:
		lat = fmt.Sprintf("%.1fx lower p99 latency than TCP (%.0f vs %.0f ms)", tp/kp, kp, tp)
	case tp > 0 && kp >= 1.2*tp:
		lat = fmt.Sprintf("%.1fx higher p99 latency than TCP (%.0f vs %.0f ms)", kp/tp, kp, tp)
	}
	if speed == "while TCP moved nothing," {
		return fmt.Sprintf("Verdict: on this link kcptun moved %.2f Mbit/s while TCP moved nothing, with %s.", kt, lat)
	}
	return fmt.Sprintf("Verdict: on this link kcptun moved data %s TCP (%.2f vs %.2f Mbit/s), with %s.", speed, kt, tt, lat)
}
