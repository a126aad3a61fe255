package kcptun

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/crypt"
	"github.com/seed-fc8f924e/kcptun/internal/rawkcptun"
)

// benchSettings is one cipher/compression pair measured for the SDK and for
// raw kcp-go+smux.
type benchSettings struct {
	name string
	opts []Option
	c    config
}

func benchMatrix() []benchSettings {
	def := defaultConfig()
	gcm := defaultConfig()
	gcm.crypt, gcm.compression = "aes-128-gcm", false
	return []benchSettings{
		{"default", nil, def},
		{"aes-128-gcm-nocomp", []Option{WithCrypt("aes-128-gcm"), WithCompression(false)}, gcm},
	}
}

// BenchmarkBulk moves bytes one way through one stream over loopback, through
// the SDK and, in the same run, through kcp-go+smux wired as the kcptun
// binaries wire them (internal/rawkcptun, the matrix's raw systems too).
func BenchmarkBulk(b *testing.B) {
	for _, s := range benchMatrix() {
		b.Run("sdk/"+s.name, func(b *testing.B) {
			ln, err := Listen("127.0.0.1:0", s.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			c, err := Dial(ln.Addr().String(), s.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			srv, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			runBulk(b, c, srv)
		})
		b.Run("raw/"+s.name, func(b *testing.B) {
			cli, srv, cleanup := rawPair(b, s.c)
			defer cleanup()
			runBulk(b, cli, srv)
		})
	}
}

// runBulk writes b.N chunks into w and waits until r has read them all.
func runBulk(b *testing.B, w io.Writer, r io.Reader) {
	const chunk = 128 << 10
	// Random bytes: snappy cannot shrink them, the worst case for the
	// compressed path (it frames every block as raw).
	buf := make([]byte, chunk)
	_, _ = crand.Read(buf)
	total := int64(b.N) * chunk
	got := make(chan int64, 1)
	go func() {
		n, _ := io.CopyN(io.Discard, r, total)
		got <- n
	}()
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if n := <-got; n != total {
		b.Fatalf("received %d of %d bytes", n, total)
	}
}

// rawPair connects a kcp-go+smux client and server wired as the kcptun
// binaries wire them (internal/rawkcptun), with the settings of c.
func rawPair(b *testing.B, c config) (cli, srv net.Conn, cleanup func()) {
	b.Helper()
	t := c.timing()
	rc := rawkcptun.Config{
		Key: c.key, Crypt: c.crypt,
		DataShards: c.dataShards, ParityShards: c.parityShards, MTU: c.mtu,
		NoDelay: t.NoDelay, Interval: t.Interval, Resend: t.Resend, NC: t.NC,
		ACKNoDelay: c.ackNoDelay, Compression: c.compression, SockBuf: c.sockBuf,
		Smux: c.smuxConfig(),
	}
	rc.ClientSndWnd, rc.ClientRcvWnd = c.windows(false)
	rc.ServerSndWnd, rc.ServerRcvWnd = c.windows(true)
	ln, err := rawkcptun.Listen("127.0.0.1:0", rc)
	if err != nil {
		b.Fatal(err)
	}
	rcl, err := rawkcptun.Dial(ln.Addr().String(), rc)
	if err != nil {
		_ = ln.Close()
		b.Fatal(err)
	}
	cleanup = func() {
		_ = rcl.Close()
		_ = ln.Close()
	}
	if cli, err = rcl.OpenStream(); err == nil {
		srv, err = ln.Accept()
	}
	if err != nil {
		cleanup()
		b.Fatal(err)
	}
	return cli, srv, cleanup
}

// BenchmarkEcho64 measures the round trip of a 64-byte message on one stream.
func BenchmarkEcho64(b *testing.B) {
	for _, s := range benchMatrix() {
		b.Run(s.name, func(b *testing.B) {
			opts := append([]Option{WithMode(ModeFast3), WithACKNoDelay(true)}, s.opts...)
			ln := listenEcho(b, opts...)
			c, err := Dial(ln.Addr().String(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := make([]byte, 64)
			reply := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, reply); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/rtt")
		})
	}
}

// BenchmarkIdleMemory reports the heap held per idle client session (beyond a
// bare kcp-go session) and per idle stream.
func BenchmarkIdleMemory(b *testing.B) {
	const n = 64
	ln := listenEcho(b)
	addr := ln.Addr().String()
	b.Run("session", func(b *testing.B) {
		for range b.N {
			// The bare sessions send what an SDK session sends first and wait
			// for the ACK, so that both figures include kcp-go's lazily
			// allocated buffers and the server's side of the session.
			var probe bytes.Buffer
			cc := newCompressedConn(nopCloser{&probe}, DefaultFrameSize)
			_, _ = cc.Write([]byte{DefaultSmuxVersion, 3, 0, 0, 0, 0, 0, 0})
			raw := heapDelta(func() func() {
				var ss []*kcp.UDPSession
				for range n {
					blk, _ := crypt.New(DefaultCrypt, crypt.DeriveKey(DefaultKey))
					s, err := kcp.DialWithOptions(addr, blk, DefaultDataShards, DefaultParityShards)
					if err != nil {
						b.Fatal(err)
					}
					//lint:ignore SA1019 stream mode is off by default and the wire format needs it
					s.SetStreamMode(true)
					if _, err := s.Write(probe.Bytes()); err != nil {
						b.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
					err = waitAcknowledged(ctx, s)
					cancel()
					if err != nil {
						b.Fatal(err)
					}
					ss = append(ss, s)
				}
				return func() {
					for _, s := range ss {
						_ = s.Close()
					}
				}
			})
			sdk := heapDelta(func() func() {
				var cs []*Client
				for range n {
					cl, err := NewClient(addr)
					if err != nil {
						b.Fatal(err)
					}
					c, err := cl.Dial() // waits until the session is up
					if err != nil {
						b.Fatal(err)
					}
					_ = c.Close()
					cs = append(cs, cl)
				}
				return func() {
					for _, cl := range cs {
						_ = cl.Close()
					}
				}
			})
			b.ReportMetric(float64(raw)/n, "kcp-go-B/session")
			b.ReportMetric(float64(sdk)/n, "sdk-B/session")
			b.ReportMetric(float64(sdk-raw)/n, "overhead-B/session")
		}
	})
	b.Run("stream", func(b *testing.B) {
		cl, err := NewClient(addr)
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		warm, err := cl.Dial()
		if err != nil {
			b.Fatal(err)
		}
		echoRoundTrip(b, warm, []byte("warm"))
		for range b.N {
			d := heapDelta(func() func() {
				var cs []net.Conn
				for range n {
					c, err := cl.Dial()
					if err != nil {
						b.Fatal(err)
					}
					echoRoundTrip(b, c, []byte("x"))
					cs = append(cs, c)
				}
				return func() {
					for _, c := range cs {
						_ = c.Close()
					}
				}
			})
			b.ReportMetric(float64(d)/n, "B/stream")
		}
		_ = warm.Close()
	})
}

type nopCloser struct{ io.Writer }

func (nopCloser) Read([]byte) (int, error) { return 0, io.EOF }
func (nopCloser) Close() error             { return nil }

// heapDelta returns how much live heap build's objects hold, measured after
// full collections, then runs the cleanup build returned.
func heapDelta(build func() func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cleanup := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	cleanup()
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}
