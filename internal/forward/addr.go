package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// DialTimeout bounds how long the server waits for its target to accept a
// connection.
const DialTimeout = 10 * time.Second

// IsUnixPath reports whether a local address (the client's --localaddr, the
// server's --target) names a unix socket rather than a TCP host:port: it
// does when it contains a path separator, as in "/run/kcptun.sock" or
// "./kcptun.sock".
func IsUnixPath(addr string) bool {
	return strings.ContainsAny(addr, `/\`)
}

// network returns "unix" or "tcp" for a local address.
func network(addr string) string {
	if IsUnixPath(addr) {
		return "unix"
	}
	return "tcp"
}

// ListenLocal listens on a TCP address or a unix socket path. A socket file
// left behind by an earlier run is removed first, unless something still
// accepts connections on it.
func ListenLocal(addr string) (net.Listener, error) {
	if IsUnixPath(addr) {
		if err := removeStaleSocket(addr); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen(network(addr), addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("listen %s: the file exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("listen %s: another process is listening on it", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("listen %s: removing the stale socket: %w", path, err)
	}
	return nil
}

// DialLocal connects to a TCP address or a unix socket path, giving up
// after DialTimeout or when ctx ends.
func DialLocal(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: DialTimeout}
	c, err := d.DialContext(ctx, network(addr), addr)
	if err != nil {
		return nil, fmt.Errorf("dial target: %w", err)
	}
	return c, nil
}
