package kcptun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/packet"
)

// packetConfig returns the packet layer's settings for a new socket.
func (c *config) packetConfig(ownSocket bool) (packet.Config, error) {
	block, err := c.blockCrypt()
	if err != nil {
		return packet.Config{}, err
	}
	// The decoder's first guess at the peer's shape is the configured
	// one (10+3 by default, as the kcptun binaries send); it learns the
	// peer's actual shape, and an adaptive session's encoder takes its
	// controller's shape (EnableAdaptive).
	ds, ps := c.dataShards, c.parityShards
	return packet.Config{
		Block:        block,
		DataShards:   ds,
		ParityShards: ps,
		// Only ciphers that authenticate may move a session: with none,
		// null or xor anyone could forge a datagram that moves it.
		Migrate:   migrates(c.crypt),
		OwnSocket: ownSocket,
	}, nil
}

// migrates reports whether sessions under the named cipher may move to a
// new client address.
func migrates(name string) bool {
	return crypt.Confidential(name) || crypt.Authenticated(name)
}

// kcpMTU is the MTU kcp-go gets: WithMTU less the packet layer's headers.
// Room for an FEC header is kept even with FEC off when the MTU allows, so
// that FEC can be switched on at run time.
func (c *config) kcpMTU() int {
	block, _ := c.blockCrypt()
	full := c.mtu - packet.Overhead(block)
	if full >= minKCPPayloadMTU {
		return full
	}
	return full + fecHeaderSize
}

// ListenPacket serves kcptun clients on pc, a socket the caller owns (a
// hole-punched socket, one from a socket-activation manager). The Listener
// reads every datagram that arrives on pc, so pc must not be read
// elsewhere while it runs. The Listener never closes pc and leaves its
// options (buffers, DSCP) as they are; WithSockBuf and WithDSCP do not
// apply. Close stops the Listener's reads by setting a past read deadline on
// pc and clears the deadline once its reader stopped.
func ListenPacket(pc net.PacketConn, opts ...Option) (*Listener, error) {
	cfg, err := newConfig(entryListen, opts)
	if err != nil {
		return nil, err
	}
	if pc == nil {
		return nil, fmt.Errorf("kcptun: listen packet: %w", errNilPacketConn)
	}
	pcfg, err := cfg.packetConfig(false)
	if err != nil {
		return nil, fmt.Errorf("kcptun: listen %s: %w", pc.LocalAddr(), err)
	}
	pconn := packet.NewConn(pc, pcfg)
	ln, err := kcp.ServeConn(nil, 0, 0, pconn)
	if err != nil {
		_ = pconn.Close()
		return nil, fmt.Errorf("kcptun: listen %s: %w", pc.LocalAddr(), err)
	}
	l := newListener(cfg)
	l.lns = append(l.lns, ln)
	l.pconns = append(l.pconns, pconn)
	l.start()
	return l, nil
}

var errNilPacketConn = errors.New("nil net.PacketConn")

// DialPacket opens a stream to the kcptun server at raddr on a KCP session
// of its own, sent and received through pc, a socket the caller owns. The
// SDK never closes pc and leaves its options alone (WithSockBuf and WithDSCP
// do not apply). Several DialPacket sessions to different servers may share
// one pc: the SDK reads pc in one goroutine and hands each datagram to the
// session of the address it came from, and datagrams from other addresses
// are dropped. While any such session is open, the caller must not read pc
// itself. A second session to the same raddr on the same pc fails, since the
// server would take both for one.
//
// Closing the stream closes its session. DialPacket waits, as Dial does, for
// the server to acknowledge the session (ErrNoResponse if it never does).
func DialPacket(ctx context.Context, pc net.PacketConn, raddr net.Addr, opts ...Option) (net.Conn, error) {
	c, err := newConfig(entryDial, opts)
	if err != nil {
		return nil, err
	}
	if pc == nil || raddr == nil {
		return nil, fmt.Errorf("kcptun: dial packet: %w", errNilPacketConn)
	}
	addr := raddr.String()
	ua, ok := raddr.(*net.UDPAddr)
	if !ok {
		if ua, err = net.ResolveUDPAddr("udp", addr); err != nil {
			return nil, fmt.Errorf("kcptun: dial %s: %w", addr, err)
		}
	}
	pcfg, err := c.packetConfig(false)
	if err != nil {
		return nil, fmt.Errorf("kcptun: dial %s: %w", addr, err)
	}
	pconn, err := packet.DialShared(pc, ua, pcfg)
	if err != nil {
		return nil, fmt.Errorf("kcptun: dial %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	start := time.Now()
	s, err := startSession(ctx, c, pconn, ua)
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		return nil, noResponseError(addr, c, time.Since(start))
	default:
		return nil, fmt.Errorf("kcptun: dial %s: %w", addr, err)
	}
	st, err := s.openStream()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("kcptun: dial %s: open stream: %w", addr, err)
	}
	return newStream(st, s, dialOwner{}), nil
}
