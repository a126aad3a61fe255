package kcptun

import (
	"fmt"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/seed-fc8f924e/kcptun/internal/rawkcptun"
	"github.com/seed-fc8f924e/kcptun/kcptuntest"
)

// TestSoakLossyAgainstKcpGo runs the SDK against kcp-go wired as the kcptun
// binaries wire it (internal/rawkcptun, 10+3 FEC) through a link with 10 %
// loss, jitter that reorders bursts, and duplication, in both roles, and
// checks every byte of the echo. kcp-go's FEC decoder must take shapes other
// than its own, which it detects by itself: the SDK sends the small groups
// the adaptive controller picks on such a path (pinned here, as the
// controller turns FEC on only after seconds of evidence), and its parity
// leaves behind the pacing queue. Ours must take kcp-go's 10+3 while the
// session adapts. A decoder that rebuilds with a wrong shape hands KCP a
// corrupt segment: the stream then fails or its echo differs.
func TestSoakLossyAgainstKcpGo(t *testing.T) {
	opts := []Option{WithMode(ModeFast3), WithKey("soak-kcp-go")}
	c, err := newConfig(entryClient, opts)
	if err != nil {
		t.Fatal(err)
	}
	tm := c.timing()
	rc := rawkcptun.Config{
		Key: c.key, Crypt: c.crypt,
		DataShards: c.dataShards, ParityShards: c.parityShards, MTU: c.mtu,
		NoDelay: tm.NoDelay, Interval: tm.Interval, Resend: tm.Resend, NC: tm.NC,
		Compression: c.compression, SockBuf: c.sockBuf, Smux: c.smuxConfig(),
	}
	rc.ClientSndWnd, rc.ClientRcvWnd = c.windows(false)
	rc.ServerSndWnd, rc.ServerRcvWnd = c.windows(true)
	bad := kcptuntest.Link{Loss: 0.10, Delay: 2 * time.Millisecond, Jitter: time.Millisecond, Reorder: 0.02, Duplicate: 0.02}
	link := kcptuntest.Config{Up: bad, Down: bad, Seed: 11}
	const streams, size = 8, 1 << 20

	for _, shape := range [][2]int{{2, 4}, {3, 2}} {
		t.Run(fmt.Sprintf("SDK client %d+%d", shape[0], shape[1]), func(t *testing.T) {
			ln := listenRawEcho(t, rc)
			relay, err := kcptuntest.NewRelay(ln.Addr().String(), link)
			if err != nil {
				t.Fatal(err)
			}
			defer relay.Close()
			cl, err := NewClient(relay.Addr().String(), append(opts, WithConns(2), WithFEC(shape[0], shape[1]))...)
			if err != nil {
				t.Fatal(err)
			}
			// kcp-go's listener closes first (listenRawEcho's cleanup runs
			// after this): it would open a session for the client's last
			// datagrams, which nobody would close.
			defer func() {
				_ = ln.Close()
				_ = cl.Close()
			}()
			recoveredBefore := kcp.DefaultSnmp.Copy().FECRecovered
			echoStreams(t, streams, size, 3*testTimeout, cl.Dial)
			// kcp-go's counter counts what its decoders rebuilt, and what
			// ours rebuilt too: that goes to KCP through kcp-go's FEC path.
			var paritySent, ours uint64
			for _, ss := range cl.Stats().PerSession {
				paritySent += ss.FECParitySent
				ours += ss.FECRecovered
			}
			theirs := kcp.DefaultSnmp.Copy().FECRecovered - recoveredBefore - ours
			t.Logf("SDK sent %d parity shards; kcp-go rebuilt %d data shards, the SDK %d", paritySent, theirs, ours)
			if paritySent == 0 {
				t.Error("the SDK sent no parity: kcp-go's decoder was not tried")
			}
		})
	}

	t.Run("kcp-go client", func(t *testing.T) {
		ln, relay := listenEchoBehindRelay(t, link, opts...)
		rcl, err := rawkcptun.Dial(relay.Addr().String(), rc)
		if err != nil {
			t.Fatal(err)
		}
		defer rcl.Close()
		echoStreams(t, streams, size, 3*testTimeout, rcl.OpenStream)
		var recovered uint64
		for _, ss := range ln.Stats().PerSession {
			recovered += ss.FECRecovered
		}
		t.Logf("the SDK rebuilt %d of kcp-go's data shards", recovered)
	})
}

// listenRawEcho starts a kcp-go listener wired as the kcptun binaries wire
// it that echoes every stream; it closes with the test (or earlier).
func listenRawEcho(t *testing.T, rc rawkcptun.Config) *rawkcptun.Listener {
	t.Helper()
	ln, err := rawkcptun.Listen("127.0.0.1:0", rc)
	if err != nil {
		t.Fatal(err)
	}
	startEcho(t, ln)
	return ln
}
