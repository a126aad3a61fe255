// Command client is the kcptun forwarding client, a drop-in replacement for
// the classic kcptun client binary: it accepts TCP connections (or unix
// socket connections) on --localaddr and forwards each as a stream over a
// pool of KCP sessions to the kcptun server at --remoteaddr.
//
//	client -l :12948 -r vps:29900 --key secret --crypt aes-128-gcm
//	client -c /etc/kcptun/client.json
//
// Every flag of the classic binary is accepted, as -name or --name, with the
// same defaults; -h lists them. A -c JSON file (keys are the long flag names
// without dashes) overrides the command line. --key defaults to the
// KCPTUN_KEY environment variable. Bad values print one line on stderr and
// exit with status 2.
//
// SIGUSR1 logs the SNMP counters. SIGINT or SIGTERM stops accepting, lets
// open connections finish for up to five seconds (a second signal cuts this
// short), then closes them. --pprof serves net/http/pprof on 127.0.0.1:6060.
//
// Everything but the flag table and the process set-up around forwarding
// (internal/forward) is in this file, on the SDK's public API.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/seed-fc8f924e/kcptun"
	"github.com/seed-fc8f924e/kcptun/internal/forward"
)

// shutdownGrace is how long open connections may go on after SIGINT or
// SIGTERM.
const shutdownGrace = 5 * time.Second

func main() {
	os.Exit(run())
}

// run is the whole program; it returns the exit status.
func run() int {
	// The flags or -c JSON file, -h, -v and --log, as both programs have them.
	app, code := forward.Setup(forward.Client, os.Args[1:], os.Stdout, os.Stderr)
	if app == nil {
		return code
	}
	defer app.Close()
	cfg, log := app.Config, app.Log

	// The first SIGINT or SIGTERM starts a graceful shutdown, a second one
	// cuts it short.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	// One pool of KCP sessions to the server carries every connection.
	client, err := kcptun.NewClient(cfg.Remote, cfg.Options(log)...)
	if err != nil {
		return app.Fail(err)
	}
	defer client.Close()
	app.Sessions = func() []kcptun.SessionStats { return client.Stats().PerSession }
	app.Start() // the start-up log lines, --snmplog, SIGUSR1 and --pprof

	ln, err := listen(cfg.Listen)
	if err != nil {
		return app.Fail(err)
	}
	defer ln.Close()
	log.Info("listening", "addr", ln.Addr().String(), "remote", cfg.Remote)

	// Forward every accepted connection as a stream, until the listener is
	// closed. ctx ends the connections still being forwarded when the
	// program stops.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var conns sync.WaitGroup // one goroutine per connection being forwarded
	accepted := make(chan error, 1)
	go func() {
		accepted <- serve(ln, log, func(c net.Conn) {
			conns.Go(func() { forwardConn(ctx, c, client, cfg, log) })
		})
	}()

	status := 0
	select {
	case sig := <-sigs:
		// Stop accepting before saying so: the log line promises that new
		// connections are refused.
		_ = ln.Close()
		<-accepted
		log.Info("shutting down", "signal", sig.String(), "open", client.Stats().Streams)
	case err := <-accepted:
		log.Error("accept failed", "err", err)
		status = 1
	}
	// Client.Shutdown waits until the open streams have ended, lets KCP
	// deliver what they wrote last, and closes the Client. A second signal
	// makes it close at once.
	closing, closeNow := context.WithCancel(context.Background())
	defer closeNow()
	go func() {
		select {
		case <-sigs:
			closeNow()
		case <-closing.Done():
		}
	}()
	shut := make(chan error, 1)
	go func() { shut <- client.Shutdown(closing) }()
	select {
	case <-shut:
	case <-time.After(shutdownGrace):
		// End the connections still open: Pipe closes each stream, which
		// sends its end to the server, and Shutdown goes on as when they end
		// by themselves.
		log.Info("closing open connections", "open", client.Stats().Streams)
		cancel()
		<-shut
	}
	cancel()
	conns.Wait()
	log.Info("stopped")
	return status
}

// listen listens on a TCP address or a unix socket path. A socket file left
// behind by an earlier run is removed first, unless something still accepts
// connections on it.
func listen(addr string) (net.Listener, error) {
	network := forward.Network(addr)
	if network == "unix" {
		if fi, err := os.Lstat(addr); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("listen %s: the file exists and is not a socket", addr)
			}
			if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
				_ = c.Close()
				return nil, fmt.Errorf("listen %s: another process is listening on it", addr)
			}
			if err := os.Remove(addr); err != nil {
				return nil, fmt.Errorf("listen %s: removing the stale socket: %w", addr, err)
			}
		}
	}
	return net.Listen(network, addr)
}

// serve accepts connections from ln and hands each to handle, until ln is
// closed (it then returns nil) or fails. Errors that may pass (such as
// running out of file descriptors) back off and retry.
func serve(ln net.Listener, log *slog.Logger, handle func(net.Conn)) error {
	backoff := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		switch {
		case err == nil:
			backoff = 5 * time.Millisecond
			handle(conn)
		case errors.Is(err, net.ErrClosed):
			return nil
		case isTemporary(err):
			log.Warn("accept failed, retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
		default:
			return err
		}
	}
}

// isTemporary reports accept errors worth retrying.
func isTemporary(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// forwardConn joins one local connection to a new stream to the server.
func forwardConn(ctx context.Context, conn net.Conn, client *kcptun.Client, cfg *forward.Config, log *slog.Logger) {
	start := time.Now()
	from := conn.RemoteAddr().String()
	st, err := client.DialContext(ctx)
	if err != nil {
		_ = conn.Close()
		log.Warn("cannot open a stream to the server", "in", from, "remote", cfg.Remote, "err", err)
		return
	}
	id := uint32(0)
	if s, ok := st.(*kcptun.Stream); ok {
		id = s.ID()
	}
	if !cfg.Quiet {
		log.Info("stream opened", "in", from, "out", st.RemoteAddr().String(), "stream", id)
	}
	// The stream is not half-closed when the local side ends: a server on
	// smux older than v1.5.54 could no longer send the reply the local side
	// waits for. CloseWait bounds the wait instead, as in the classic client.
	up, down, err := kcptun.Pipe(ctx, conn, st, kcptun.PipeConfig{
		CloseWait: time.Duration(cfg.CloseWait) * time.Second,
	})
	if !cfg.Quiet {
		attrs := []any{"in", from, "stream", id, "up_bytes", up, "down_bytes", down,
			"duration", time.Since(start).Round(time.Millisecond)}
		if err != nil {
			attrs = append(attrs, "err", err)
		}
		log.Info("stream closed", attrs...)
	}
}
