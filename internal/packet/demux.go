package packet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ErrPeerInUse is returned by DialShared for a second session to the same
// address over one socket: a server tells its clients apart by address, so
// the two would collide.
var ErrPeerInUse = errors.New("the socket already carries a session to this address")

// shared is the process-wide table of sockets that DialShared sessions
// share. It is the one piece of package state: sessions that are created
// independently on a caller's socket must find the reader already running
// on it.
var shared = struct {
	sync.Mutex
	m map[net.PacketConn]*demux
}{m: make(map[net.PacketConn]*demux)}

// demuxQueue bounds the datagrams waiting for one session's reader.
const demuxQueue = 512

// demux reads a caller's socket in one goroutine and hands each datagram to
// the session whose server sent it.
type demux struct {
	pc    net.PacketConn
	udp   *net.UDPConn
	pool  bufPool
	mu    sync.Mutex
	peers map[netip.AddrPort]*demuxSource
	done  chan struct{} // closed when the reader has stopped
	stop  bool
}

// demuxSource is one session's share of a demux.
type demuxSource struct {
	d      *demux
	ap     netip.AddrPort
	c      *Conn
	q      chan []byte
	closed chan struct{}
	once   sync.Once
	last   []byte // the datagram handed out last, returned to the pool on the next
}

// DialShared returns a client Conn for the server at raddr over pc, a
// socket the caller owns and that other DialShared Conns (to other servers)
// may share. The Conn never closes pc; when the last Conn on pc is closed
// the reader stops, leaving pc's read deadline cleared.
func DialShared(pc net.PacketConn, raddr *net.UDPAddr, cfg Config) (*Conn, error) {
	cfg.OwnSocket = false
	ap := raddr.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	shared.Lock()
	defer shared.Unlock()
	d := shared.m[pc]
	if d == nil {
		d = &demux{pc: pc, peers: make(map[netip.AddrPort]*demuxSource), done: make(chan struct{})}
		d.udp, _ = pc.(*net.UDPConn)
		shared.m[pc] = d
		go d.run()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.peers[ap] != nil {
		return nil, fmt.Errorf("packet: %s: %w", raddr, ErrPeerInUse)
	}
	src := &demuxSource{d: d, ap: ap, q: make(chan []byte, demuxQueue), closed: make(chan struct{})}
	c := newDemuxConn(pc, raddr, cfg, src)
	src.c = c
	d.peers[ap] = src
	return c, nil
}

// run reads pc until stopped.
func (d *demux) run() {
	defer close(d.done)
	for {
		b := d.pool.get()[:MaxDatagram]
		var n int
		var ap netip.AddrPort
		var err error
		if d.udp != nil {
			n, ap, err = d.udp.ReadFromUDPAddrPort(b)
		} else {
			var addr net.Addr
			n, addr, err = d.pc.ReadFrom(b)
			if ua, ok := addr.(*net.UDPAddr); ok {
				ap = ua.AddrPort()
			}
		}
		if err != nil {
			d.pool.put(b)
			d.mu.Lock()
			stop := d.stop
			d.mu.Unlock()
			var ne net.Error
			if stop || !(errors.As(err, &ne) && ne.Timeout()) {
				d.fail()
				return
			}
			continue
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		d.mu.Lock()
		src := d.peers[ap]
		d.mu.Unlock()
		if src == nil {
			d.pool.put(b)
			continue
		}
		select {
		case src.q <- b[:n]:
		default:
			d.pool.put(b)
			if p := src.c.fixed; p != nil {
				p.st.QueueDrops.Add(1)
			}
		}
	}
}

// fail ends every session's reads after the socket failed or the demux
// stopped.
func (d *demux) fail() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.peers {
		s.unblock()
	}
}

// remove takes a closed session out; the last one stops the reader.
func (d *demux) remove(s *demuxSource) {
	shared.Lock()
	defer shared.Unlock()
	d.mu.Lock()
	if d.peers[s.ap] == s {
		delete(d.peers, s.ap)
	}
	last := len(d.peers) == 0
	if last {
		d.stop = true
	}
	d.mu.Unlock()
	if !last {
		return
	}
	delete(shared.m, d.pc)
	// The reader may be blocked in ReadFrom: a past deadline wakes it, and
	// the deadline is cleared once it stopped.
	_ = d.pc.SetReadDeadline(time.Unix(1, 0))
	<-d.done
	_ = d.pc.SetReadDeadline(time.Time{})
}

func (s *demuxSource) next() ([]byte, netip.AddrPort, error) {
	if s.last != nil {
		s.d.pool.put(s.last)
		s.last = nil
	}
	select {
	case d := <-s.q:
		s.last = d
		return d, s.ap, nil
	case <-s.closed:
		return nil, netip.AddrPort{}, net.ErrClosed
	}
}

func (s *demuxSource) unblock() { s.once.Do(func() { close(s.closed) }) }

// done is called by the Conn's reader after Close: the session leaves the
// demux.
func (s *demuxSource) done() {}

// leave is called by Conn.Close for a demux session.
func (s *demuxSource) leave() {
	s.unblock()
	s.d.remove(s)
	for {
		select {
		case b := <-s.q:
			s.d.pool.put(b)
		default:
			return
		}
	}
}

// Shared reports whether DialShared sessions still read pc.
func Shared(pc net.PacketConn) bool {
	shared.Lock()
	defer shared.Unlock()
	_, ok := shared.m[pc]
	return ok
}
