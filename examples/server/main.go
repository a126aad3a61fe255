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
// up to five seconds, then closes them. --pprof serves net/http/pprof on
// 127.0.0.1:6061.
package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"time"

	"github.com/seed-fc8f924e/kcptun"
	"github.com/seed-fc8f924e/kcptun/internal/forward"
)

const name = "server"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	app, code := forward.Boot(forward.Server, name, args, stdout, stderr, sigs)
	if app == nil {
		return code
	}
	defer signal.Stop(sigs)
	defer app.Close()
	cfg := app.Config
	log := app.Log

	ln, err := kcptun.Listen(cfg.Listen, cfg.Options(log)...)
	if err != nil {
		forward.Fail(stderr, name, cfg.OptionError(err))
		if errors.Is(err, kcptun.ErrInvalidOption) {
			return 2
		}
		log.Error("cannot listen", "addr", cfg.Listen, "err", err)
		return 1
	}
	defer ln.Close()
	app.LogStart()
	addrs := make([]string, 0, len(ln.Addrs()))
	for _, a := range ln.Addrs() {
		addrs = append(addrs, a.String())
	}
	log.Info("listening", "addr", cfg.Listen, "ports", len(addrs), "first", addrs[0], "target", cfg.Target)
	app.Start()

	f := &forwarder{cfg: cfg, log: log}
	f.pipeCtx, f.stopPipes = context.WithCancel(context.Background())
	defer f.stopPipes()

	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		f.serve(ln)
	}()

	sig := <-sigs
	log.Info("shutting down", "signal", sig.String(), "open", f.conns.Len())
	// Refuse new streams, let open ones finish, then cut them; let KCP
	// deliver what it holds (the last bytes, the ends of the streams), then
	// close the sessions.
	f.stopping.Store(true)
	grace, cancel := forward.Grace(sigs, forward.ShutdownTimeout)
	if !f.conns.WaitIdle(grace) {
		log.Info("closing open streams", "open", f.conns.Len())
	}
	cancel()
	f.stopPipes()
	f.conns.Wait()
	drain, cancel := forward.Grace(sigs, forward.Drain)
	if !forward.DrainKCP(drain) {
		log.Warn("closing the sessions with data not yet delivered")
	}
	cancel()
	_ = ln.Close()
	<-acceptDone
	log.Info("stopped")
	return 0
}

// forwarder joins accepted streams to connections to the target.
type forwarder struct {
	cfg       *forward.Config
	log       *slog.Logger
	pipeCtx   context.Context // cancelled to cut every connection
	stopPipes context.CancelFunc
	conns     forward.Group // one goroutine per stream being forwarded
	stopping  atomic.Bool   // set on SIGINT/SIGTERM: new streams are refused
}

// serve accepts streams until the listener stops accepting.
func (f *forwarder) serve(ln *kcptun.Listener) {
	for {
		st, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.log.Error("accept failed", "err", err)
			}
			return
		}
		if f.stopping.Load() {
			_ = st.Close()
			continue
		}
		f.conns.Go(func() { f.handle(st) })
	}
}

// handle forwards one stream to the target.
func (f *forwarder) handle(st net.Conn) {
	start := time.Now()
	from := st.RemoteAddr().String()
	id := uint32(0)
	if s, ok := st.(*kcptun.Stream); ok {
		id = s.ID()
	}
	conn, err := forward.DialLocal(f.pipeCtx, f.cfg.Target)
	if err != nil {
		_ = st.Close()
		f.log.Warn("cannot reach the target", "in", from, "stream", id, "target", f.cfg.Target, "err", err)
		return
	}
	if !f.cfg.Quiet {
		f.log.Info("stream opened", "in", from, "stream", id, "out", conn.RemoteAddr().String())
	}
	ps := forward.Pipe(f.pipeCtx, conn, st, forward.PipeConfig{
		CloseWait:       time.Duration(f.cfg.CloseWait) * time.Second,
		HalfCloseStream: true,
	})
	if !f.cfg.Quiet {
		attrs := []any{"in", from, "stream", id, "up_bytes", ps.Received, "down_bytes", ps.Sent,
			"duration", time.Since(start).Round(time.Millisecond)}
		if ps.Err != nil {
			attrs = append(attrs, "err", ps.Err)
		}
		f.log.Info("stream closed", attrs...)
	}
}
