package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// The netstacks' IP addresses, from TEST-NET-1 (RFC 5737). They exist only
// inside the two userspace stacks; the kernel only ever sees UDP datagrams
// on loopback that carry their packets.
var (
	clientIP = tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	serverIP = tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
)

const (
	// ipMTU is the MTU of the netstacks' links: a TCP segment is at most
	// this many bytes of IP packet, carried in one UDP datagram.
	ipMTU = 1500
	// linkQueue is the channel endpoint's outbound queue, in packets.
	linkQueue = 4096
	// tcpPort is the server's TCP port inside its netstack.
	tcpPort = 80
	// tcpBufferMax is the largest TCP send and receive buffer.
	tcpBufferMax = 8 << 20
	// tcpBufferDefault is a TCP send and receive buffer's size before
	// auto-tuning.
	tcpBufferDefault = 1 << 20
)

// TCPPath is an honest TCP baseline over an emulated path: two gVisor
// netstacks, each with a channel link endpoint whose IP packets are pumped
// to and from a UDP socket on loopback. The client's socket sends to a
// kcptuntest.Relay, which forwards to the server's socket, so TCP's own
// congestion control (CUBIC, with SACK and RACK loss detection, gVisor's
// defaults apart from the congestion control) reacts to the relay's loss,
// delay and bottleneck queue.
//
// Send and receive buffers may grow to 8 MiB, more than the largest
// bandwidth-delay product of the benchmark matrix, so TCP is not window
// limited; receive buffers are auto-tuned as in Linux.
type TCPPath struct {
	relay          *kcptuntest.Relay
	client, server *netstackNode
	ln             *gonet.TCPListener
	closeOnce      sync.Once
}

// NewTCPPath starts the two netstacks and a relay configured with cfg
// between them.
func NewTCPPath(cfg kcptuntest.Config) (*TCPPath, error) {
	server, err := newNetstackNode(serverIP)
	if err != nil {
		return nil, err
	}
	relay, err := kcptuntest.NewRelay(server.conn.LocalAddr().String(), cfg)
	if err != nil {
		server.close()
		return nil, fmt.Errorf("bench: tcp path: %w", err)
	}
	client, err := newNetstackNode(clientIP)
	if err != nil {
		_ = relay.Close()
		server.close()
		return nil, err
	}
	ra := relay.Addr().AddrPort()
	ra = netip.AddrPortFrom(ra.Addr().Unmap(), ra.Port())
	client.peer.Store(&ra)
	ln, err := gonet.ListenTCP(server.stack, tcpip.FullAddress{NIC: nicID, Addr: serverIP, Port: tcpPort}, ipv4.ProtocolNumber)
	if err != nil {
		client.close()
		_ = relay.Close()
		server.close()
		return nil, fmt.Errorf("bench: tcp path: listen: %w", err)
	}
	client.start()
	server.start()
	return &TCPPath{relay: relay, client: client, server: server, ln: ln}, nil
}

// Relay returns the emulator between the two netstacks.
func (p *TCPPath) Relay() *kcptuntest.Relay { return p.relay }

// Listener returns the server's TCP listener.
func (p *TCPPath) Listener() net.Listener { return p.ln }

// DialContext opens a TCP connection from the client netstack to the
// server's listener.
func (p *TCPPath) DialContext(ctx context.Context) (net.Conn, error) {
	c, err := gonet.DialContextTCP(ctx, p.client.stack, tcpip.FullAddress{NIC: nicID, Addr: serverIP, Port: tcpPort}, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("bench: tcp dial: %w", err)
	}
	return c, nil
}

// Close stops the listener, both netstacks (aborting their connections),
// their pumps and the relay, and waits for their goroutines.
func (p *TCPPath) Close() error {
	var err error
	p.closeOnce.Do(func() {
		_ = p.ln.Close()
		p.client.close()
		p.server.close()
		err = p.relay.Close()
	})
	return err
}

const nicID = 1

// netstackNode is one gVisor stack whose only NIC exchanges IP packets as
// UDP datagrams with peer.
type netstackNode struct {
	stack  *stack.Stack
	ep     *channel.Endpoint
	conn   *net.UDPConn
	peer   atomic.Pointer[netip.AddrPort] // where outbound packets go
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func newNetstackNode(addr tcpip.Address) (*netstackNode, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("bench: netstack socket: %w", err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocolCUBIC},
	})
	n := &netstackNode{stack: s, ep: channel.New(linkQueue, ipMTU, ""), conn: conn}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	fail := func(what string, e tcpip.Error) (*netstackNode, error) {
		n.close()
		return nil, fmt.Errorf("bench: netstack %s: %s", what, e)
	}
	nagle := tcpip.TCPDelayEnabled(false) // as Go's net package: TCP_NODELAY
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &nagle); e != nil {
		return fail("no delay", e)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		return fail("SACK", e)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: tcpBufferDefault, Max: tcpBufferMax}
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); e != nil {
		return fail("send buffer", e)
	}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: tcpBufferDefault, Max: tcpBufferMax}
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); e != nil {
		return fail("receive buffer", e)
	}
	if e := s.CreateNIC(nicID, n.ep); e != nil {
		return fail("NIC", e)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: addr.WithPrefix()}
	if e := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); e != nil {
		return fail("address", e)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}})
	return n, nil
}

// start runs the two pumps: outbound packets to UDP, UDP to inbound packets.
func (n *netstackNode) start() {
	n.wg.Add(2)
	go n.pumpOut()
	go n.pumpIn()
}

// pumpOut writes every packet the stack sends as one datagram to peer,
// until the node is closed.
func (n *netstackNode) pumpOut() {
	defer n.wg.Done()
	buf := make([]byte, 0, 64<<10)
	for {
		pkt := n.ep.ReadContext(n.ctx)
		if pkt == nil {
			return // closed
		}
		buf = buf[:0]
		for _, s := range pkt.AsSlices() {
			buf = append(buf, s...)
		}
		pkt.DecRef()
		peer := n.peer.Load()
		if peer == nil {
			continue // the server has not heard from the client yet
		}
		// A failed write is a lost packet, which TCP recovers from.
		_, _ = n.conn.WriteToUDPAddrPort(buf, *peer)
	}
}

// pumpIn injects every datagram received as an IPv4 packet, and learns the
// peer's address from the first one (the server replies to the relay's
// upstream socket).
func (n *netstackNode) pumpIn() {
	defer n.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		sz, from, err := n.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable reported on the socket
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if p := n.peer.Load(); p == nil || *p != from {
			n.peer.Store(&from)
		}
		if sz < header.IPv4MinimumSize || header.IPVersion(buf[:sz]) != header.IPv4Version {
			continue
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(buf[:sz])})
		n.ep.InjectInbound(ipv4.ProtocolNumber, pkt)
		pkt.DecRef()
	}
}

// close aborts the stack's endpoints, stops the pumps and releases
// everything; it is idempotent.
func (n *netstackNode) close() {
	n.once.Do(func() {
		n.stack.Close()
		n.cancel()
		_ = n.conn.Close()
		n.wg.Wait()
		n.ep.Close()
		n.stack.Wait()
	})
}
