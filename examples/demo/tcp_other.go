//go:build !linux

package main

import (
	"context"
	"errors"
	"net"

	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// errUnavailable wraps every reason why the TCP side cannot run here.
var errUnavailable = errors.New("TCP baseline unavailable: it runs the kernel's TCP between two Linux network namespaces")

type tcpPath struct {
	relay *kcptuntest.Relay
	ln    net.Listener
}

func tcpAvailable() error { return errUnavailable }

func newTCPPath(context.Context, kcptuntest.Config, string) (*tcpPath, error) {
	return nil, errUnavailable
}

func (p *tcpPath) dial(context.Context) (net.Conn, error) { return nil, errUnavailable }

func (p *tcpPath) Close() {}
