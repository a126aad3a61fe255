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
// open connections finish for up to five seconds, then closes them. --pprof
// serves net/http/pprof on 127.0.0.1:6060.
package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/seed-fc8f924e/kcptun"
	"github.com/seed-fc8f924e/kcptun/internal/forward"
)

const name = "client"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	app, code := forward.Boot(forward.Client, name, args, stdout, stderr, sigs)
	if app == nil {
		return code
	}
	defer signal.Stop(sigs)
	defer app.Close()
	cfg := app.Config
	log := app.Log

	client, err := kcptun.NewClient(cfg.Remote, cfg.Options(log)...)
	if err != nil {
		forward.Fail(stderr, name, cfg.OptionError(err))
		return 2
	}
	defer client.Close()
	app.LogStart()

	ln, err := forward.ListenLocal(cfg.Listen)
	if err != nil {
		log.Error("cannot listen", "addr", cfg.Listen, "err", err)
		forward.Fail(stderr, name, err)
		return 1
	}
	log.Info("listening", "addr", ln.Addr().String(), "remote", cfg.Remote)
	app.Start()

	f := &forwarder{cfg: cfg, log: log, client: client}
	f.pipeCtx, f.stopPipes = context.WithCancel(context.Background())
	defer f.stopPipes()

	acceptDone := make(chan error, 1)
	go func() { acceptDone <- f.serve(ln) }()

	status := 0
	select {
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String(), "open", f.conns.Len())
		_ = ln.Close()
		<-acceptDone
	case err := <-acceptDone:
		log.Error("accept failed", "err", err)
		status = 1
	}
	// Let open connections finish, then cut them; Shutdown lets the streams
	// hand over their last bytes and KCP deliver them, then closes the sessions.
	grace, cancel := forward.Grace(sigs, forward.ShutdownTimeout)
	if !f.conns.WaitIdle(grace) {
		log.Info("closing open connections", "open", f.conns.Len())
	}
	cancel()
	f.stopPipes()
	f.conns.Wait()
	drain, cancel := forward.Grace(sigs, forward.Drain)
	if err := client.Shutdown(drain); err != nil {
		log.Warn("closing the sessions with data not yet delivered", "err", err)
	}
	cancel()
	log.Info("stopped")
	return status
}

// forwarder joins accepted local connections to streams.
type forwarder struct {
	cfg       *forward.Config
	log       *slog.Logger
	client    *kcptun.Client
	pipeCtx   context.Context // cancelled to cut every connection
	stopPipes context.CancelFunc
	conns     forward.Group // one goroutine per connection being forwarded
}

// serve accepts connections until ln is closed. Temporary errors (such as
// running out of file descriptors) back off and retry.
func (f *forwarder) serve(ln net.Listener) error {
	backoff := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if isTemporary(err) {
				f.log.Warn("accept failed, retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			return err
		}
		backoff = 5 * time.Millisecond
		f.conns.Go(func() { f.handle(conn) })
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

// handle forwards one local connection as a stream.
func (f *forwarder) handle(conn net.Conn) {
	start := time.Now()
	from := conn.RemoteAddr().String()
	st, err := f.client.DialContext(f.pipeCtx)
	if err != nil {
		_ = conn.Close()
		f.log.Warn("cannot open a stream to the server", "in", from, "remote", f.cfg.Remote, "err", err)
		return
	}
	id := uint32(0)
	if s, ok := st.(*kcptun.Stream); ok {
		id = s.ID()
	}
	if !f.cfg.Quiet {
		f.log.Info("stream opened", "in", from, "out", st.RemoteAddr().String(), "stream", id)
	}
	ps := forward.Pipe(f.pipeCtx, conn, st, forward.PipeConfig{
		CloseWait: time.Duration(f.cfg.CloseWait) * time.Second,
	})
	if !f.cfg.Quiet {
		attrs := []any{"in", from, "stream", id, "up_bytes", ps.Sent, "down_bytes", ps.Received,
			"duration", time.Since(start).Round(time.Millisecond)}
		if ps.Err != nil {
			attrs = append(attrs, "err", ps.Err)
		}
		f.log.Info("stream closed", attrs...)
	}
}
