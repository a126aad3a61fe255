package forward

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun"
)

// tunnel is an in-process client and server with Pipe on both ends, the
// shape of the two programs without the processes.
type tunnel struct {
	addr string // the client side's TCP address
	stop func()
}

// startTunnel forwards TCP connections to its address through a kcptun
// Client and Listener to the TCP target.
func startTunnel(tb testing.TB, target string, cfg PipeConfig, opts ...kcptun.Option) *tunnel {
	tb.Helper()
	kl, err := kcptun.Listen("127.0.0.1:0", opts...)
	if err != nil {
		tb.Fatal(err)
	}
	cl, err := kcptun.NewClient(kl.Addr().String(), opts...)
	if err != nil {
		kl.Close()
		tb.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var g Group
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // server side
		defer wg.Done()
		for {
			st, err := kl.Accept()
			if err != nil {
				return
			}
			g.Go(func() {
				c, err := DialLocal(ctx, target)
				if err != nil {
					st.Close()
					return
				}
				scfg := cfg
				scfg.HalfCloseStream = true
				Pipe(ctx, c, st, scfg)
			})
		}
	}()
	go func() { // client side
		defer wg.Done()
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			g.Go(func() {
				st, err := cl.DialContext(ctx)
				if err != nil {
					c.Close()
					return
				}
				ccfg := cfg
				ccfg.HalfCloseStream = false
				Pipe(ctx, c, st, ccfg)
			})
		}
	}()
	t := &tunnel{addr: tl.Addr().String()}
	t.stop = func() {
		tl.Close()
		kl.Close()
		cancel()
		cl.Close()
		wg.Wait()
		g.Wait()
	}
	tb.Cleanup(t.stop)
	return t
}

// sink accepts connections and reads each to its end, then writes one byte.
func startSink(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				var n [8]byte
				if _, err := io.ReadFull(c, n[:]); err != nil {
					return
				}
				want := int64(0)
				for _, b := range n {
					want = want<<8 | int64(b)
				}
				if got, _ := io.CopyN(io.Discard, c, want); got == want {
					_, _ = c.Write([]byte{1})
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// BenchmarkPipeUp moves 16 MiB of incompressible bytes per iteration through
// an in-process tunnel, client to target.
func BenchmarkPipeUp(b *testing.B) {
	const size = 16 << 20
	for _, opts := range [][]kcptun.Option{nil, {kcptun.WithCrypt("aes-128-gcm"), kcptun.WithCompression(false)}} {
		name := "default"
		if opts != nil {
			name = "gcm-nocomp"
		}
		b.Run(name, func(b *testing.B) {
			tun := startTunnel(b, startSink(b), PipeConfig{}, opts...)
			block := make([]byte, 1<<20)
			_, _ = rand.NewChaCha8([32]byte{1}).Read(block)
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				c, err := net.Dial("tcp", tun.addr)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				var hdr [8]byte
				for i := range hdr {
					hdr[i] = byte(int64(size) >> (56 - 8*i))
				}
				_, _ = c.Write(hdr[:])
				for left := size; left > 0; left -= len(block) {
					if _, err := c.Write(block[:min(left, len(block))]); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := io.ReadFull(c, hdr[:1]); err != nil {
					b.Fatal("no receipt: " + err.Error() + " " + strconv.Itoa(b.N))
				}
				c.Close()
			}
		})
	}
}
