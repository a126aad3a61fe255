package kcptun

import (
	"errors"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
)

// formatCounters counts what a Listener's clients speak.
type formatCounters struct {
	detecting  atomic.Int64 // sessions whose first bytes are awaited
	v1, v2     atomic.Uint64
	compressed atomic.Uint64
	mismatched atomic.Uint64
	warnings   logLimiter // refusals and strangers, per client IP
}

// refuseLinger is how long a refused session stays open so that KCP can
// deliver the frame that tells the client what this Listener speaks.
const refuseLinger = 5 * time.Second

// startSession serves a new KCP session in the background: it waits for the
// client's first bytes, which show the client's smux version and compression,
// and answers in kind, unless WithSmuxVersion or WithCompression pinned a
// setting the client does not use. A session that sends nothing is dropped
// after the accept timeout without a byte written, so that a stray session
// (a NAT rebinding mid-conversation) cannot keep the client's old one alive.
func (l *Listener) startSession(ks *kcp.UDPSession) {
	fc := &l.formats
	// Sessions still showing their format count against WithMaxSessions
	// with the registered ones, so that garbage cannot hold more.
	l.mu.Lock()
	full := len(l.sessions)+int(fc.detecting.Load()) >= l.cfg.maxSessions
	if !full {
		fc.detecting.Add(1)
	}
	l.mu.Unlock()
	if full {
		if l.refused.Add(1) == 1 {
			l.cfg.logger.Warn("kcptun: session cap reached, refusing new sessions", "max", l.cfg.maxSessions)
		}
		_ = ks.Close()
		return
	}
	stop := make(chan struct{})
	l.wg.Add(2)
	go func() { // unblocks the detection when the Listener closes
		defer l.wg.Done()
		select {
		case <-l.done:
			_ = ks.Close()
		case <-stop:
		}
	}()
	go func() {
		defer l.wg.Done()
		defer close(stop)
		if !l.detectSession(ks) {
			fc.detecting.Add(-1)
		}
	}()
}

// detectSession reads the client's first bytes and starts serving the session
// in the format they show, or refuses it. It reports whether it handed the
// session to register, which counts it out of detecting.
func (l *Listener) detectSession(ks *kcp.UDPSession) bool {
	remote := ks.RemoteAddr()
	_ = ks.SetReadDeadline(time.Now().Add(l.cfg.acceptTO))
	f, head, err := readFormat(ks)
	_ = ks.SetReadDeadline(time.Time{})
	fc := &l.formats
	if err != nil {
		if errors.Is(err, errNotKcptun) && fc.warnings.allow(hostOf(remote), time.Now()) {
			l.cfg.logger.Warn("kcptun: client sent something other than a kcptun stream: check that it is a kcptun client and that both ends use the same key",
				"remote", remote, "err", err)
		} else {
			l.cfg.logger.Debug("kcptun: session sent nothing usable in time, closing it", "remote", remote, "err", err)
		}
		_ = ks.Close()
		return false
	}
	if f.version == 1 {
		fc.v1.Add(1)
	} else {
		fc.v2.Add(1)
	}
	if f.compressed {
		fc.compressed.Add(1)
	}
	l.cfg.logger.Debug("kcptun: client speaks "+f.String(), "remote", remote)
	if want := l.answerFormat(f); want != f {
		fc.mismatched.Add(1)
		l.refuse(ks, f, want)
		return false
	}

	cfg := *l.cfg
	cfg.smuxVersion, cfg.compression = f.version, f.compressed
	s := newSession(ks, &cfg, true)
	s.base.head = head // the bytes detection read come first
	mux, err := smux.Server(s.tr, cfg.smuxConfig())
	if err != nil { // the config was validated, so this is not expected
		l.cfg.logger.Error("kcptun: cannot start smux", "err", err)
		_ = ks.Close()
		return false
	}
	s.start(mux)
	if !l.register(s) {
		s.close()
		return true
	}
	l.wg.Add(1)
	go l.serveSession(s)
	return true
}

// answerFormat is the format this Listener answers a client speaking f in:
// f itself, except for the settings pinned by options.
func (l *Listener) answerFormat(f wireFormat) wireFormat {
	if l.cfg.versionPinned {
		f.version = l.cfg.smuxVersion
	}
	if l.cfg.compressionPinned {
		f.compressed = l.cfg.compression
	}
	return f
}

// refuse turns away a client whose format a pinned setting rules out. It
// logs the fix (at most once a minute per client IP), tells the client what
// this Listener speaks with one smux keepalive frame in that format (an SDK
// Client then switches by itself), and closes the session once KCP had the
// time to deliver it.
func (l *Listener) refuse(ks *kcp.UDPSession, have, want wireFormat) {
	remote := ks.RemoteAddr()
	lg := l.cfg.logger
	if l.formats.warnings.allow(hostOf(remote), time.Now()) {
		lg.Warn("kcptun: refusing client: it speaks "+have.String()+", this listener is pinned to "+want.String()+
			": run the client with "+fixFor(have, want)+", or leave the setting unpinned on the listener so it answers every client in kind",
			"remote", remote)
	} else {
		lg.Debug("kcptun: refusing client", "remote", remote, "speaks", have.String(), "pinned", want.String())
	}
	nop := smuxwire.NOP(byte(want.version))
	var err error
	if want.compressed {
		_, err = newCompressedConn(ks, l.cfg.frameSize).Write(nop[:])
	} else {
		_, err = ks.Write(nop[:])
	}
	if err == nil {
		t := time.NewTimer(min(refuseLinger, l.cfg.acceptTO))
		select {
		case <-t.C:
		case <-l.done:
		}
		t.Stop()
	}
	_ = ks.Close()
}
