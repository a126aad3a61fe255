// Command demo shows, in one command and one process, what kcptun is for: on
// a lossy, long path it keeps moving data where TCP stalls, with no tuning.
//
//	go run ./examples/demo
//
// It starts a kcptun listener and client on loopback, with no option but the
// key (the SDK adapts its pacing, windows and FEC to the path by itself),
// with the link emulator (kcptuntest) between them, set to a bad mobile
// link: 5 % loss each way, 80 ms round trip, 20 Mbit/s. Then, over an
// identical emulated link, it runs the kernel's own TCP, once with CUBIC
// (the usual default of Linux distributions) and once with BBR. The systems
// run one after another, each alone on the machine: first bulk data one way,
// then, once the bulk data still in flight has arrived, 64-byte messages at
// 50 Hz, while a progress line runs. After kcptun's bulk phase it prints
// what the adaptive controller of the sending session chose (rate, pacing,
// windows, FEC). At the end it prints a table side by side and a one-line
// verdict against the better TCP.
//
// The TCP side is real Linux TCP: two network namespaces, each with a TUN
// device, whose IP packets the demo carries through the emulator as UDP
// datagrams. That needs root (CAP_NET_ADMIN), /dev/net/tun and the ip
// command; without them the demo says so and shows the kcptun side only. A
// congestion control the kernel does not have is skipped with a note. The
// namespaces and devices are the demo's own, named after its process ID,
// and are removed when it ends.
//
// Flags: -loss, -rtt, -bw set the link; -duration the length of each of the
// two phases of each system; -tcp-cc the TCP congestion controls to run,
// comma-separated (default "cubic,bbr"; "" runs one TCP with the kernel's
// default); -no-tcp skips TCP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		stop()
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	loss     float64       // per direction, 0..1
	rtt      time.Duration // round trip
	bw       int64         // bit/s per direction
	duration time.Duration // each phase
	tcpCC    string        // TCP congestion controls, comma-separated; "" for the kernel's
	noTCP    bool          // skip the TCP side
}

func defaultConfig() config {
	return config{loss: 0.05, rtt: 80 * time.Millisecond, bw: 20e6, duration: 4 * time.Second, tcpCC: "cubic,bbr"}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	loss := fs.Float64("loss", c.loss*100, "packet loss in `percent`, each direction")
	rtt := fs.Duration("rtt", c.rtt, "round-trip time of the link")
	bw := fs.Float64("bw", float64(c.bw)/1e6, "bandwidth in `Mbit/s`, each direction")
	fs.DurationVar(&c.duration, "duration", c.duration, "length of each of the two phases (bulk, then small messages) of each system")
	fs.StringVar(&c.tcpCC, "tcp-cc", c.tcpCC, "TCP congestion controls to compare, comma-separated (cubic, bbr, reno, ...; empty: one TCP with the kernel's default)")
	fs.BoolVar(&c.noTCP, "no-tcp", false, "skip the TCP baseline")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.loss, c.rtt, c.bw = *loss/100, *rtt, int64(*bw*1e6)
	return c, c.validate()
}

func (c config) validate() error {
	switch {
	case !(c.loss >= 0 && c.loss < 0.9):
		return fmt.Errorf("-loss %g: want a percentage in [0, 90)", c.loss*100)
	case c.rtt < 0 || c.rtt > 5*time.Second:
		return fmt.Errorf("-rtt %v: want 0..5s", c.rtt)
	case c.bw < 100e3 || c.bw > 1e9:
		return fmt.Errorf("-bw %g: want 0.1..1000 Mbit/s", float64(c.bw)/1e6)
	case c.duration < 500*time.Millisecond || c.duration > 10*time.Minute:
		return fmt.Errorf("-duration %v: want 500ms..10m", c.duration)
	}
	_, err := c.ccList()
	return err
}

// maxCCs bounds the -tcp-cc list, so the demo stays short.
const maxCCs = 4

// ccList returns the TCP congestion controls to run, in order: the names in
// -tcp-cc, or one "" (the kernel's default) when it is empty.
func (c config) ccList() ([]string, error) {
	if strings.TrimSpace(c.tcpCC) == "" {
		return []string{""}, nil
	}
	var list []string
	for _, f := range strings.Split(c.tcpCC, ",") {
		cc := strings.TrimSpace(f)
		switch {
		case !validCCName(cc):
			return nil, fmt.Errorf("-tcp-cc %q: %q is not a congestion control name (1 to 15 of a-z, 0-9, _)", c.tcpCC, cc)
		case slices.Contains(list, cc):
			return nil, fmt.Errorf("-tcp-cc %q: %s is listed twice", c.tcpCC, cc)
		}
		list = append(list, cc)
	}
	if len(list) > maxCCs {
		return nil, fmt.Errorf("-tcp-cc %q: at most %d congestion controls", c.tcpCC, maxCCs)
	}
	return list, nil
}

// validCCName reports whether cc can be a Linux TCP congestion control name.
func validCCName(cc string) bool {
	if len(cc) == 0 || len(cc) > 15 {
		return false
	}
	for _, r := range cc {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
