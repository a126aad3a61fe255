// Command server is the kcptun forwarding server, a drop-in replacement for
// the classic kcptun server binary: it accepts kcptun sessions on the UDP
// address --listen (host:min-max listens on every port of the range) and
// forwards every stream to the TCP address or unix socket --target.
//
//	server -l :29900 -t 127.0.0.1:22 --key secret --crypt aes-128-gcm
//	server -c /etc/kcptun/server.json
//
// Every flag of the classic binary is accepted, as -name or --name, with the
// same defaults; -h lists them. A -c JSON file (keys are the long flag names
// without dashes) overrides the command line. --key defaults to the
// KCPTUN_KEY environment variable. Bad values print one line on stderr and
// exit with status 2.
//
// When the target ends its side of a connection, the server passes the end
// on to the client at once and gives the client --closewait seconds
// (default 30) to finish before closing both. SIGUSR1 logs the SNMP
// counters. SIGINT or SIGTERM refuses new streams, lets open ones finish for
// up to five seconds (a second signal cuts this short), then closes them.
// --pprof serves net/http/pprof on 127.0.0.1:6061.
//
// Everything but the flag table and the process set-up around forwarding
// (internal/forward) is in this file, on the SDK's public API.
package main

import (
	"context"
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

// shutdownGrace is how long open streams may go on after SIGINT or SIGTERM.
const shutdownGrace = 5 * time.Second

// dialTimeout bounds how long the server waits for its target to accept a
// connection.
const dialTimeout = 10 * time.Second

func main() {
	os.Exit(run())
}

// run is the whole program; it returns the exit status.
func run() int {
	// The flags or -c JSON file, -h, -v and --log, as both programs have them.
	app, code := forward.Setup(forward.Server, os.Args[1:], os.Stdout, os.Stderr)
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

	ln, err := kcptun.Listen(cfg.Listen, cfg.Options(log)...)
	if err != nil {
		return app.Fail(err)
	}
	defer ln.Close()
	app.Sessions = func() []kcptun.SessionStats { return ln.Stats().PerSession }
	app.Start() // the start-up log lines, --snmplog, SIGUSR1 and --pprof
	addrs := ln.Addrs()
	log.Info("listening", "addr", cfg.Listen, "ports", len(addrs), "first", addrs[0].String(), "target", cfg.Target)

	// Forward every stream until the Listener stops accepting. ctx ends the
	// streams still being forwarded when the program stops.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var streams sync.WaitGroup // one goroutine per stream being forwarded
	var accepting sync.WaitGroup
	accepting.Go(func() {
		for {
			st, err := ln.Accept()
			if err != nil {
				return // Shutdown or Close was called
			}
			streams.Go(func() { forwardStream(ctx, st, cfg, log) })
		}
	})

	sig := <-sigs
	log.Info("shutting down", "signal", sig.String(), "open", ln.Stats().Streams)
	// Shutdown refuses new streams, waits until the open ones have ended,
	// lets KCP deliver what they wrote last, and closes the sessions. A
	// second signal makes it close them at once.
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
	go func() { shut <- ln.Shutdown(closing) }()
	select {
	case <-shut:
	case <-time.After(shutdownGrace):
		// End the streams still open: Pipe closes each, which sends its end
		// to the client, and Shutdown goes on as when they end by themselves.
		log.Info("closing open streams", "open", ln.Stats().Streams)
		cancel()
		<-shut
	}
	accepting.Wait()
	cancel()
	streams.Wait()
	log.Info("stopped")
	return 0
}

// forwardStream joins one stream to a new connection to the target.
func forwardStream(ctx context.Context, st net.Conn, cfg *forward.Config, log *slog.Logger) {
	start := time.Now()
	from := st.RemoteAddr().String()
	id := uint32(0)
	if s, ok := st.(*kcptun.Stream); ok {
		id = s.ID()
	}
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, forward.Network(cfg.Target), cfg.Target)
	if err != nil {
		_ = st.Close()
		log.Warn("cannot reach the target", "in", from, "stream", id, "target", cfg.Target, "err", err)
		return
	}
	if !cfg.Quiet {
		log.Info("stream opened", "in", from, "stream", id, "out", conn.RemoteAddr().String())
	}
	// When the target ends its side, the client learns at once
	// (HalfCloseStreams) and has CloseWait to finish.
	up, down, err := kcptun.Pipe(ctx, st, conn, kcptun.PipeConfig{
		CloseWait:        time.Duration(cfg.CloseWait) * time.Second,
		HalfCloseStreams: true,
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
