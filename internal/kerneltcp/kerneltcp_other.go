//go:build !linux

// Package kerneltcp runs the kernel's TCP between two Linux network
// namespaces through the link emulator; elsewhere it is unavailable.
package kerneltcp

import (
	"context"
	"errors"
	"net"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// ErrUnavailable wraps every reason why the kernel TCP path cannot run here.
var ErrUnavailable = errors.New("kernel TCP baseline unavailable: it needs Linux network namespaces and TUN devices")

// Available reports why the path cannot run here.
func Available() error { return ErrUnavailable }

// CongestionControlAvailable reports ErrUnavailable.
func CongestionControlAvailable(string) error { return ErrUnavailable }

// Path is not available on this system.
type Path struct{}

// New reports ErrUnavailable.
func New(context.Context, string, kcptuntest.Config, string) (*Path, error) {
	return nil, ErrUnavailable
}

// Relay returns nil.
func (p *Path) Relay() *kcptuntest.Relay { return nil }

// Listener returns nil.
func (p *Path) Listener() net.Listener { return nil }

// Dial reports ErrUnavailable.
func (p *Path) Dial(context.Context) (net.Conn, error) { return nil, ErrUnavailable }

// Close does nothing.
func (p *Path) Close() {}
