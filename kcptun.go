// Package kcptun carries reliable TCP-style byte streams over KCP on UDP, for
// paths where TCP suffers: loss, long or jittery round trips, cross-ISP links.
//
// Dial and Listen hand out the standard net.Conn and net.Listener, so code
// that speaks TCP switches by changing one call:
//
//	ln, err := kcptun.Listen(":29900", kcptun.WithKey("secret"))
//	conn, err := kcptun.Dial("server.example:29900", kcptun.WithKey("secret"))
//
// A Client keeps a pool of KCP sessions and multiplexes many streams over them,
// as proxies need.
//
// The layers, outside in: UDP datagram, kcp-go's cipher and FEC header, KCP
// segments in stream mode, optional snappy framing, smux frames, the user's
// bytes. The wire format is that of the kcptun client and server binaries,
// and so are the defaults that must match, so an SDK end with no options
// talks to a binary run with no flags. Each session adapts its pacing, KCP's
// windows and its FEC shape to the path by itself (WithAdaptive);
// WithAdaptive(false) restores the binaries' fixed behaviour exactly, and
// WithWindow, WithFEC and WithRateLimit pin or cap single parts. The
// settings that must match between the two ends are the key and the cipher.
// The smux version and compression must match too, but they show in the
// first bytes of a session: a Listener answers each client in kind and a
// Client follows its server, unless WithSmuxVersion or WithCompression pins
// them.
//
// Every goroutine the package starts ends when the stream, Client or Listener
// that owns it is closed (a closed Dial stream's session once KCP has
// delivered what it holds, at most 5 s). kcp-go itself keeps goroutines that
// live as long as the process, shared by every session: its timer
// scheduler's (started from its init) and a small pool of packet workers
// (started with the first session). A go.uber.org/goleak check ignores them
// with
//
//	goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).run"),
//	goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.postProcessWorker"),
package kcptun

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Dial opens a stream to the kcptun server at addr on a KCP session of its
// own; closing the stream closes the session and its socket. addr is
// "host:port", or "host:min-max" to pick a random port of the range.
//
// Dial waits until the server acknowledged the session, for at most the
// WithDialTimeout duration (default 10s); if it never does, the error matches
// ErrNoResponse. Use a Client to open many streams over shared sessions.
func Dial(addr string, opts ...Option) (net.Conn, error) {
	return DialContext(context.Background(), addr, opts...)
}

// DialContext is Dial with a context that bounds the whole dial, name
// resolution included. The WithDialTimeout bound still applies when the
// context has no earlier deadline.
func DialContext(ctx context.Context, addr string, opts ...Option) (net.Conn, error) {
	c, err := newConfig(entryDial, opts)
	if err != nil {
		return nil, err
	}
	ra, err := parseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("kcptun: dial %s: %w", addr, err)
	}
	// A throwaway serverFormat still warns when the server speaks another
	// smux version or compression, and redials in it if that shows at once.
	s, err := new(serverFormat).open(ctx, c, addr, ra)
	if err != nil {
		return nil, err
	}
	st, err := s.openStream()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("kcptun: dial %s: open stream: %w", addr, err)
	}
	return newStream(st, s, dialOwner{}), nil
}

// openSession resolves ra and dials a session within the dial timeout,
// turning a silent server into ErrNoResponse.
func openSession(ctx context.Context, c *config, addr string, ra remoteAddr) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	start := time.Now()
	raddr, err := ra.resolve(ctx)
	if err != nil {
		return nil, fmt.Errorf("kcptun: dial %s: %w", addr, err)
	}
	s, err := dialSession(ctx, c, raddr)
	switch {
	case err == nil:
		return s, nil
	case errors.Is(err, context.DeadlineExceeded):
		return nil, noResponseError(addr, c, time.Since(start))
	default:
		return nil, fmt.Errorf("kcptun: dial %s: %w", addr, err)
	}
}

// remoteAddr is a parsed "host:port" or "host:min-max".
type remoteAddr struct {
	host   string
	lo, hi int
}

// parseAddr parses "host:port" or "host:min-max"; the host may be empty
// (loopback for a dial, every interface for a listen).
func parseAddr(addr string) (remoteAddr, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return remoteAddr{}, err
	}
	lo, hi := port, port
	if a, b, ok := strings.Cut(port, "-"); ok {
		lo, hi = a, b
	}
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || l < 0 || h > 65535 || l > h || (l == 0 && h != 0) {
		return remoteAddr{}, fmt.Errorf("bad port %q: want a port or a range min-max within 1-65535", port)
	}
	return remoteAddr{host: host, lo: l, hi: h}, nil
}

// port returns the only port, or a random one of the range.
func (r remoteAddr) port() int {
	if r.lo == r.hi {
		return r.lo
	}
	return r.lo + rand.IntN(r.hi-r.lo+1)
}

// resolve looks the host up and picks a port.
func (r remoteAddr) resolve(ctx context.Context) (*net.UDPAddr, error) {
	host := r.host
	if host == "" {
		host = "127.0.0.1"
	}
	var ip netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		ip = a
	} else {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("no address for %s", host)
		}
		ip = ips[0]
		for _, a := range ips { // prefer IPv4, as the binaries do
			if a.Is4() || a.Is4In6() {
				ip = a
				break
			}
		}
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(r.port()))), nil
}
