package packet

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// LocalAddr returns the socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// SetDeadline is not supported: kcp-go keeps its own deadlines.
func (c *Conn) SetDeadline(time.Time) error { return os.ErrNoDeadline }

// SetReadDeadline is not supported.
func (c *Conn) SetReadDeadline(time.Time) error { return os.ErrNoDeadline }

// SetWriteDeadline is not supported.
func (c *Conn) SetWriteDeadline(time.Time) error { return os.ErrNoDeadline }

// SetReadBuffer sets the socket's receive buffer, when it has one and the
// Conn owns it; a caller's socket is left alone.
func (c *Conn) SetReadBuffer(n int) error {
	if !c.cfg.OwnSocket {
		return nil // the caller's socket keeps the caller's settings
	}
	if s, ok := c.pc.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return errors.ErrUnsupported
}

// SetWriteBuffer sets the socket's send buffer, when it has one and the
// Conn owns it; a caller's socket is left alone.
func (c *Conn) SetWriteBuffer(n int) error {
	if !c.cfg.OwnSocket {
		return nil // the caller's socket keeps the caller's settings
	}
	if s, ok := c.pc.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return errors.ErrUnsupported
}

// socketSource reads the Conn's socket: in batches (recvmmsg) where the
// platform allows and the socket is a *net.UDPConn, else one datagram per
// call.
type socketSource struct {
	c     *Conn
	pc    net.PacketConn
	udp   *net.UDPConn
	own   bool
	batch *batchReader
	buf   []byte
}

func newSocketSource(c *Conn, own bool) *socketSource {
	s := &socketSource{c: c, pc: c.pc, udp: c.udp, own: own}
	if s.udp != nil {
		s.batch = newBatchReader(s.udp, own)
	}
	return s
}

func (s *socketSource) next() ([]byte, netip.AddrPort, error) {
	if s.batch != nil {
		return s.batch.next()
	}
	if s.buf == nil {
		s.buf = make([]byte, bufSize)
	}
	if s.udp != nil {
		n, ap, err := s.udp.ReadFromUDPAddrPort(s.buf[:MaxDatagram])
		return s.buf[:n], ap, err
	}
	for {
		n, addr, err := s.pc.ReadFrom(s.buf[:MaxDatagram])
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		if ua, ok := addr.(*net.UDPAddr); ok {
			return s.buf[:n], ua.AddrPort(), nil
		}
		s.c.Foreign.Add(1) // only UDP addresses are supported
	}
}

func (s *socketSource) unblock() {
	if s.own {
		_ = s.pc.Close()
		return
	}
	// A socket the caller owns is never closed: a past deadline wakes the
	// reader, which clears it again on its way out (done).
	_ = s.pc.SetReadDeadline(time.Unix(1, 0))
}

func (s *socketSource) done() {
	if !s.own {
		_ = s.pc.SetReadDeadline(time.Time{})
	}
}

// SetDSCP sets the DSCP field of the datagrams the socket sends, when it is
// a UDP socket the Conn owns; a caller's socket is left alone.
func (c *Conn) SetDSCP(dscp int) error {
	if !c.cfg.OwnSocket {
		return nil // the caller's socket keeps the caller's settings
	}
	if c.udp == nil {
		return errors.ErrUnsupported
	}
	err4 := ipv4.NewConn(c.udp).SetTOS(dscp << 2)
	err6 := ipv6.NewConn(c.udp).SetTrafficClass(dscp)
	if err4 != nil && err6 != nil {
		return err4
	}
	return nil
}
