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
	"sync/atomic"
	"time"

	"github.com/seed-fc8f924e/kcptun"
	"github.com/seed-fc8f924e/kcptun/internal/kerneltcp"
	"github.com/seed-fc8f924e/kcptun/internal/loadserver"
	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

const (
	demoKey      = "kcptun-demo" // the only option the kcptun side is given
	msgSize      = 64
	msgInterval  = 20 * time.Millisecond // 50 Hz
	progressTick = 500 * time.Millisecond
	drainTimeout = 2 * time.Second // waiting for the last answers
	// drainBulkTimeout bounds the wait for the bulk data still in flight
	// after the bulk phase, polled every drainPoll.
	drainBulkTimeout = 4 * time.Second
	drainPoll        = 20 * time.Millisecond
	setupTimeout     = 15 * time.Second
)

// side is one system under test behind its own emulator.
type side struct {
	name      string // the column's title
	short     string // the name in the verdict
	relay     *kcptuntest.Relay
	dial      func(ctx context.Context) (net.Conn, error)
	srv       *loadserver.Server
	close     func()
	ipPackets bool // the relay carries whole IP packets (TCP), else UDP payloads
	// state, when set, describes what the system chose by itself; it is
	// printed after the bulk phase.
	state func() string

	// results
	bulkBytes int64        // received by the end of the bulk phase
	halfBytes atomic.Int64 // received by its middle
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

// newKCPSide starts a kcptun listener and client with no option but the
// key: windows, pacing and FEC are the SDK's own, adapted per session.
func newKCPSide(c config) (*side, error) {
	ln, err := kcptun.Listen("127.0.0.1:0", kcptun.WithKey(demoKey))
	if err != nil {
		return nil, fmt.Errorf("kcptun listen: %w", err)
	}
	relay, err := kcptuntest.NewRelay(ln.Addr().String(), c.relayConfig())
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("kcptun side: %w", err)
	}
	cl, err := kcptun.NewClient(relay.Addr().String(), kcptun.WithKey(demoKey))
	if err != nil {
		_ = relay.Close()
		_ = ln.Close()
		return nil, fmt.Errorf("kcptun client: %w", err)
	}
	s := &side{name: "kcptun (no options)", short: "kcptun", relay: relay, dial: cl.DialContext, srv: loadserver.Start(ln),
		state: func() string { return controlSummary(cl.Stats()) }}
	s.close = func() {
		s.srv.Close()
		_ = cl.Close()
		_ = relay.Close()
	}
	return s, nil
}

// controlSummary describes the adaptive controller of the client's
// session (the sending side of the bulk transfer), or says why there is
// none to describe.
func controlSummary(st kcptun.ClientStats) string {
	if len(st.PerSession) == 0 {
		return "no session"
	}
	ss := st.PerSession[0]
	if !ss.Adaptive {
		return "fixed settings (not adaptive)"
	}
	cs := ss.Control
	fec := "FEC off"
	if cs.LinkBound {
		fec = "FEC off (the transfer fills the link: re-sends cost it less than parity)"
	}
	if cs.DataShards > 0 {
		fec = fmt.Sprintf("FEC %d+%d", cs.DataShards, cs.ParityShards)
	}
	return fmt.Sprintf("rate est. %.1f Mbit/s, pacing %.1f Mbit/s, min RTT %v, windows %d/%d pkts, loss est. %.1f%%, %s",
		float64(cs.Bandwidth)*8/1e6, float64(cs.PacingRate)*8/1e6, cs.MinRTT.Round(time.Millisecond),
		cs.SendWindow, cs.ReceiveWindow, cs.Loss*100, fec)
}

// ccLabel is how congestion control cc is named in the output.
func ccLabel(cc string) string {
	if cc == "" {
		return "kernel default"
	}
	return strings.ToUpper(cc)
}

// newTCPSide builds a kernel TCP path with congestion control cc ("" for
// the kernel's default) through an emulated link like kcptun's.
func newTCPSide(ctx context.Context, c config, cc string) (*side, error) {
	p, err := kerneltcp.New(ctx, "demo", c.relayConfig(), cc)
	if err != nil {
		return nil, err
	}
	s := &side{name: "TCP " + ccLabel(cc) + " (Linux)", short: "TCP " + ccLabel(cc), relay: p.Relay(), dial: p.Dial,
		srv: loadserver.Start(p.Listener()), ipPackets: true}
	s.close = func() {
		s.srv.Close()
		p.Close()
	}
	return s, nil
}

// tcpPlan returns the congestion controls whose TCP can run here, and
// writes a one-line note to w for each one that cannot, or for TCP as a
// whole.
func tcpPlan(w io.Writer, c config) ([]string, error) {
	ccs, err := c.ccList()
	if err != nil {
		return nil, err
	}
	if c.noTCP {
		fmt.Fprintln(w, "TCP baseline skipped (-no-tcp).")
		return nil, nil
	}
	if err := kerneltcp.Available(); err != nil {
		fmt.Fprintln(w, err.Error()+"; showing kcptun only.")
		return nil, nil
	}
	var run []string
	for _, cc := range ccs {
		if err := kerneltcp.CongestionControlAvailable(cc); err != nil {
			fmt.Fprintf(w, "Skipping TCP %s: %v.\n", ccLabel(cc), err)
			continue
		}
		run = append(run, cc)
	}
	return run, nil
}

// run runs the demo with c and writes its report to w.
func run(ctx context.Context, c config, w io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	fmt.Fprintf(w, "kcptun demo: %g%% loss each way, %v round trip, %g Mbit/s, the same emulated link for every system, one after another\n",
		c.loss*100, c.rtt, float64(c.bw)/1e6)
	ccs, err := tcpPlan(w, c)
	if err != nil {
		return err
	}
	kcp, err := newKCPSide(c)
	if err != nil {
		return err
	}
	sides := []*side{kcp}
	measure(ctx, w, c, kcp)
	for _, cc := range ccs {
		if err := ctx.Err(); err != nil {
			return err
		}
		tcp, err := newTCPSide(ctx, c, cc)
		if err != nil {
			if errors.Is(err, kerneltcp.ErrUnavailable) {
				fmt.Fprintf(w, "Skipping TCP %s: %v.\n", ccLabel(cc), err)
				continue
			}
			return err
		}
		sides = append(sides, tcp)
		measure(ctx, w, c, tcp)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	report(w, c, sides)
	return nil
}

// measure runs both phases on s, records the results in s, and closes s.
func measure(ctx context.Context, w io.Writer, c config, s *side) {
	defer s.close()
	// Phase 1: bulk data one way.
	half := time.AfterFunc(c.duration/2, func() { s.halfBytes.Store(s.srv.Received()) })
	var sent int64
	phase(ctx, w, "bulk", c.duration, s, func(ctx context.Context) { sent, s.bulkErr = bulk(ctx, s, c) },
		func(el time.Duration) string { return fmt.Sprintf("%6.2f Mbit/s", mbps(s.srv.Received(), el)) })
	half.Stop()
	s.bulkBytes = s.srv.Received()
	if s.state != nil {
		fmt.Fprintf(w, "%-*s   %-20s %s\n", len(fmt.Sprintf("[%-8s %4.1fs/%v]", "", 0.0, c.duration)), "[adapted]", s.name, s.state())
	}
	el, ok := drain(ctx, s, sent)
	// The same columns as the progress lines.
	tag := fmt.Sprintf("%-*s", len(fmt.Sprintf("[%-8s %4.1fs/%v]", "", 0.0, c.duration)), fmt.Sprintf("[%-8s %4.1fs]", "drain", el.Seconds()))
	if !ok && ctx.Err() == nil {
		fmt.Fprintf(w, "%s   %-20s %.2f MB of bulk data still undelivered; measuring messages anyway\n",
			tag, s.name, float64(sent-s.srv.Received())/1e6)
	} else if el >= time.Second {
		fmt.Fprintf(w, "%s   %-20s the bulk data still in flight delivered\n", tag, s.name)
	}
	// Phase 2: small messages.
	phase(ctx, w, "messages", c.duration, s, func(ctx context.Context) { s.msgs.err = messages(ctx, s, c) },
		func(time.Duration) string {
			n, p50 := s.msgs.progress()
			return fmt.Sprintf("%4d answered, p50 %4.0f ms", n, p50)
		})
	// Bulk bytes still in flight when its phase ended count too, as their
	// wire bytes do.
	s.wire = wireBytes(s.relay.Stats(), s.ipPackets)
	s.payload = s.srv.Received() + int64(2*msgSize*s.msgs.answered())
}

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

// phase runs work on s for d, printing a progress line every second (every
// half second, rewriting itself, on a terminal), and waits for it.
func phase(ctx context.Context, w io.Writer, name string, d time.Duration, s *side,
	work func(context.Context), line func(time.Duration) string) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(ctx)
	}()
	start := time.Now()
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
		text := fmt.Sprintf("[%-8s %4.1fs/%v]   %-20s %s", name, el.Seconds(), d, s.name, line(el))
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

// bulk writes incompressible bytes until ctx ends and returns how many the
// connection took.
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
	sent := int64(0)
	for sent < limit && ctx.Err() == nil {
		n, err := conn.Write(buf)
		sent += int64(n)
		if err != nil {
			break
		}
	}
	return sent, nil
}

// drain waits, at most drainBulkTimeout, until the server has received
// the sent bytes of the bulk phase that were still queued or in flight
// when it ended, so that the messages phase measures small messages, not
// the tail of the bulk transfer. It returns how long it waited and whether
// everything arrived.
func drain(ctx context.Context, s *side, sent int64) (time.Duration, bool) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, drainBulkTimeout)
	defer cancel()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for s.srv.Received() < sent {
		select {
		case <-ctx.Done():
			return time.Since(start), false
		case <-tick.C:
		}
	}
	return time.Since(start), true
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
	add("bulk, second half", func(s *side) string { return fmt.Sprintf("%.2f Mbit/s", s.secondHalf(c)) })
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

// secondHalf is the bulk throughput in Mbit/s over the second half of the
// bulk phase, past the start-up of the sender.
func (s *side) secondHalf(c config) float64 {
	return mbps(s.bulkBytes-min(s.halfBytes.Load(), s.bulkBytes), c.duration/2)
}

// verdict compares kcptun (sides[0]) with the TCP that moved the most
// data, and its small-message p99 with the TCP whose p99 was lowest,
// saying plainly which one won.
func verdict(c config, sides []*side) string {
	k := sides[0]
	kt := mbps(k.bulkBytes, c.duration)
	kp := k.msgs.quantile(0.99)
	if len(sides) < 2 {
		return fmt.Sprintf("Verdict: kcptun with no options moved %.2f Mbit/s of the link's %g with %g%% loss and answered small messages in %.0f ms at p99 (no TCP figures to compare with here).",
			kt, float64(c.bw)/1e6, c.loss*100, kp)
	}
	fast, quick := sides[1], (*side)(nil)
	for _, t := range sides[1:] {
		if t.bulkBytes > fast.bulkBytes {
			fast = t
		}
		if t.msgs.answered() > 0 && (quick == nil || t.msgs.quantile(0.99) < quick.msgs.quantile(0.99)) {
			quick = t
		}
	}
	which := "the better TCP, "
	if len(sides) == 2 {
		which = ""
	}
	tt := mbps(fast.bulkBytes, c.duration)
	var speed string
	switch {
	case tt <= 0 && kt <= 0:
		speed = "neither kcptun nor TCP moved bulk data"
	case tt <= 0:
		speed = fmt.Sprintf("kcptun with no options moved %.2f Mbit/s while TCP moved nothing", kt)
	case kt >= 1.1*tt:
		speed = fmt.Sprintf("kcptun with no options moved data %.1fx faster than %s%s (%.2f vs %.2f Mbit/s)", kt/tt, which, fast.short, kt, tt)
	case tt >= 1.1*kt:
		speed = fmt.Sprintf("%s moved data %s than kcptun with no options (%.2f vs %.2f Mbit/s): TCP wins here", fast.short, times(tt, kt, "faster"), tt, kt)
	default:
		speed = fmt.Sprintf("kcptun with no options moved data about as fast as %s%s (%.2f vs %.2f Mbit/s)", which, fast.short, kt, tt)
	}
	var lat string
	switch {
	case quick == nil && k.msgs.answered() == 0:
		lat = "no small message was answered"
	case quick == nil:
		lat = fmt.Sprintf("small messages p99 %.0f ms, where TCP answered none", kp)
	case k.msgs.answered() == 0:
		lat = fmt.Sprintf("kcptun answered no small message, %s did (p99 %.0f ms)", quick.short, quick.msgs.quantile(0.99))
	default:
		tp := quick.msgs.quantile(0.99)
		best := quick.short
		if len(sides) > 2 {
			best = "the best TCP, " + best
		}
		switch {
		case tp >= 1.2*kp:
			lat = fmt.Sprintf("small messages p99 %.1fx lower than %s (%.0f vs %.0f ms)", tp/kp, best, kp, tp)
		case kp >= 1.2*tp:
			lat = fmt.Sprintf("small messages p99 %.1fx higher than %s (%.0f vs %.0f ms)", kp/tp, best, kp, tp)
		default:
			lat = fmt.Sprintf("small messages p99 about the same as %s (%.0f vs %.0f ms)", best, kp, tp)
		}
	}
	return fmt.Sprintf("Verdict: on this link %s; %s.", speed, lat)
}

// times says how many times a is more than b: "1.5x faster", or "faster"
// alone when b is zero.
func times(a, b float64, word string) string {
	if b <= 0 {
		return word
	}
	return fmt.Sprintf("%.1fx %s", a/b, word)
}
