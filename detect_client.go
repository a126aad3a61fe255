package kcptun

import (
	"context"
	"sync"
)

// serverFormat is what a Client has learned about its server's smux version
// and compression. A Client starts with its configuration (by default the
// binaries' v2 with compression) and watches the first bytes the server sends
// on each session: its reply, its keepalive, or the one frame a pinned
// Listener sends before refusing a session. When they show another format the
// Client logs one warning naming the fix, closes that session (its streams
// are lost: they could not have worked) and dials the next ones in the
// server's format, for the settings no option pinned.
//
// How soon the format shows depends on the server. An SDK Listener answers in
// kind, or refuses within a round trip. An old kcptun server closes a session
// whose first frame it cannot parse without a word; the client's next
// datagrams then open a fresh session there, which never delivers them (KCP
// waits for segments the dead session took) but which sends its keepalive,
// in the server's format, after the server's keepalive interval (10 s by
// default). Until then, streams opened on the session hang.
type serverFormat struct {
	mu     sync.Mutex
	known  bool
	f      wireFormat          // the format to dial in, once known
	warned map[wireFormat]bool // mismatches already logged

	warnedStranger bool // a server that speaks neither format was logged
}

// open dials a session in the format learned so far, watching what the
// server sends back. A session whose server showed another format before the
// dial completed is replaced at once by one in the learned format.
func (sf *serverFormat) open(ctx context.Context, base *config, addr string, ra remoteAddr) (*session, error) {
	for attempt := 1; ; attempt++ {
		s, mismatched, err := sf.openOnce(ctx, base, addr, ra)
		if err != nil || !mismatched || attempt == maxFormatAttempts {
			return s, err
		}
		s.close()
	}
}

// maxFormatAttempts bounds the dials of one open: a format can change twice
// (version, compression) only if the server itself changes.
const maxFormatAttempts = 3

func (sf *serverFormat) openOnce(ctx context.Context, base *config, addr string, ra remoteAddr) (*session, bool, error) {
	cfg := *base
	sf.mu.Lock()
	if sf.known {
		cfg.smuxVersion, cfg.compression = sf.f.version, sf.f.compressed
	}
	sf.mu.Unlock()
	mine := cfg.formatOf()

	// The server may answer before dialSession returns; the session to close
	// on a mismatch is then handed over afterwards.
	var mu sync.Mutex
	var sess *session
	mismatch := false
	cfg.onServerFormat = func(got wireFormat, err error) {
		if !sf.observe(&cfg, addr, mine, got, err) {
			return
		}
		mu.Lock()
		mismatch = true
		s := sess
		mu.Unlock()
		if s != nil {
			s.close()
		}
	}
	s, err := openSession(ctx, &cfg, addr, ra)
	if err != nil {
		return nil, false, err
	}
	mu.Lock()
	sess = s
	mismatched := mismatch
	mu.Unlock()
	return s, mismatched, nil
}

// observe takes the format a session's server showed. It returns true when
// the session should be closed: its server speaks another format and the
// Client will dial the next session in it.
func (sf *serverFormat) observe(c *config, addr string, mine, got wireFormat, err error) bool {
	lg := c.logger
	if err != nil {
		sf.mu.Lock()
		first := !sf.warnedStranger
		sf.warnedStranger = true
		sf.mu.Unlock()
		if first {
			lg.Warn("kcptun: the server sent something other than a kcptun stream", "addr", addr, "err", err)
		}
		return false
	}
	if got == mine {
		sf.mu.Lock()
		sf.known, sf.f = true, got
		sf.mu.Unlock()
		return false
	}
	next := mine
	if !c.versionPinned {
		next.version = got.version
	}
	if !c.compressionPinned {
		next.compressed = got.compressed
	}
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.known, sf.f = true, next
	first := !sf.warned[got]
	if first {
		if sf.warned == nil {
			sf.warned = make(map[wireFormat]bool)
		}
		sf.warned[got] = true
	}
	switch {
	case next == mine:
		if first {
			lg.Warn("kcptun: the server speaks "+got.String()+", this client "+mine.String()+
				" and the setting is pinned: streams to this server fail; run the client with "+fixFor(mine, got)+
				", or leave the setting unpinned so that the client follows the server", "addr", addr)
		}
		return false
	case next == got:
		if first {
			lg.Warn("kcptun: the server speaks "+got.String()+", this client spoke "+mine.String()+
				": the streams of that session are lost; the next sessions use "+got.String()+
				"; to start with it, run the client with "+fixFor(mine, got), "addr", addr)
		}
	default:
		if first {
			lg.Warn("kcptun: the server speaks "+got.String()+", this client spoke "+mine.String()+
				": the streams of that session are lost; the next sessions use "+next.String()+
				", and part of the setting is pinned: run the client with "+fixFor(mine, got), "addr", addr)
		}
	}
	return true
}
