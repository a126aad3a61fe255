package kcptun

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
)

// ErrInvalidOption is wrapped by every error that reports a bad option value,
// or an option given to a call that does not use it. Test for it with
// errors.Is; the error's text names the option and the value or the call.
var ErrInvalidOption = errors.New("invalid option")

// OptionError reports an option whose value is out of range or contradicts
// another option, or an option given to a call that does not use it (Call is
// then set). It wraps ErrInvalidOption.
type OptionError struct {
	Option string // the option's name, e.g. "WithMTU"
	Value  any    // the rejected value
	Reason string // what a valid value looks like, or which calls use the option
	Call   string // "Dial", "NewClient" or "Listen" when the call does not use the option
}

// Error returns a one-line description naming the option and the value, or
// the option and the call that does not use it.
func (e *OptionError) Error() string {
	if e.Call != "" {
		return fmt.Sprintf("kcptun: invalid option %s for %s: %s", e.Option, e.Call, e.Reason)
	}
	return fmt.Sprintf("kcptun: invalid option %s(%v): %s", e.Option, e.Value, e.Reason)
}

// Unwrap returns ErrInvalidOption.
func (e *OptionError) Unwrap() error { return ErrInvalidOption }

// Option changes one setting of a Dial, NewClient or Listen call. Options are
// applied in order; a later option overrides an earlier one. Values are
// checked when the call is made, not when the option is built. Most options
// serve all three calls; an option that only some calls use (its doc comment
// says which) makes the others fail with ErrInvalidOption rather than be
// ignored.
type Option func(*config)

// entry is the call an option list is given to.
type entry uint8

const (
	entryDial entry = 1 << iota
	entryClient
	entryListen
)

// String returns the name of the call.
func (e entry) String() string {
	switch e {
	case entryDial:
		return "Dial"
	case entryClient:
		return "NewClient"
	case entryListen:
		return "Listen"
	}
	return "unknown call"
}

// users names the calls of a set of entries, for an error message.
func (e entry) users() string {
	switch e {
	case entryDial | entryClient:
		return "only Dial and NewClient use it"
	case entryClient:
		return "only NewClient uses it"
	case entryListen:
		return "only Listen uses it"
	}
	return "no call uses it"
}

// scopedOption records an option that only some calls use.
type scopedOption struct {
	name  string
	value any
	users entry // the calls that use it
}

// scope returns an Option that records itself as used only by users and then
// applies set.
func scope(name string, value any, users entry, set func(*config)) Option {
	return func(c *config) {
		c.scoped = append(c.scoped, scopedOption{name, value, users})
		set(c)
	}
}

// Defaults of the kcptun binaries; a zero-option SDK end uses exactly these.
const (
	DefaultKey            = "it's a secrect" // sic: the binaries' default
	DefaultCrypt          = "aes"
	DefaultMTU            = 1350
	DefaultDataShards     = 10
	DefaultParityShards   = 3
	DefaultSockBuf        = 4194304
	DefaultSmuxVersion    = 2
	DefaultSmuxBuffer     = 4194304
	DefaultStreamBuffer   = 2097152
	DefaultFrameSize      = 8192
	DefaultKeepAlive      = 10 * time.Second
	DefaultScavengeTTL    = 600 * time.Second
	DefaultDialTimeout    = 10 * time.Second
	DefaultMaxSessions    = 4096
	DefaultAcceptTimeout  = 30 * time.Second
	defaultClientSndWnd   = 128
	defaultClientRcvWnd   = 512
	defaultServerSndWnd   = 1024
	defaultServerRcvWnd   = 1024
	smuxKeepAliveTimeout  = 30 * time.Second
	maxMTU                = 1500
	minKCPPayloadMTU      = 50 // kcp-go refuses a KCP MTU below this
	fecHeaderSize         = 8  // seqid, flag, size
	maxShards             = 256
	maxWindow             = math.MaxUint16
	maxSmuxBufferAccepted = math.MaxInt32
)

// AdaptiveSmuxBuffer and AdaptiveStreamBuffer are smux's session and stream
// buffers when adaptation is on (the default) and WithSmuxBuffer is not
// given. A smux v2 stream window counts every byte sent and not yet read by
// the receiving application, including bytes still in flight in KCP or held
// in KCP's receive buffer behind a lost packet, so the binaries' 2 MiB
// capped a stream on a long or lossy path well below its bandwidth; the
// stream buffer covers the largest send window the adaptive controller uses
// (4096 full packets), so that the window is KCP's alone. The buffers are
// limits, not allocations: they fill only while an application reads more
// slowly than its peer writes.
const (
	AdaptiveSmuxBuffer   = 16777216
	AdaptiveStreamBuffer = 8388608
)

// config is every setting in one place. Options, the forwarding programs'
// flags and their JSON files all map onto these fields.
type config struct {
	key          string
	crypt        string
	mode         Mode
	manual       noDelay // used when mode == ModeManual
	sndWnd       int     // 0 means the role's default
	rcvWnd       int     // 0 means the role's default
	mtu          int
	dataShards   int
	parityShards int
	dscp         int
	compression  bool
	ackNoDelay   bool
	rateLimit    int
	sockBuf      int
	smuxVersion  int
	smuxBuf      int
	streamBuf    int
	frameSize    int
	keepAlive    time.Duration
	conns        int
	sideLinger   time.Duration // how long an unused side session stays open (client.go)
	autoExpire   time.Duration
	scavengeTTL  time.Duration
	dialTimeout  time.Duration
	maxSessions  int
	acceptTO     time.Duration
	idleTimeout  time.Duration
	logger       *slog.Logger
	pass         []byte         // the key after derivation, computed once
	scoped       []scopedOption // options given that only some calls use

	// versionPinned and compressionPinned record that WithSmuxVersion and
	// WithCompression were given: the setting is then fixed instead of
	// following what the other end speaks.
	versionPinned     bool
	compressionPinned bool
	// onServerFormat, when set, is told the format of the first bytes the
	// server sends on a dialed session (detect_client.go).
	onServerFormat func(wireFormat, error)
	// adaptive runs a controller per session (WithAdaptive, default on);
	// windowSet and fecSet say WithWindow and WithFEC were given, which
	// pins those parts; smuxBufSet says WithSmuxBuffer was given, which
	// keeps the adaptive buffers (AdaptiveSmuxBuffer) out.
	adaptive, windowSet, fecSet, smuxBufSet bool
	// connsSet says WithConns was given: the Client then keeps exactly that
	// many sessions, without a side session.
	connsSet bool
}

func defaultConfig() config {
	return config{
		key:          DefaultKey,
		crypt:        DefaultCrypt,
		mode:         ModeFast,
		manual:       modeProfiles[ModeManual],
		mtu:          DefaultMTU,
		dataShards:   DefaultDataShards,
		parityShards: DefaultParityShards,
		compression:  true,
		sockBuf:      DefaultSockBuf,
		smuxVersion:  DefaultSmuxVersion,
		smuxBuf:      DefaultSmuxBuffer,
		streamBuf:    DefaultStreamBuffer,
		frameSize:    DefaultFrameSize,
		keepAlive:    DefaultKeepAlive,
		conns:        1,
		sideLinger:   sideSessionLinger,
		scavengeTTL:  DefaultScavengeTTL,
		dialTimeout:  DefaultDialTimeout,
		maxSessions:  DefaultMaxSessions,
		acceptTO:     DefaultAcceptTimeout,
		idleTimeout:  smuxKeepAliveTimeout,
		adaptive:     true,
	}
}

// newConfig applies opts over the defaults and validates the result for the
// call e: every option must be one that e uses, and every value valid.
func newConfig(e entry, opts []Option) (*config, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	for _, so := range c.scoped {
		if so.users&e == 0 {
			return nil, &OptionError{Option: so.name, Value: so.value, Reason: so.users.users(), Call: e.String()}
		}
	}
	c.scoped = nil
	if c.adaptive && !c.smuxBufSet {
		c.smuxBuf, c.streamBuf = AdaptiveSmuxBuffer, AdaptiveStreamBuffer
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	c.pass = crypt.DeriveKey(c.key)
	return &c, nil
}

func bad(option string, value any, reason string) error {
	return &OptionError{Option: option, Value: value, Reason: reason}
}

// validate checks every field and names the first bad one.
func (c *config) validate() error {
	if !slices.Contains(crypt.Names(), c.crypt) {
		return bad("WithCrypt", c.crypt, fmt.Sprintf("want one of %v", crypt.Names()))
	}
	if !c.mode.valid() {
		return bad("WithMode", int(c.mode), "want ModeNormal, ModeFast, ModeFast2, ModeFast3 or ModeManual")
	}
	if m := c.manual; m.NoDelay < 0 || m.NoDelay > 1 || m.Interval < 10 || m.Interval > 5000 || m.Resend < 0 || m.NC < 0 || m.NC > 1 {
		return bad("WithNoDelay", fmt.Sprintf("%d,%d,%d,%d", m.NoDelay, m.Interval, m.Resend, m.NC),
			"want nodelay 0 or 1, interval 10..5000 ms, resend >= 0, nc 0 or 1")
	}
	if c.sndWnd < 0 || c.sndWnd > maxWindow || c.rcvWnd < 0 || c.rcvWnd > maxWindow {
		return bad("WithWindow", fmt.Sprintf("%d,%d", c.sndWnd, c.rcvWnd), "want 1..65535 packets (0 for the default)")
	}
	if c.dataShards < 0 || c.parityShards < 0 || c.dataShards+c.parityShards > maxShards {
		return bad("WithFEC", fmt.Sprintf("%d,%d", c.dataShards, c.parityShards), "want non-negative shard counts totalling at most 256")
	}
	if minMTU := c.minMTU(); c.mtu < minMTU || c.mtu > maxMTU {
		return bad("WithMTU", c.mtu, fmt.Sprintf("want %d..%d with this cipher and FEC", minMTU, maxMTU))
	}
	if c.dscp < 0 || c.dscp > 63 {
		return bad("WithDSCP", c.dscp, "want 0..63")
	}
	if c.rateLimit < 0 || int64(c.rateLimit) > math.MaxUint32 {
		return bad("WithRateLimit", c.rateLimit, "want 0 (off) .. 4294967295 bytes per second")
	}
	if c.sockBuf < 0 {
		return bad("WithSockBuf", c.sockBuf, "want a non-negative size (0 keeps the system default)")
	}
	if c.smuxVersion != 1 && c.smuxVersion != 2 {
		return bad("WithSmuxVersion", c.smuxVersion, "want 1 or 2 (both ends must agree)")
	}
	if c.smuxBuf <= 0 || c.smuxBuf > maxSmuxBufferAccepted || c.streamBuf <= 0 || c.streamBuf > maxSmuxBufferAccepted {
		return bad("WithSmuxBuffer", fmt.Sprintf("%d,%d", c.smuxBuf, c.streamBuf), "want positive sizes below 2 GiB")
	}
	if c.streamBuf > c.smuxBuf {
		return bad("WithSmuxBuffer", fmt.Sprintf("%d,%d", c.smuxBuf, c.streamBuf), "the stream buffer must not exceed the session buffer")
	}
	if c.frameSize <= 0 || c.frameSize > math.MaxUint16 {
		return bad("WithFrameSize", c.frameSize, "want 1..65535 bytes")
	}
	if c.keepAlive <= 0 || c.keepAlive > smuxKeepAliveTimeout {
		return bad("WithKeepAlive", c.keepAlive, "want more than 0 and at most smux's 30s timeout")
	}
	if c.conns < 1 {
		return bad("WithConns", c.conns, "want at least 1 session")
	}
	if c.autoExpire < 0 {
		return bad("WithAutoExpire", c.autoExpire, "want 0 (off) or a positive duration")
	}
	if c.scavengeTTL < 0 {
		return bad("WithScavengeTTL", c.scavengeTTL, "want a non-negative duration")
	}
	if c.dialTimeout <= 0 {
		return bad("WithDialTimeout", c.dialTimeout, "want a positive duration")
	}
	if c.maxSessions < 1 {
		return bad("WithMaxSessions", c.maxSessions, "want at least 1")
	}
	if c.acceptTO <= 0 {
		return bad("WithAcceptTimeout", c.acceptTO, "want a positive duration")
	}
	if c.idleTimeout < c.keepAlive {
		return bad("WithIdleTimeout", c.idleTimeout, fmt.Sprintf("want at least the keepalive interval (%v)", c.keepAlive))
	}
	return nil
}

// minMTU is the smallest MTU kcp-go accepts with this cipher and FEC setting.
func (c *config) minMTU() int {
	overhead := crypt.HeaderSize(c.crypt)
	if c.fecEnabled() {
		overhead += fecHeaderSize
	}
	return minKCPPayloadMTU + overhead
}

func (c *config) fecEnabled() bool { return c.dataShards > 0 && c.parityShards > 0 }

// timing returns the four KCP timing values of the selected mode.
func (c *config) timing() noDelay {
	if c.mode == ModeManual {
		return c.manual
	}
	return modeProfiles[c.mode]
}

// windows returns the send and receive windows, filling the role's defaults.
func (c *config) windows(server bool) (snd, rcv int) {
	snd, rcv = c.sndWnd, c.rcvWnd
	if server {
		if snd == 0 {
			snd = defaultServerSndWnd
		}
		if rcv == 0 {
			rcv = defaultServerRcvWnd
		}
		return snd, rcv
	}
	if snd == 0 {
		snd = defaultClientSndWnd
	}
	if rcv == 0 {
		rcv = defaultClientRcvWnd
	}
	return snd, rcv
}

// WithKey sets the pre-shared key (default "it's a secrect", the binaries'
// default). Both ends must use the same key; a mismatch is silent on the wire
// and surfaces as ErrNoResponse at Dial.
func WithKey(key string) Option { return func(c *config) { c.key = key } }

// WithCrypt sets the cipher by the binaries' name: aes (default), aes-128,
// aes-192, aes-128-gcm, salsa20, blowfish, twofish, cast5, 3des, tea, xtea,
// sm4, xor, none or null. Both ends must agree. Only aes-128-gcm authenticates
// packets; none, null and xor do not hide the payload.
func WithCrypt(name string) Option { return func(c *config) { c.crypt = name } }

// WithMode selects a timing profile (default ModeFast). Use WithNoDelay for
// ModeManual's values.
func WithMode(m Mode) Option { return func(c *config) { c.mode = m } }

// WithNoDelay selects ModeManual with KCP's four timing values: nodelay (0 or
// 1), interval in milliseconds (10..5000), resend (fast retransmit after this
// many skipping ACKs, 0 off) and nc (1 turns congestion control off).
func WithNoDelay(nodelay, interval, resend, nc int) Option {
	return func(c *config) {
		c.mode = ModeManual
		c.manual = noDelay{nodelay, interval, resend, nc}
	}
}

// WithWindow pins KCP's send and receive windows in packets. Without it
// each session sizes its windows from the rate and RTT it measures (see
// WithAdaptive); with WithAdaptive(false) the defaults differ by role as in
// the binaries: 128/512 for a client, 1024/1024 for a listener. Zero keeps
// that window adaptive (or the role's default when adaptation is off).
func WithWindow(snd, rcv int) Option {
	return func(c *config) { c.sndWnd, c.rcvWnd, c.windowSet = snd, rcv, true }
}

// WithMTU sets the largest UDP payload in bytes (default 1350, at most 1500).
func WithMTU(mtu int) Option { return func(c *config) { c.mtu = mtu } }

// WithFEC pins Reed-Solomon forward error correction: after every data
// shards packets, parity extra packets. Either value 0 turns FEC off. Without
// it each session sends without FEC on a clean path and picks a shape from
// the loss it measures (see WithAdaptive); with WithAdaptive(false) the
// default is the binaries' 10 and 3. The receiver adapts to the sender's
// pattern, so the ends need not agree. A pinned shape is sent as it is,
// even one of a single data shard, which the controller would otherwise
// send as bare copies.
func WithFEC(data, parity int) Option {
	return func(c *config) { c.dataShards, c.parityShards, c.fecSet = data, parity, true }
}

// WithDSCP sets the DSCP field (0..63, default 0) of outgoing datagrams.
func WithDSCP(dscp int) Option { return func(c *config) { c.dscp = dscp } }

// WithCompression turns snappy compression on (the default) or off. Both ends
// must agree. Without this option a Listener answers each client as it
// speaks and a Client follows what its server speaks; with it the setting is
// pinned and a peer that differs is refused (Listener) or reported (Client).
func WithCompression(on bool) Option {
	return func(c *config) { c.compression, c.compressionPinned = on, true }
}

// WithACKNoDelay makes KCP send each ACK at once instead of on its next tick
// (default off). Without it, an adaptive session (WithAdaptive, the
// default) still acknowledges at once data that arrives an eighth of the
// RTT (at least 5 ms) after its last ACK, so that the peer's windows need
// not cover KCP's whole flush interval; on a path whose RTT is twice that
// interval (60 ms in ModeFast) or more it leaves KCP's timing alone for a
// second after some of the peer's data was lost.
func WithACKNoDelay(on bool) Option { return func(c *config) { c.ackNoDelay = on } }

// WithRateLimit caps each session's sending rate in bytes per second (default
// 0, no cap). With adaptation on it caps the pacing rate, parity included.
func WithRateLimit(bytesPerSecond int) Option {
	return func(c *config) { c.rateLimit = bytesPerSecond }
}

// WithAdaptive turns the per-session adaptive controller on (the default)
// or off. On, each session measures its delivery rate, RTT and loss from the
// ACKs it sees and sets its pacing rate, KCP's send and receive windows
// (KCP's own congestion window is off, as nc=1) and its FEC: none on a clean
// path; with loss, one Reed-Solomon shape per session (kcp-go receivers, as
// in the kcptun binaries, mis-decode around a change of shape), switched
// only off and on; and for a thin flow, such as a game's small messages,
// bare copies of each datagram (three from the first packet until loss is
// measured), which every KCP receiver drops by sequence number. It also
// sends a segment again by itself when KCP's re-send of it was lost too
// (kcp-go re-sends a segment early only once, then waits for its timer);
// SessionStats.SegmentsResentAgain counts those. And it repeats, in its
// next two datagrams with an ACK, each ACK of data that arrived above a hole,
// so that a lost datagram of ACKs does not make the peer re-send what
// arrived (SessionStats.AcksRepeated); a path that loses nothing has no
// holes, and nothing is repeated.
// WithWindow, WithFEC and WithRateLimit pin or cap those parts,
// and WithMode still chooses KCP's timing. Off restores the kcptun binaries'
// fixed behaviour exactly: the role's windows, FEC 10+3, no pacing, and the
// nc value of the mode. The two ends need not agree.
func WithAdaptive(on bool) Option { return func(c *config) { c.adaptive = on } }

// WithSockBuf sets the UDP socket's read and write buffer size in bytes
// (default 4194304). The kernel may cap it; a failure is logged, not fatal.
func WithSockBuf(bytes int) Option { return func(c *config) { c.sockBuf = bytes } }

// WithSmuxVersion selects the smux protocol version, 1 or 2 (default 2). Both
// ends must agree; kcptun releases before 2025-11-21 use version 1. Without
// this option a Listener answers each client in the version it speaks and a
// Client switches to the version its server speaks; with it the version is
// pinned and a peer that differs is refused (Listener) or reported (Client).
func WithSmuxVersion(v int) Option {
	return func(c *config) { c.smuxVersion, c.versionPinned = v, true }
}

// WithSmuxBuffer sets smux's receive buffer per session and per stream in
// bytes. The stream buffer must not exceed the session buffer. The stream
// buffer is also the window a smux v2 peer may send into (bytes in flight
// included), so it bounds a stream's throughput at about stream / RTT.
// Without this option the buffers are AdaptiveSmuxBuffer and
// AdaptiveStreamBuffer (16 MiB and 8 MiB), or with WithAdaptive(false) the
// binaries' DefaultSmuxBuffer and DefaultStreamBuffer (4 MiB and 2 MiB).
func WithSmuxBuffer(session, stream int) Option {
	return func(c *config) { c.smuxBuf, c.streamBuf, c.smuxBufSet = session, stream, true }
}

// WithFrameSize sets smux's largest frame in bytes (default 8192, at most 65535).
func WithFrameSize(bytes int) Option { return func(c *config) { c.frameSize = bytes } }

// WithKeepAlive sets how often smux sends a keepalive (default 10s, at most
// 30s); the peer's keepalives are what keeps an idle session open under
// WithIdleTimeout.
func WithKeepAlive(d time.Duration) Option { return func(c *config) { c.keepAlive = d } }

// WithConns sets how many KCP sessions a Client keeps; streams are spread
// over them round-robin. Only NewClient uses it. Without this option a
// Client keeps one session and, while adaptation is on, a side session for
// the streams dialed while that one is busy with a transfer (see Client);
// with it, the Client keeps exactly n sessions, as the kcptun binaries'
// -conn does.
func WithConns(n int) Option {
	return scope("WithConns", n, entryClient, func(c *config) { c.conns, c.connsSet = n, true })
}

// WithAutoExpire makes a Client stop opening streams on a session older than d
// and open a fresh one (default 0, never). The old session is closed when its
// last stream ends or after the scavenge TTL, whichever comes first. Only
// NewClient uses it.
func WithAutoExpire(d time.Duration) Option {
	return scope("WithAutoExpire", d, entryClient, func(c *config) { c.autoExpire = d })
}

// WithScavengeTTL sets how long an expired session may keep serving its open
// streams before a Client closes it (default 600s). Only NewClient uses it.
func WithScavengeTTL(d time.Duration) Option {
	return scope("WithScavengeTTL", d, entryClient, func(c *config) { c.scavengeTTL = d })
}

// WithDialTimeout bounds how long Dial, and a DialContext whose context has no
// earlier deadline, wait for the server to acknowledge a new session
// (default 10s); a Client applies it to each session it dials. Only Dial and
// NewClient use it.
func WithDialTimeout(d time.Duration) Option {
	return scope("WithDialTimeout", d, entryDial|entryClient, func(c *config) { c.dialTimeout = d })
}

// WithMaxSessions caps how many KCP sessions a Listener keeps at once (default
// 4096). Datagrams that would open a session beyond the cap are dropped and
// counted in ListenerStats.RefusedSessions. Only Listen uses it.
func WithMaxSessions(n int) Option {
	return scope("WithMaxSessions", n, entryListen, func(c *config) { c.maxSessions = n })
}

// WithAcceptTimeout sets how long a Listener keeps a new KCP session that has
// not opened a stream yet (default 30s), so that stray or replayed datagrams
// cannot hold sessions open. Only Listen uses it.
func WithAcceptTimeout(d time.Duration) Option {
	return scope("WithAcceptTimeout", d, entryListen, func(c *config) { c.acceptTO = d })
}

// WithIdleTimeout closes a session, on either end and of every kind, that has
// received nothing for d (default 30s, smux's own timeout; at least the
// keepalive interval): it is closed d after the last byte it received, so
// within d plus one keepalive interval of the peer's going silent (the peer's
// last keepalive came at most one interval before). A session whose user has
// stopped reading and whose buffers are full is not idle: the peer cannot
// send. Operations on its streams then fail with ErrIdleTimeout. A Client
// replaces such a session; a Listener drops it.
func WithIdleTimeout(d time.Duration) Option { return func(c *config) { c.idleTimeout = d } }

// WithLogger sets where the SDK reports session events and non-fatal errors
// (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }
