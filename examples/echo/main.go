// Command echo shows kcptun.Listen and kcptun.Dial in a game-style loop: the
// client sends a small request every tick and waits for the server's reply,
// printing each round-trip time and a summary.
//
// With no flags it runs the server and the client in one process on
// 127.0.0.1:
//
//	go run ./examples/echo -count 20 -size 64
//
// Or run the two halves apart:
//
//	go run ./examples/echo -listen :29950 -key secret
//	go run ./examples/echo -connect server.example:29950 -key secret
//
// # Options that lower latency
//
// A game sends a few small messages per tick and cares about how late each
// one arrives, not about bulk throughput. The options below are the ones
// that matter for that; all of them are local, so each end may choose its
// own, except where noted.
//
//   - WithMode(kcptun.ModeFast3), the default here: KCP's clock ticks every
//     10 ms instead of ModeFast's 30; nodelay lowers the smallest
//     retransmission timeout (30 ms instead of 100) and makes it grow by half
//     rather than double on each timeout; resend 2 retransmits a segment as
//     soon as two later ones are acknowledged; nc 1 turns off congestion
//     control, so that one loss does not throttle the sender.
//   - WithACKNoDelay(true): each acknowledgement leaves as soon as the data
//     arrives instead of on the receiver's next tick, which takes up to one
//     interval off every round trip the sender measures and lets it
//     retransmit sooner. It costs more, smaller datagrams.
//   - WithFEC(data, parity) with a small group, 2 and 1 here (-fec-data,
//     -fec-parity), or 0 to turn FEC off: parity goes out only once a group
//     of data packets is complete, and at a few packets per tick the
//     default group of 10 fills too slowly for its parity to beat a
//     retransmission. A small group repairs a lost packet a packet or two
//     later, at the price of the parity bandwidth; on a clean link, no FEC
//     is cheapest. The receiver follows whatever the sender does.
//   - WithWindow(snd, rcv): the windows only cap how many packets may be in
//     flight. A game's traffic never fills the defaults (128/512 for a
//     client, 1024/1024 for a listener), so raising them buys nothing here;
//     a bigger send window only lets more queue up behind a burst.
//
// Compression (WithCompression, which must match at both ends) gains
// nothing on messages this small and may be turned off to save a little
// CPU; the cipher (WithCrypt, also matched) costs microseconds either way.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/seed-fc8f924e/kcptun"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// settings are the command line.
type settings struct {
	listen, connect string
	count, size     int
	fecData         int
	fecParity       int
	tick            time.Duration
	key, crypt      string
	mode            kcptun.Mode
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings
	var mode string
	fs.StringVar(&s.listen, "listen", "", "run only the server, on this UDP address (e.g. :29950)")
	fs.StringVar(&s.connect, "connect", "", "run only the client, against the server at this address")
	fs.IntVar(&s.count, "count", 20, "requests to send")
	fs.IntVar(&s.size, "size", 64, "bytes per request (at least 12)")
	fs.DurationVar(&s.tick, "tick", 20*time.Millisecond, "time between requests, like a game's tick")
	fs.StringVar(&s.key, "key", kcptun.DefaultKey, "pre-shared key, the same at both ends")
	fs.StringVar(&s.crypt, "crypt", "aes-128-gcm", "cipher, the same at both ends")
	fs.StringVar(&mode, "mode", "fast3", "KCP timing profile: normal, fast, fast2, fast3")
	fs.IntVar(&s.fecData, "fec-data", 2, "FEC data shards per group (0 turns FEC off)")
	fs.IntVar(&s.fecParity, "fec-parity", 1, "FEC parity shards per group (0 turns FEC off)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	m, err := kcptun.ParseMode(mode)
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "echo:", err)
		return 2
	case s.count < 1 || s.size < 12 || s.tick < 0:
		fmt.Fprintln(stderr, "echo: want -count >= 1, -size >= 12 and -tick >= 0")
		return 2
	case s.listen != "" && s.connect != "":
		fmt.Fprintln(stderr, "echo: give -listen or -connect, not both")
		return 2
	}
	s.mode = m
	// Key and cipher must match the other end; the rest is chosen for
	// latency (see the package comment).
	opts := []kcptun.Option{
		kcptun.WithKey(s.key), kcptun.WithCrypt(s.crypt),
		kcptun.WithMode(s.mode), kcptun.WithACKNoDelay(true), kcptun.WithFEC(s.fecData, s.fecParity),
	}

	if s.connect != "" {
		return report(stderr, client(s.connect, s, opts, stdout))
	}
	addr := s.listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := kcptun.Listen(addr, opts...)
	if err != nil {
		return report(stderr, err)
	}
	fmt.Fprintf(stdout, "server listening on %s\n", ln.Addr())
	srv := &server{ln: ln}
	srv.wg.Add(1)
	go srv.serve()
	defer srv.close()
	if s.listen != "" {
		srv.wg.Wait() // serve until killed
		return 0
	}
	return report(stderr, client(ln.Addr().String(), s, opts, stdout))
}

func report(stderr io.Writer, err error) int {
	if err != nil {
		fmt.Fprintln(stderr, "echo:", err)
		return 1
	}
	return 0
}

// server echoes every stream it accepts.
type server struct {
	ln *kcptun.Listener
	wg sync.WaitGroup
}

func (s *server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // the listener was closed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			_, _ = io.Copy(conn, conn) // send every request straight back
		}()
	}
}

func (s *server) close() {
	_ = s.ln.Close()
	s.wg.Wait()
}

// client sends s.count requests of s.size bytes, one per tick, and prints
// the round-trip time of each.
func client(addr string, s settings, opts []kcptun.Option, stdout io.Writer) error {
	conn, err := kcptun.Dial(addr, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(stdout, "connected to %s from %s\n", conn.RemoteAddr(), conn.LocalAddr())

	req := make([]byte, s.size)
	resp := make([]byte, s.size)
	var ticker *time.Ticker
	if s.tick > 0 {
		ticker = time.NewTicker(s.tick)
		defer ticker.Stop()
	}
	var total, lo, hi time.Duration
	for seq := range s.count {
		if ticker != nil && seq > 0 {
			<-ticker.C // wait for the next tick, as a game loop does
		}
		binary.BigEndian.PutUint32(req, uint32(seq))
		sent := time.Now()
		binary.BigEndian.PutUint64(req[4:], uint64(sent.UnixNano()))
		_ = conn.SetDeadline(sent.Add(5 * time.Second))
		if _, err := conn.Write(req); err != nil {
			return fmt.Errorf("request %d: %w", seq, err)
		}
		if _, err := io.ReadFull(conn, resp); err != nil {
			return fmt.Errorf("reply %d: %w", seq, err)
		}
		rtt := time.Since(sent)
		if got := binary.BigEndian.Uint32(resp); got != uint32(seq) {
			return fmt.Errorf("reply %d carries sequence number %d", seq, got)
		}
		fmt.Fprintf(stdout, "seq=%d bytes=%d rtt=%v\n", seq, s.size, rtt.Round(time.Microsecond))
		total += rtt
		if seq == 0 || rtt < lo {
			lo = rtt
		}
		hi = max(hi, rtt)
	}
	avg := total / time.Duration(s.count)
	fmt.Fprintf(stdout, "%d requests: min %v avg %v max %v\n", s.count,
		lo.Round(time.Microsecond), avg.Round(time.Microsecond), hi.Round(time.Microsecond))
	return nil
}
