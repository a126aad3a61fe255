package kcptuntest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// socketBuffer is the send and receive buffer size requested for every
// socket of a relay, so that the kernel does not drop datagrams in bursts.
// The kernel may grant less (net.core.rmem_max, net.core.wmem_max).
const socketBuffer = 4 << 20

const (
	// maxDatagram is the size of a read buffer: the largest UDP payload.
	maxDatagram = 64 << 10
	// clientReadBatch and targetReadBatch bound the datagrams read per
	// system call from the listening socket and from an upstream socket,
	// where reads are batched; each takes a read buffer of maxDatagram.
	// writeBatchMax bounds the datagrams written per system call.
	clientReadBatch = 64
	targetReadBatch = 16
	writeBatchMax   = 64
)

// Relay is a UDP relay that forwards datagrams between clients and a
// target through two emulated links. Create one with NewRelay and stop it
// with Close. Its methods are safe for concurrent use.
type Relay struct {
	ln         *sock
	target     *net.UDPAddr
	maxClients int
	epoch      time.Time
	up, down   *direction

	// clients is written only by the goroutine reading ln, with mu held;
	// that goroutine reads it without mu, everyone else with mu.
	mu      sync.Mutex
	clients map[netip.AddrPort]*client
	closed  bool

	droppedClients atomic.Uint64
	rebinds        atomic.Uint64

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// client is one client source address and its upstream socket.
type client struct {
	addr netip.AddrPort
	name sockName // addr in the kernel's form, where I/O is batched
	up   atomic.Pointer[sock]
}

// sock is a UDP socket of the relay.
type sock struct {
	conn  *net.UDPConn
	batch batchConn   // conn as batched I/O sees it
	noGSO atomic.Bool // segmentation offload failed on this socket
}

func newSock(conn *net.UDPConn) (*sock, error) {
	_ = conn.SetReadBuffer(socketBuffer) // best effort: the kernel caps them
	_ = conn.SetWriteBuffer(socketBuffer)
	return &sock{conn: conn, batch: newBatchConn(conn)}, nil
}

// LinkStats counts what happened to the datagrams of one direction of a
// Relay since it started. Copies made by duplication count as datagrams
// from then on, so once every datagram has been dealt with
// Received + Duplicated = Delivered + DroppedLoss + DroppedQueue + SendErrors,
// and, in between, the difference is Pending.
type LinkStats struct {
	// Received is the number of datagrams that entered the direction, and
	// ReceivedBytes their payload bytes.
	Received, ReceivedBytes uint64
	// Delivered is the number of datagrams written to the next hop's
	// socket, duplicates included, and DeliveredBytes their payload bytes.
	Delivered, DeliveredBytes uint64
	// DroppedLoss is the number of datagrams dropped by the loss stage,
	// Loss or Burst.
	DroppedLoss uint64
	// DroppedQueue is the number of copies dropped because the bandwidth
	// queue was full or because the direction had MaxInFlightBytes in
	// flight.
	DroppedQueue uint64
	// Duplicated is the number of extra copies made by the duplication
	// stage.
	Duplicated uint64
	// Reordered is the number of copies that were held back and then
	// overtaken by their successors. Copies released by ReorderTimeout, and
	// copies reordered by jitter alone, do not count.
	Reordered uint64
	// SendErrors is the number of copies whose write to the next hop
	// failed, for instance because the target's port was closed.
	SendErrors uint64
	// Pending is the number of copies accepted and not yet written: in the
	// bandwidth queue, in the delay line, held back, or being written.
	Pending int
}

// Stats is a snapshot of a Relay's counters.
type Stats struct {
	// Up counts the datagrams from clients to the target.
	Up LinkStats
	// Down counts the datagrams from the target to clients.
	Down LinkStats
	// Clients is the number of client source addresses seen, each with an
	// upstream socket of its own.
	Clients int
	// DroppedClients is the number of datagrams dropped because they came
	// from a new client when MaxClients upstream sockets were open already,
	// or because no upstream socket could be opened for them. They are not
	// counted in Up.
	DroppedClients uint64
	// Rebinds is the number of upstream sockets replaced by Rebind.
	Rebinds uint64
}

// NewRelay starts a relay that forwards datagrams received on its listening
// address (see Config.ListenAddr and Relay.Addr) to target, a "host:port"
// UDP address, through the links of cfg. It returns an error, naming the
// field, if cfg is invalid, or if target cannot be resolved or the
// listening socket opened.
func NewRelay(target string, cfg Config) (*Relay, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	taddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, fmt.Errorf("kcptuntest: resolve target %q: %w", target, err)
	}
	listen := cfg.ListenAddr
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	laddr, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("kcptuntest: resolve listen address %q: %w", listen, err)
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("kcptuntest: listen on %q: %w", listen, err)
	}
	ln, err := newSock(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("kcptuntest: listen on %q: %w", listen, err)
	}
	r := &Relay{
		ln:         ln,
		target:     taddr,
		maxClients: cfg.MaxClients,
		epoch:      time.Now(),
		clients:    make(map[netip.AddrPort]*client),
		done:       make(chan struct{}),
	}
	if r.maxClients == 0 {
		r.maxClients = DefaultMaxClients
	}
	r.up = newDirection(r, true, cfg.Seed, cfg.Up)
	r.down = newDirection(r, false, cfg.Seed, cfg.Down)
	r.wg.Add(3)
	go r.up.run()
	go r.down.run()
	go r.readClients()
	return r, nil
}

// now returns the time since the relay started, in nanoseconds, from the
// monotonic clock.
func (r *Relay) now() int64 { return int64(time.Since(r.epoch)) }

// Addr returns the address clients send to.
func (r *Relay) Addr() *net.UDPAddr {
	a := *r.ln.conn.LocalAddr().(*net.UDPAddr)
	a.IP = slices.Clone(a.IP)
	return &a
}

// Target returns the resolved address the relay forwards to.
func (r *Relay) Target() *net.UDPAddr {
	a := *r.target
	a.IP = slices.Clone(a.IP)
	return &a
}

// SetLinks replaces the links of both directions, for the datagrams that
// enter them from now on. Datagrams already in flight keep the delivery
// times they were given, so after a cut in Delay new datagrams can overtake
// them. The random generators, the Gilbert-Elliott state (unless Burst is
// now nil) and the bandwidth queue carry on, so decisions stay
// reproducible. It returns an error naming the bad field, and changes
// nothing, if a link is invalid.
func (r *Relay) SetLinks(up, down Link) error {
	if err := up.validate("Up"); err != nil {
		return err
	}
	if err := down.validate("Down"); err != nil {
		return err
	}
	r.up.setLink(up)
	r.down.setLink(down)
	return nil
}

// Links returns copies of the current links of both directions.
func (r *Relay) Links() (up, down Link) {
	return r.up.link(), r.down.link()
}

// Stats returns a snapshot of the relay's counters. The counters are read
// one after the other while datagrams may be moving, but in an order that
// makes a direction's snapshot with Received = n and Pending = 0 final for
// the first n datagrams of that direction: every copy of them is counted
// in Delivered, DroppedLoss, DroppedQueue or SendErrors. Tests can wait for
// that to know that the relay is done with what they sent.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	n := len(r.clients)
	r.mu.Unlock()
	return Stats{
		Up:             r.up.stats(),
		Down:           r.down.stats(),
		Clients:        n,
		DroppedClients: r.droppedClients.Load(),
		Rebinds:        r.rebinds.Load(),
	}
}

// Rebind replaces the upstream socket of every client with a new one on a
// new local port, so that the target sees each client's source port change
// in the middle of its session, as behind a NAT that rebinds. Datagrams
// the target sends to an old port afterwards are lost; datagrams of the Up
// direction still in flight leave from the new socket. On failure to open a
// socket the client keeps its old one, the other clients are rebound all
// the same, and the errors are returned joined.
func (r *Relay) Rebind() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("kcptuntest: rebind: %w", net.ErrClosed)
	}
	var errs []error
	for _, c := range r.clients {
		s, err := r.dialTarget()
		if err != nil {
			errs = append(errs, fmt.Errorf("kcptuntest: rebind client %v: %w", c.addr, err))
			continue
		}
		old := c.up.Swap(s)
		_ = old.conn.Close() // stops its reader
		r.rebinds.Add(1)
		r.wg.Add(1)
		go r.readTarget(c, s)
	}
	return errors.Join(errs...)
}

// Close stops the relay: it closes every socket and waits for every
// goroutine of the relay to return. Datagrams in flight are discarded.
// Close may be called more than once and concurrently; every call returns
// the result of the first. After Close, Addr, Target, Links and Stats still
// work, SetLinks has no effect, and Rebind returns an error that matches
// net.ErrClosed.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		close(r.done)
		err := r.ln.conn.Close()
		for _, c := range r.clients {
			_ = c.up.Load().conn.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
		if err != nil {
			r.closeErr = fmt.Errorf("kcptuntest: close: %w", err)
		}
	})
	return r.closeErr
}

func (r *Relay) dialTarget() (*sock, error) {
	conn, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		return nil, err
	}
	s, err := newSock(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// readClients reads the listening socket and feeds the Up direction.
func (r *Relay) readClients() {
	defer r.wg.Done()
	br := newBatchReader(r.ln, true, clientReadBatch)
	var (
		in       []datagram
		o        outbox
		last     *client
		lastAddr netip.AddrPort
	)
	for {
		n, err := br.read()
		if err != nil {
			if r.isClosed(err) {
				return
			}
			continue
		}
		for i := range n {
			from := br.source(i)
			c := last
			if c == nil || from != lastAddr {
				if c = r.clients[from]; c == nil {
					if c = r.newClient(from, br.name(i)); c == nil {
						r.droppedClients.Add(1)
						continue
					}
				}
				last, lastAddr = c, from
			}
			in = append(in, datagram{br.datagram(i), c})
		}
		if len(in) > 0 {
			r.up.input(in, &o)
			clear(in)
			in = in[:0]
		}
	}
}

// newClient opens the upstream socket of a new client and starts reading
// it. It returns nil if the relay is full or closed, or the socket cannot
// be opened.
func (r *Relay) newClient(from netip.AddrPort, name sockName) *client {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || len(r.clients) >= r.maxClients {
		return nil
	}
	s, err := r.dialTarget()
	if err != nil {
		return nil
	}
	c := &client{addr: from, name: name}
	c.up.Store(s)
	r.clients[from] = c
	r.wg.Add(1)
	go r.readTarget(c, s)
	return c
}

// readTarget reads the upstream socket s of c and feeds the Down
// direction, until s is closed.
func (r *Relay) readTarget(c *client, s *sock) {
	defer r.wg.Done()
	br := newBatchReader(s, false, targetReadBatch)
	var (
		in []datagram
		o  outbox
	)
	for {
		n, err := br.read()
		if err != nil {
			if r.isClosed(err) {
				return
			}
			continue // e.g. ECONNREFUSED: the target's port was closed
		}
		for i := range n {
			in = append(in, datagram{br.datagram(i), c})
		}
		r.down.input(in, &o)
		clear(in)
		in = in[:0]
	}
}

// isClosed reports whether a read error means the socket or the relay is
// closed.
func (r *Relay) isClosed(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return true
	}
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}
