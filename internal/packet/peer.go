package packet

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Peer is one remote end of a Conn: one KCP session.
type Peer struct {
	c    *Conn
	addr *net.UDPAddr // the address kcp-go knows the session by
	ap   netip.AddrPort
	dst  atomic.Pointer[dest] // where datagrams go now
	st   Stats
	conv uint32 // fixed at Bind; 0 for a client peer

	// receive side: the reader goroutine only
	dec      *decoder // made with the peer's first FEC datagram
	pushTS   uint32
	ackTS    uint32
	havePush bool
	haveAck  bool
	upSeq    uint32 // next seqid of a rebuilt packet handed to kcp-go

	// send side
	smu  sync.Mutex
	enc  encoder
	dups int // extra bare copies of each datagram with data (setShape)
	rnd  *rand.ChaCha8
	sbuf []byte // a pool buffer while write runs, nil otherwise
	pace pacer
	ad   atomic.Pointer[adaptive] // the adaptive controller, if enabled
	// reacks holds the ACKs an adaptive peer repeats (withRepeatedAcks).
	reacks ackRepeats

	gone atomic.Bool
}

// dest is a peer's current address.
type dest struct {
	ap netip.AddrPort
	ua *net.UDPAddr
}

func newSeededRand() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return rand.NewChaCha8(seed)
}

func (c *Conn) newPeer(addr *net.UDPAddr) *Peer {
	ap := addr.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	p := &Peer{c: c, addr: addr, ap: ap, rnd: newSeededRand(), upSeq: 1}
	p.dst.Store(&dest{ap: ap, ua: addr})
	p.enc.pool = &c.pool
	p.enc.setShape(c.cfg.DataShards, c.cfg.ParityShards)
	p.pace.p = p
	return p
}

// Stats returns the peer's counters.
func (p *Peer) Stats() *Stats { return &p.st }

// Addr returns the address kcp-go knows the peer by (its first address).
func (p *Peer) Addr() *net.UDPAddr { return p.addr }

// RemoteAddr returns the address the peer sends from now, which differs
// from Addr after a migration.
func (p *Peer) RemoteAddr() *net.UDPAddr { return p.dst.Load().ua }

// SetFEC changes the FEC shape this end sends with, from the next group on;
// data or parity 0 switches FEC off.
func (p *Peer) SetFEC(data, parity int) { p.setShape(data, parity, 0) }

// setShape is SetFEC that also sets the extra bare copies sent of each
// datagram with new or re-sent data, while FEC is off (the adaptive
// controller's one-data-shard groups, see fecShape).
func (p *Peer) setShape(data, parity, copies int) {
	p.smu.Lock()
	p.enc.setShape(data, parity)
	p.dups = max(copies, 0)
	p.smu.Unlock()
}

// SetRate sets the pacing rate in bytes per second; 0 sends every datagram
// at once, as fast as the socket takes it.
func (p *Peer) SetRate(bytesPerSecond uint64) { p.pace.setRate(bytesPerSecond) }

// Rate returns the pacing rate (0: unpaced).
func (p *Peer) Rate() uint64 { return p.pace.rate.Load() }

// unknownSource handles a datagram from an address no bound peer uses: with
// migration on, a datagram of a live session's conversation moves that
// session if it is newer than anything the session has seen, and is dropped
// (stale) otherwise, so that it cannot open a second session either.
func (c *Conn) unknownSource(from netip.AddrPort, info segInfo) (p *Peer, stale bool) {
	if !c.cfg.Migrate || info.segs == 0 {
		return nil, false
	}
	c.mu.RLock()
	p = c.convs[info.conv]
	c.mu.RUnlock()
	if p == nil {
		return nil, false
	}
	if !c.maybeMove(p, from, info) {
		p.st.StaleMoves.Add(1)
		return nil, true
	}
	return p, false
}

// maybeMove moves p to from if info is fresh; it reports whether it did.
func (c *Conn) maybeMove(p *Peer, from netip.AddrPort, info segInfo) bool {
	if !c.cfg.Migrate || info.segs == 0 || info.conv != p.conv {
		return false
	}
	fresh := (info.push && (!p.havePush || tsNewer(info.pushTS, p.pushTS))) ||
		(info.ack && (!p.haveAck || tsNewer(info.ackTS, p.ackTS)))
	if !fresh {
		return false
	}
	c.mu.Lock()
	if p.gone.Load() {
		c.mu.Unlock()
		return false
	}
	c.srcs[from] = p
	c.mu.Unlock()
	p.dst.Store(&dest{ap: from, ua: net.UDPAddrFromAddrPort(from)})
	p.st.Migrations.Add(1)
	return true
}

// account updates the receive counters from a datagram's KCP segments.
func (p *Peer) account(info segInfo) {
	if info.segs == 0 {
		return
	}
	p.st.SegmentsIn.Add(uint64(info.segs))
	if info.push && (!p.havePush || tsNewer(info.pushTS, p.pushTS)) {
		p.pushTS, p.havePush = info.pushTS, true
	}
	if info.ack {
		p.st.AcksIn.Add(uint64(info.acks))
		if !p.haveAck || tsNewer(info.ackTS, p.ackTS) {
			p.ackTS, p.haveAck = info.ackTS, true
		}
		if p.c.offOK.Load() {
			now := uint32(p.c.nowMs() - p.c.offset.Load())
			if d := int32(now - info.ackTS); d >= 0 && d < 600000 {
				p.st.rtt(uint64(d))
			}
		}
	}
	if info.hasUna {
		if tsNewer(info.una, p.st.rcvUna.Load()) {
			p.st.rcvUna.Store(info.una)
		}
	}
}

// write seals and sends one KCP packet to p.
func (p *Peer) write(b []byte) (int, error) {
	c := p.c
	p.smu.Lock()
	defer p.smu.Unlock()
	// Datagrams are sealed in pool buffers that pass, sealed, to the
	// sending queue (handOff); an idle peer holds none.
	defer func() {
		if p.sbuf != nil {
			c.pool.put(p.sbuf)
			p.sbuf = nil
		}
	}()
	n := len(b)
	b, extra := p.withRepeatedAcks(b)
	p.accountOut(b)
	meta, adaptive := p.adaptOut(b)
	head := c.cip.head
	if extra != nil {
		// Repeated ACKs that did not fit in b leave at once, as ACKs do,
		// and ahead of b: kcp-go counts each of b's ACKs towards the fast
		// retransmit of every segment still unacknowledged before it, and
		// re-sends as soon as it has taken a datagram.
		if err := p.transmit(p.handOff(c.cip.sealForQueue(append(p.scratch()[:head], extra...), p.rnd))); err != nil {
			return 0, err
		}
	}
	buf := p.scratch()[:head]
	encOn := p.enc.on() // once: a later call may apply a pending shape
	// ACKs, window probes and re-sends leave at once, ahead of the new data
	// in the pacing queue (see below). With an FEC header they would carry
	// seqids of groups the queue has not sent yet and arrive that far
	// ahead of them: the peer's decoder, which collects a few groups at a
	// time (kcp-go's three), then closed the older groups before their
	// shards came, and at 100 Mbit/s with 5 % loss left five times more
	// groups unrecoverable. They leave bare instead, so FEC seqids arrive
	// in the order they were given; receivers, kcp-go's included, take
	// bare KCP datagrams between FEC-framed ones.
	direct := adaptive && (meta.data == 0 || meta.resend)
	fec := encOn && !direct && !p.enc.bare(b)
	if fec {
		buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
	}
	buf = append(buf, b...)
	parity := false
	if fec {
		parity = p.enc.encodeData(buf[head:], time.Now().UnixMilli())
	}
	// The copies of a datagram with data: bare, only while FEC is off (a
	// datagram of a group being finished gets none).
	dups := 0
	if !encOn && meta.data > 0 {
		dups = p.dups
	}
	var err error
	if direct {
		// Only new data is paced: ACKs and window probes leave at once, or
		// an idle sender's low rate would hold back the peer's transfer,
		// and so do re-sends, which the peer's cumulative ACK waits for
		// (queued behind new data, they let KCP time out and re-send
		// everything queued).
		err = p.transmit(p.handOff(c.cip.sealForQueue(buf, p.rnd)))
		if err == nil && meta.data > 0 {
			p.transmitted(meta, true)
		}
	} else {
		err = p.pace.sendOwned(p.handOff(c.cip.sealForQueue(buf, p.rnd)), meta)
	}
	if err != nil {
		return 0, err
	}
	for range dups {
		// Sealed afresh: sealing ciphers buf in place. The copies carry
		// no meta, so the controller counts the segments once; the queue
		// tells them from a backlog of new data (qmeta.dup).
		buf = append(p.scratch()[:head], b...)
		d := p.handOff(c.cip.sealForQueue(buf, p.rnd))
		if direct {
			err = p.transmit(d)
		} else {
			err = p.pace.sendOwned(d, qmeta{dup: true})
		}
		if err != nil {
			return 0, err
		}
	}
	if parity {
		p.st.FECGroupsOut.Add(1)
		for i := range p.enc.m {
			ps := p.enc.parityShard(i, head)
			p.st.FECParityOut.Add(1)
			if err := p.pace.send(c.cip.sealForQueue(ps, p.rnd)); err != nil {
				p.enc.releaseParity()
				return 0, err
			}
		}
		p.enc.releaseParity() // sent: pace.send copies what it keeps
	}
	return n, nil
}

// accountOut counts the PUSH segments of an outgoing KCP packet and learns
// kcp-go's clock from their timestamps.
func (p *Peer) accountOut(b []byte) {
	now := p.c.nowMs()
	for len(b) >= kcpOverhead {
		n := binary.LittleEndian.Uint32(b[20:])
		if uint64(n) > uint64(len(b)-kcpOverhead) {
			return
		}
		if b[4] == cmdPush {
			ts := binary.LittleEndian.Uint32(b[8:])
			sn := binary.LittleEndian.Uint32(b[12:])
			p.st.SegmentsOut.Add(1)
			if next := p.st.sndNext.Load(); p.st.sentAny.Load() && int32(sn-next) < 0 {
				p.st.SegmentsResent.Add(1)
			} else {
				p.st.sndNext.Store(sn + 1)
				p.st.sentAny.Store(true)
				p.st.dataSent.Add(uint64(n))
			}
			off := now - int64(ts)
			if !p.c.offOK.Load() || off < p.c.offset.Load() {
				p.c.offset.Store(off)
				p.c.offOK.Store(true)
			}
		}
		b = b[kcpOverhead+int(n):]
	}
}

// scratch returns the buffer write seals the next datagram in, a pool buffer
// taken on demand.
func (p *Peer) scratch() []byte {
	if p.sbuf == nil {
		p.sbuf = p.c.pool.get()[:bufSize]
	}
	return p.sbuf
}

// handOff returns d, sealed in the scratch buffer, for the sending queue,
// which owns that buffer from here on; the next datagram takes another.
func (p *Peer) handOff(d []byte) []byte {
	p.sbuf = nil
	return d
}

// transmit sends one sealed datagram to the peer's current address, through
// the Conn's batching sender. d must come from cipher.sealForQueue, in a
// buffer from the Conn's pool, which passes to the sender.
func (p *Peer) transmit(d []byte) error {
	p.c.tx.send(p, d)
	return nil
}

// writeNow writes one datagram to dst with one system call.
func (p *Peer) writeNow(d []byte, dst *dest) {
	var err error
	if u := p.c.udp; u != nil {
		_, err = u.WriteToUDPAddrPort(d, dst.ap)
	} else {
		_, err = p.c.pc.WriteTo(d, dst.ua)
	}
	if err != nil {
		p.st.SendErrors.Add(1)
		return
	}
	p.st.DatagramsOut.Add(1)
	p.st.BytesOut.Add(uint64(len(d)))
	totals.outPkts.Add(1)
	totals.outBytes.Add(uint64(len(d)))
}
