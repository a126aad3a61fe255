package packet

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// Config configures a Conn.
type Config struct {
	// Block is the packet cipher from crypt.New; nil means no crypto
	// header (cipher "null"). One BlockCrypt serves every peer, sealing
	// from several goroutines while one opens: kcp-go's block ciphers lock
	// each direction themselves (crypt.New gives sm4 one instance per
	// direction), and AES-GCM, salsa20, xor and none keep no state.
	Block kcp.BlockCrypt
	// DataShards and ParityShards are the FEC shape this end sends with
	// (0 and 0: no FEC header) and the first guess of the peer's shape.
	DataShards, ParityShards int
	// Migrate lets a server peer move to a new address when a datagram from
	// there authenticates, carries the conversation of a live session and
	// a KCP timestamp newer than any seen. Set it only for ciphers that
	// authenticate (not none, null or xor).
	Migrate bool
	// OwnSocket makes Close close the socket.
	OwnSocket bool
	// AuthFailed, when set, is handed a datagram that failed
	// authentication, as it arrived, with its sender, for diagnosis (with
	// cipher null: a datagram from a new address that is not KCP). It is
	// called from the reading goroutine at most once per authFailedEvery,
	// so a flood costs it nothing, and must not keep the slice.
	AuthFailed func(from net.Addr, datagram []byte)
}

// authFailedEvery spaces the calls of Config.AuthFailed.
const authFailedEvery = 100 * time.Millisecond

// Overhead returns how many bytes of a datagram the packet layer uses for
// a cipher: its crypto header (and AEAD tag) plus room for an FEC header,
// which is always reserved so that FEC can be switched on at run time.
func Overhead(block kcp.BlockCrypt) int { return newCipher(block).overhead() + fecHeaderSize }

// ErrClosed is returned by the methods of a closed Conn; it is net.ErrClosed.
var ErrClosed = net.ErrClosed

// maxPending bounds the recovered packets waiting for kcp-go's reader.
const maxPending = 256

// Conn is the net.PacketConn kcp-go runs on. kcp-go writes bare KCP packets
// to it and reads bare KCP packets from it; the Conn turns them into and
// from kcptun datagrams on a real socket.
//
// Peers are the remote ends the Conn knows: a client Conn has exactly one
// (NewClientConn), a server Conn learns them through Bind. Datagrams from an
// address that is not a bound peer still reach kcp-go (that is how a new
// session starts), without FEC recovery or counters.
type Conn struct {
	pc     net.PacketConn
	udp    *net.UDPConn // pc, when it is one
	src    source       // where datagrams are read from
	cip    *cipher
	cfg    Config
	pool   bufPool
	epoch  time.Time
	offset atomic.Int64 // min(our ms clock - kcp-go's ts) seen on output
	offOK  atomic.Bool

	mu    sync.RWMutex
	orig  map[netip.AddrPort]*Peer // by the address kcp-go knows
	srcs  map[netip.AddrPort]*Peer // by every address a peer sends from
	convs map[uint32]*Peer
	fixed *Peer // a client Conn's only peer

	// reader state: used by the goroutine in ReadFrom
	rmu      sync.Mutex
	raw      []byte    // an AEAD datagram as it arrived, for Config.AuthFailed
	rawAfter int       // how many more AEAD datagrams to keep raw after a failure
	lastDiag time.Time // when Config.AuthFailed was last called
	pend     [][]byte
	pendPeer []*Peer

	// unbound senders: kcp-go answers a new address before Bind
	umu  sync.Mutex
	ubuf []byte
	urnd *rand.ChaCha8

	AuthFailures atomic.Uint64 // datagrams that failed authentication
	Foreign      atomic.Uint64 // datagrams dropped: unexpected source or malformed

	tx txQueue // batching sender

	closed    chan struct{}
	closeOnce sync.Once
}

// source delivers raw datagrams.
type source interface {
	// next returns the next datagram, in a buffer the caller may modify
	// and that stays valid until the following call.
	next() ([]byte, netip.AddrPort, error)
	// unblock makes a blocked read return; called once by Close.
	unblock()
	// done is called by the reader after a read failed on a closed Conn.
	done()
}

// NewConn returns a server Conn over pc: peers come and go with Bind and
// Forget.
func NewConn(pc net.PacketConn, cfg Config) *Conn {
	c := newConn(pc, cfg)
	c.src = newSocketSource(c, cfg.OwnSocket)
	return c
}

// NewClientConn returns a Conn with one peer, the server at raddr;
// datagrams from any other address are dropped.
func NewClientConn(pc net.PacketConn, raddr *net.UDPAddr, cfg Config) *Conn {
	c := newConn(pc, cfg)
	c.src = newSocketSource(c, cfg.OwnSocket)
	c.fixed = c.newPeer(raddr)
	return c
}

// newDemuxConn returns a client Conn fed by a shared socket's demultiplexer.
func newDemuxConn(pc net.PacketConn, raddr *net.UDPAddr, cfg Config, src source) *Conn {
	c := newConn(pc, cfg)
	c.src = src
	c.fixed = c.newPeer(raddr)
	return c
}

func newConn(pc net.PacketConn, cfg Config) *Conn {
	c := &Conn{
		pc:     pc,
		cip:    newCipher(cfg.Block),
		cfg:    cfg,
		epoch:  time.Now(),
		orig:   make(map[netip.AddrPort]*Peer),
		srcs:   make(map[netip.AddrPort]*Peer),
		convs:  make(map[uint32]*Peer),
		closed: make(chan struct{}),
	}
	c.udp, _ = pc.(*net.UDPConn)
	c.tx.init(c)
	return c
}

// Bind registers the session kcp-go opened for addr (as returned by
// ReadFrom) with conversation conv, so that its datagrams get FEC, counters
// and, with Config.Migrate, migration. It returns the peer.
func (c *Conn) Bind(addr net.Addr, conv uint32) *Peer {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return nil
	}
	if c.fixed != nil {
		return c.fixed
	}
	p := c.newPeer(ua)
	p.conv = conv
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.orig[p.ap]; old != nil {
		c.forgetLocked(old)
	}
	c.orig[p.ap] = p
	c.srcs[p.ap] = p
	if _, dup := c.convs[conv]; dup {
		// Two live sessions share a conversation id: migration cannot
		// tell them apart, so neither may move.
		c.convs[conv] = nil
	} else {
		c.convs[conv] = p
	}
	return p
}

// Forget removes a peer whose session ended.
func (c *Conn) Forget(p *Peer) {
	if p == nil || p == c.fixed {
		return
	}
	c.mu.Lock()
	c.forgetLocked(p)
	c.mu.Unlock()
}

func (c *Conn) forgetLocked(p *Peer) {
	if p.gone.Swap(true) {
		return
	}
	if c.orig[p.ap] == p {
		delete(c.orig, p.ap)
	}
	for ap, q := range c.srcs {
		if q == p {
			delete(c.srcs, ap)
		}
	}
	if q, ok := c.convs[p.conv]; ok && (q == p || q == nil) {
		delete(c.convs, p.conv)
	}
	p.pace.stop()
}

// Peers calls f for every bound peer.
func (c *Conn) Peers(f func(*Peer)) {
	c.mu.RLock()
	ps := make([]*Peer, 0, len(c.orig))
	for _, p := range c.orig {
		ps = append(ps, p)
	}
	c.mu.RUnlock()
	for _, p := range ps {
		f(p)
	}
}

// Peer returns the client Conn's peer.
func (c *Conn) Peer() *Peer { return c.fixed }

// ReadFrom returns the next KCP packet for kcp-go, with the address kcp-go
// knows its session by. It is called by one goroutine at a time.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if len(c.pend) > 0 {
			r, p := c.pend[0], c.pendPeer[0]
			copy(c.pend, c.pend[1:])
			copy(c.pendPeer, c.pendPeer[1:])
			c.pend = c.pend[:len(c.pend)-1]
			c.pendPeer[len(c.pendPeer)-1] = nil
			c.pendPeer = c.pendPeer[:len(c.pendPeer)-1]
			// A rebuilt packet is older than what came since, so KCP must
			// neither take its window as current nor its ACKs as RTT
			// samples; kcp-go tells its KCP so only for packets its own FEC
			// decoder rebuilt. So the packet goes up as the parity shard of
			// a group of one data and one parity shard: kcp-go's decoder
			// (which it creates for the first FEC packet) rebuilds the data
			// shard, which Reed-Solomon makes equal to its only parity
			// shard, and hands it to KCP as rebuilt.
			binary.LittleEndian.PutUint32(b, p.upSeq)
			binary.LittleEndian.PutUint16(b[fecTypeOffset:], typeParity)
			p.upSeq += 2
			if p.upSeq >= paws(2) {
				p.upSeq = 1
			}
			p.adaptIn(r[2:]) // r is the shard from its size field on
			n := fecShardStart + copy(b[fecShardStart:], r)
			c.pool.put(r)
			return n, p.addr, nil
		}
		dgram, from, err := c.src.next()
		if err != nil {
			select {
			case <-c.closed:
				c.src.done()
				return 0, nil, &net.OpError{Op: "read", Net: "udp", Err: ErrClosed}
			default:
			}
			return 0, nil, err
		}
		if n, addr, ok := c.input(dgram, from, b); ok {
			return n, addr, nil
		}
	}
}

// rawWindow is how many AEAD datagrams are kept raw after a failure.
const rawWindow = 64

// authFailed hands a datagram that failed authentication to
// Config.AuthFailed, as it arrived, when a diagnosis is due. raw says a
// copy of the AEAD datagram was kept.
func (c *Conn) authFailed(dgram []byte, from netip.AddrPort, raw bool) {
	if c.cfg.AuthFailed == nil {
		return
	}
	if c.cip.aead != nil {
		c.rawAfter = rawWindow
		if !raw {
			return // the next failure from this sender will carry its copy
		}
		dgram = c.raw
	}
	if !c.diagnosisDue() {
		return
	}
	if c.cip.aead == nil && c.cip.block != nil && len(dgram) >= cryptHeaderSize {
		c.cip.block.Encrypt(dgram, dgram) // CFB and stream ciphers: enciphering again restores it
	}
	c.cfg.AuthFailed(net.UDPAddrFromAddrPort(from), dgram)
}

// diagnosisDue reports whether Config.AuthFailed is set and may be called
// now. Only the reading goroutine calls it.
func (c *Conn) diagnosisDue() bool {
	if c.cfg.AuthFailed == nil {
		return false
	}
	now := time.Now()
	if now.Sub(c.lastDiag) < authFailedEvery {
		return false
	}
	c.lastDiag = now
	return true
}

// input processes one datagram from `from`; if it yields a KCP packet for
// kcp-go it copies it to b.
func (c *Conn) input(dgram []byte, from netip.AddrPort, b []byte) (int, net.Addr, bool) {
	size := len(dgram)
	// AES-GCM clears a datagram that fails to open, so the diagnosis needs
	// a copy; it is made only for a while after a failure, so traffic that
	// authenticates is never copied. (Other ciphers are restored instead.)
	keepRaw := c.rawAfter > 0
	if keepRaw {
		c.raw = append(c.raw[:0], dgram...)
		c.rawAfter--
	}
	data, ok := c.cip.open(dgram)
	if !ok {
		c.AuthFailures.Add(1)
		totals.authFailures.Add(1)
		c.authFailed(dgram, from, keepRaw)
		return 0, nil, false
	}
	totals.inPkts.Add(1)
	totals.inBytes.Add(uint64(size))
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	var p *Peer
	if c.fixed != nil {
		p = c.fixed
		if from != p.dst.Load().ap {
			c.Foreign.Add(1)
			return 0, nil, false
		}
	} else {
		c.mu.RLock()
		p = c.srcs[from]
		c.mu.RUnlock()
	}
	// Split off the FEC header.
	var kcpBytes []byte
	fec, parity := false, false
	var seq uint32
	if len(data) >= fecHeaderSize {
		switch binary.LittleEndian.Uint16(data[fecTypeOffset:]) {
		case typeData:
			fec = true
			seq = binary.LittleEndian.Uint32(data)
			kcpBytes = data[fecHeaderSize:]
		case typeParity:
			fec, parity = true, true
			seq = binary.LittleEndian.Uint32(data)
		default:
			kcpBytes = data
		}
	} else {
		kcpBytes = data
	}
	info := scanSegments(kcpBytes)
	if p == nil {
		var stale bool
		p, stale = c.unknownSource(from, info)
		if stale {
			return 0, nil, false // a live session's, but not newer: a replay
		}
		if p == nil {
			// A new session, or one kcp-go must refuse: kcp-go decides.
			if c.cip.block == nil && !fec && !info.wellFormed && c.diagnosisDue() {
				// Without a cipher nothing authenticates: a datagram that is
				// not KCP may come from a client that has one.
				c.cfg.AuthFailed(net.UDPAddrFromAddrPort(from), dgram)
			}
			if parity || len(kcpBytes) < kcpOverhead {
				c.Foreign.Add(1)
				return 0, nil, false
			}
			return copy(b, kcpBytes), net.UDPAddrFromAddrPort(from), true
		}
	} else if c.fixed == nil && from != p.dst.Load().ap {
		c.maybeMove(p, from, info)
	}
	p.st.DatagramsIn.Add(1)
	p.st.BytesIn.Add(uint64(size))
	p.account(info)
	if fec {
		if len(c.pend) < maxPending {
			if p.dec == nil { // the peer's first FEC datagram
				p.dec = newDecoder(c.cfg.DataShards, c.cfg.ParityShards, &c.pool, &p.st)
			}
			before := len(c.pend)
			c.pend = p.dec.feed(seq, parity, data[fecShardStart:], c.pend)
			for range len(c.pend) - before {
				c.pendPeer = append(c.pendPeer, p)
			}
		} else {
			p.st.QueueDrops.Add(1)
		}
	}
	if parity || len(kcpBytes) == 0 {
		return 0, nil, false
	}
	p.adaptIn(kcpBytes)
	n := copy(b, kcpBytes)
	return n + p.timeoutHint(b[:n], b[n:], info), p.addr, true
}

func (c *Conn) nowMs() int64 { return int64(time.Since(c.epoch) / time.Millisecond) }

// WriteTo seals one KCP packet from kcp-go and sends it to the peer kcp-go
// knows as addr.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, &net.OpError{Op: "write", Net: "udp", Err: ErrClosed}
	default:
	}
	if len(b) > MaxDatagram {
		return 0, errors.New("packet: KCP packet larger than a datagram")
	}
	p := c.fixed
	if p == nil {
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			return 0, errors.New("packet: not a UDP address")
		}
		ap := ua.AddrPort()
		c.mu.RLock()
		p = c.orig[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
		c.mu.RUnlock()
		if p == nil || p.addr != ua {
			return c.writeUnbound(b, ua)
		}
	}
	return p.write(b)
}

// writeUnbound sends for a session not (or no longer) bound, without FEC: a
// receiver accepts KCP packets without an FEC header whatever its setting.
func (c *Conn) writeUnbound(b []byte, ua *net.UDPAddr) (int, error) {
	c.umu.Lock()
	defer c.umu.Unlock()
	if c.ubuf == nil {
		c.ubuf = make([]byte, bufSize)
		c.urnd = newSeededRand()
	}
	buf := append(c.ubuf[:c.cip.head], b...)
	d := c.cip.seal(buf, c.urnd)
	if _, err := c.pc.WriteTo(d, ua); err != nil {
		return 0, err
	}
	totals.outPkts.Add(1)
	totals.outBytes.Add(uint64(len(d)))
	return len(b), nil
}

// Close stops the Conn: a blocked ReadFrom returns, later writes fail, and
// the socket is closed if the Conn owns it.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.mu.Lock()
		for _, p := range c.orig {
			p.pace.stop()
		}
		c.mu.Unlock()
		if c.fixed != nil {
			c.fixed.pace.stop()
		}
		c.tx.close()
		if d, ok := c.src.(*demuxSource); ok {
			d.leave()
		} else {
			c.src.unblock()
		}
	})
	return nil
}
