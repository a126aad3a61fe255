package kcptun

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/kcpdrain"
	"github.com/seed-fc8f924e/kcptun/internal/smuxwire"
)

// logRecorder is a slog.Handler that keeps every record for a test to check.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// count returns how many records at level hold every one of words.
func (r *logRecorder) count(level slog.Level, words ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
next:
	for _, rec := range r.records {
		if rec.Level != level {
			continue
		}
		for _, w := range words {
			if !strings.Contains(rec.Message, w) {
				continue next
			}
		}
		n++
	}
	return n
}

func (r *logRecorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, rec := range r.records {
		fmt.Fprintf(&b, "%s %s\n", rec.Level, rec.Message)
	}
	return b.String()
}

func TestSniffFormat(t *testing.T) {
	nop := func(v byte) []byte { f := smuxwire.NOP(v); return f[:] }
	compressed := func(frame []byte) []byte {
		var out bytesWriter
		c := newCompressedConn(&out, DefaultFrameSize)
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		return out.b
	}
	syn2 := []byte{2, 0, 0, 0, 3, 0, 0, 0}
	big := append([]byte{1, 2, 0, 0x10, 1, 0, 0, 0}, make([]byte, 4096)...) // a v1 PSH that compresses
	cases := []struct {
		name string
		in   []byte
		want wireFormat
		err  error
	}{
		{"bare v1 NOP", nop(1), wireFormat{1, false}, nil},
		{"bare v2 SYN", syn2, wireFormat{2, false}, nil},
		{"snappy v2 NOP", compressed(nop(2)), wireFormat{2, true}, nil},
		{"snappy v1 compressed chunk", compressed(big), wireFormat{1, true}, nil},
		{"only the identifier", []byte(snappyStreamIdentifier), wireFormat{}, errSniffShort},
		{"one byte", []byte{2}, wireFormat{}, errSniffShort},
		{"empty", nil, wireFormat{}, errSniffShort},
		{"v1 with UPD", []byte{1, 4, 8, 0}, wireFormat{}, errNotKcptun},
		{"version 3", []byte{3, 0}, wireFormat{}, errNotKcptun},
		{"http", []byte("GET / HTTP/1.1\r\n"), wireFormat{}, errNotKcptun},
		{"bad identifier", []byte("\xff\x06\x00\x00sNaPpX"), wireFormat{}, errNotKcptun},
		{"bad checksum", append([]byte(snappyStreamIdentifier), 1, 12, 0, 0, 0, 0, 0, 0, 2, 3, 0, 0, 0, 0, 0, 0), wireFormat{}, errNotKcptun},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sniffFormat(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) || got != tc.want {
				t.Fatalf("sniffFormat(% x) = %v, %v; want %v, %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

type bytesWriter struct{ b []byte }

func (w *bytesWriter) Read([]byte) (int, error)    { return 0, io.EOF }
func (w *bytesWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *bytesWriter) Close() error                { return nil }

// FuzzSniffFormat feeds the first-bytes detector arbitrary decrypted bytes:
// it must not panic, and what it decides on a prefix must hold for the whole.
func FuzzSniffFormat(f *testing.F) {
	f.Add([]byte{1, 3, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 1, 0, 0, 0})
	f.Add(append([]byte(snappyStreamIdentifier), 1, 12, 0, 0, 0x4f, 0x9d, 0x77, 0x1b, 2, 3, 0, 0, 0, 0, 0, 0))
	f.Add(append([]byte(snappyStreamIdentifier), 0xfe, 2, 0, 0, 9, 9, 0, 6, 0, 0))
	f.Add([]byte("\xff\x06\x00\x00sNaPpY\xff\x06\x00\x00sNaPpY"))
	f.Fuzz(func(t *testing.T, b []byte) {
		whole, werr := sniffFormat(b)
		if werr == nil && whole.version != 1 && whole.version != 2 {
			t.Fatalf("version %d", whole.version)
		}
		if werr != nil && !errors.Is(werr, errSniffShort) && !errors.Is(werr, errNotKcptun) {
			t.Fatalf("error %v wraps neither sentinel", werr)
		}
		for i := 0; i < len(b) && i < 64; i++ {
			part, perr := sniffFormat(b[:i])
			if errors.Is(perr, errSniffShort) {
				continue
			}
			if part != whole || (perr == nil) != (werr == nil) {
				t.Fatalf("prefix %d decided %v, %v; the whole %v, %v", i, part, perr, whole, werr)
			}
		}
	})
}

// TestListenerServesEveryFormat has one Listener with defaults serve four
// clients at once, smux v1 and v2, compressed or not.
func TestListenerServesEveryFormat(t *testing.T) {
	ln := listenEcho(t)
	payload := randomBytes(t, 512<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, v := range []int{1, 2} {
		for _, comp := range []bool{true, false} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl, err := NewClient(ln.Addr().String(), WithSmuxVersion(v), WithCompression(comp))
				if err != nil {
					errs <- err
					return
				}
				defer cl.Close()
				c, err := cl.Dial()
				if err != nil {
					errs <- fmt.Errorf("v%d comp=%v: %w", v, comp, err)
					return
				}
				defer c.Close()
				if err := echoCheck(c, payload); err != nil {
					errs <- fmt.Errorf("v%d comp=%v: %w", v, comp, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := ln.Stats()
	if st.SmuxV1Sessions != 2 || st.SmuxV2Sessions != 2 || st.CompressedSessions != 2 || st.MismatchedSessions != 0 {
		t.Errorf("Stats %+v: want 2 sessions per version, 2 compressed, none refused", st)
	}
}

// echoCheck is echoRoundTrip for other goroutines than the test's: it
// returns what went wrong.
func echoCheck(c net.Conn, payload []byte) error {
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		werr <- err
	}()
	h := sha256.New()
	if n, err := io.CopyN(h, c, int64(len(payload))); err != nil {
		<-werr
		return fmt.Errorf("read echo after %d of %d bytes: %w", n, len(payload), err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if want := sha256.Sum256(payload); !bytes.Equal(h.Sum(nil), want[:]) {
		return errors.New("echo sha256 differs from the payload's")
	}
	return nil
}

// TestPinnedListenerRefuses checks that a pinned setting refuses clients that
// differ, names the fix, and lets no stream through.
func TestPinnedListenerRefuses(t *testing.T) {
	cases := []struct {
		name   string
		server Option
		client []Option
		fix    string
	}{
		{"version", WithSmuxVersion(2), []Option{WithSmuxVersion(1)}, "-smuxver 2"},
		{"compression", WithCompression(false), []Option{WithCompression(true)}, "-nocomp"},
		{"no compression", WithCompression(true), []Option{WithCompression(false)}, "no -nocomp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &logRecorder{}
			ln := listenEcho(t, tc.server, WithLogger(slog.New(rec)))
			// The dial may fail already (the refusal arrived before the
			// stream opened); if not, the stream must not work.
			if c, err := Dial(ln.Addr().String(), tc.client...); err == nil {
				defer c.Close()
				_, _ = c.Write([]byte("refused"))
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if n, err := c.Read(make([]byte, 16)); err == nil {
					t.Fatalf("a refused client read %d bytes back", n)
				}
			}
			waitFor(t, "the refusal", func() bool { return rec.count(slog.LevelWarn, "refusing client", tc.fix) == 1 })
			if st := ln.Stats(); st.MismatchedSessions != 1 || st.TotalSessions != 0 {
				t.Errorf("Stats %+v, want one mismatched session and none served", st)
			}
		})
	}
}

// TestPinnedVersionAdaptsCompression checks that pinning one setting leaves
// the other to follow each client.
func TestPinnedVersionAdaptsCompression(t *testing.T) {
	ln := listenEcho(t, WithSmuxVersion(1))
	for _, comp := range []bool{true, false} {
		c, err := Dial(ln.Addr().String(), WithSmuxVersion(1), WithCompression(comp))
		if err != nil {
			t.Fatal(err)
		}
		echoRoundTrip(t, c, randomBytes(t, 64<<10))
		_ = c.Close()
	}
	if st := ln.Stats(); st.SmuxV1Sessions != 2 || st.CompressedSessions != 1 || st.MismatchedSessions != 0 {
		t.Errorf("Stats %+v: want two v1 sessions, one compressed, none refused", st)
	}
}

// TestClientLearnsPinnedListener runs a default Client against Listeners
// pinned to what old releases speak: the first session is lost, the next
// ones work, and the client warns once.
func TestClientLearnsPinnedListener(t *testing.T) {
	cases := []struct {
		name   string
		server []Option
		fix    string
		want   wireFormat
	}{
		{"smux v1", []Option{WithSmuxVersion(1)}, "-smuxver 1", wireFormat{1, true}},
		{"no compression", []Option{WithCompression(false)}, "-nocomp", wireFormat{2, false}},
		{"smux v1 without compression", []Option{WithSmuxVersion(1), WithCompression(false)}, "-smuxver 1 (WithSmuxVersion(1)) and -nocomp", wireFormat{1, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln := listenEcho(t, tc.server...)
			rec := &logRecorder{}
			cl, err := NewClient(ln.Addr().String(), WithLogger(slog.New(rec)))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			recoverWithin(t, cl, 15*time.Second)
			for i := range 3 {
				c, err := cl.Dial()
				if err != nil {
					t.Fatal(err)
				}
				echoRoundTrip(t, c, []byte(fmt.Sprintf("after recovery %d", i)))
				_ = c.Close()
			}
			if n := rec.count(slog.LevelWarn, "the server speaks "+tc.want.String(), tc.fix); n != 1 {
				t.Errorf("%d warnings naming %q, want 1; log:\n%s", n, tc.fix, rec.dump())
			}
		})
	}
}

// recoverWithin dials until a stream echoes, failing the test after limit.
func recoverWithin(t *testing.T, cl *Client, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for attempt := 0; ; attempt++ {
		if time.Now().After(deadline) {
			t.Fatalf("no working stream within %v (%d attempts)", limit, attempt)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := cl.DialContext(ctx)
		cancel()
		if err != nil {
			continue
		}
		msg := []byte("probe")
		_ = c.SetDeadline(time.Now().Add(min(3*time.Second, time.Until(deadline))))
		_, err = c.Write(msg)
		buf := make([]byte, len(msg))
		if err == nil {
			_, err = io.ReadFull(c, buf)
		}
		_ = c.Close()
		if err == nil && string(buf) == string(msg) {
			return
		}
	}
}

// oldServer emulates a kcptun server binary of a release before 2025-11:
// one smux version and compression setting, the session closed at the first
// frame it cannot parse, a keepalive of its own interval.
type oldServer struct {
	ln *kcp.Listener
	wg sync.WaitGroup
	mu sync.Mutex
	ss []io.Closer
}

func startOldServer(t *testing.T, version int, comp bool, keepAlive time.Duration) *oldServer {
	t.Helper()
	block, err := crypt.New(DefaultCrypt, crypt.DeriveKey(DefaultKey))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := kcp.ListenWithOptions("127.0.0.1:0", block, DefaultDataShards, DefaultParityShards)
	if err != nil {
		t.Fatal(err)
	}
	o := &oldServer{ln: ln}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			ks, err := ln.AcceptKCP()
			if err != nil {
				return
			}
			//lint:ignore SA1019 the wire format needs stream mode
			ks.SetStreamMode(true)
			ks.SetWriteDelay(false)
			ks.SetNoDelay(0, 20, 2, 1)
			var conn io.ReadWriteCloser = ks
			if comp {
				conn = newCompressedConn(ks, DefaultFrameSize)
			}
			sc := smux.DefaultConfig()
			sc.Version = version
			sc.KeepAliveInterval = keepAlive
			mux, err := smux.Server(conn, sc)
			if err != nil {
				_ = ks.Close()
				continue
			}
			o.mu.Lock()
			o.ss = append(o.ss, mux)
			o.mu.Unlock()
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				defer mux.Close()
				for {
					st, err := mux.AcceptStream()
					if err != nil {
						return
					}
					o.wg.Add(1)
					go func() {
						defer o.wg.Done()
						defer st.Close()
						_, _ = io.Copy(st, st)
					}()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		o.mu.Lock()
		for _, s := range o.ss {
			_ = s.Close()
		}
		o.mu.Unlock()
		o.wg.Wait()
		kcpdrain.Backlog(ln)
	})
	return o
}

// TestClientLearnsOldServer runs a default Client against emulated old
// servers: detection waits for the server's keepalive on the session the
// client's next datagrams open there.
func TestClientLearnsOldServer(t *testing.T) {
	const keepAlive = time.Second
	for _, tc := range []struct {
		version int
		comp    bool
		fix     string
	}{{1, true, "-smuxver 1"}, {2, false, "-nocomp"}, {1, false, "-smuxver 1 (WithSmuxVersion(1)) and -nocomp"}} {
		t.Run(fmt.Sprintf("v%d comp=%v", tc.version, tc.comp), func(t *testing.T) {
			o := startOldServer(t, tc.version, tc.comp, keepAlive)
			rec := &logRecorder{}
			cl, err := NewClient(o.ln.Addr().String(), WithLogger(slog.New(rec)), WithKeepAlive(keepAlive))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			// Detection takes the server's keepalive interval after the
			// first stream; the bound leaves room for a busy machine.
			start := time.Now()
			recoverWithin(t, cl, 10*keepAlive+5*time.Second)
			t.Logf("recovered after %v (server keepalive %v)", time.Since(start).Round(time.Millisecond), keepAlive)
			c, err := cl.Dial()
			if err != nil {
				t.Fatal(err)
			}
			echoRoundTrip(t, c, randomBytes(t, 64<<10))
			_ = c.Close()
			if n := rec.count(slog.LevelWarn, "the server speaks", tc.fix); n != 1 {
				t.Errorf("%d warnings naming %q, want 1; log:\n%s", n, tc.fix, rec.dump())
			}
		})
	}
}
