package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seed-fc8f924e/kcptun/internal/kerneltcp"
	"github.com/seed-fc8f924e/kcptun/internal/leakcheck"
)

// TestMain fails the run if any goroutine the demo started outlives it.
// kcp-go's process-wide timer workers, started from its init, are not ours.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// TestDemoSmoke runs the demo for a short while and checks that the table
// shows kcptun with no options and kernel TCP with CUBIC and BBR (or a note
// for each congestion control this kernel lacks), or kcptun alone with the
// reason when TCP cannot run here (not root, no ip command, no TUN device).
func TestDemoSmoke(t *testing.T) {
	c := defaultConfig()
	c.duration = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	start := time.Now()
	if err := run(ctx, c, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("demo took %v:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	text := out.String()
	for _, want := range []string{"kcptun (no options)", "[adapted]", "rate est.", "bulk throughput", "bulk, second half", "small messages p99", "Verdict:"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if reason := kerneltcp.Available(); reason != nil {
		if !strings.Contains(text, "TCP baseline unavailable") {
			t.Errorf("TCP cannot run here (%v), but the output does not say so", reason)
		}
		return
	}
	columns := 0
	for _, cc := range []string{"cubic", "bbr"} {
		col, note := "TCP "+ccLabel(cc)+" (Linux)", "Skipping TCP "+ccLabel(cc)+":"
		if kerneltcp.CongestionControlAvailable(cc) != nil {
			if !strings.Contains(text, note) || strings.Contains(text, col) {
				t.Errorf("%s is not available here: want the note %q and no column", cc, note)
			}
			continue
		}
		columns++
		if !strings.Contains(text, col) {
			t.Errorf("output lacks the column %q", col)
		}
	}
	_, v, _ := strings.Cut(text, "Verdict:")
	if columns > 0 && (!strings.Contains(v, "TCP ") || strings.Contains(v, "no TCP figures")) {
		t.Errorf("the verdict does not compare with TCP: %s", v)
	}
	// The demo removes the namespaces it created.
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		if mine := fmt.Sprintf("kcptun-demo-%d-", os.Getpid()); strings.Contains(string(out), mine) {
			t.Errorf("namespaces %s* left behind:\n%s", mine, out)
		}
	}
}

// TestUnknownCC checks that a congestion control the kernel does not have
// is skipped with a note and the demo still reports.
func TestUnknownCC(t *testing.T) {
	c := defaultConfig()
	c.duration = 600 * time.Millisecond
	c.tcpCC = "nosuchcc"
	var out strings.Builder
	if err := run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if kerneltcp.Available() == nil && !strings.Contains(text, "Skipping TCP NOSUCHCC:") {
		t.Errorf("no note for the unknown congestion control:\n%s", text)
	}
	if strings.Contains(text, "(Linux)") || !strings.Contains(text, "no TCP figures") {
		t.Errorf("a TCP column without a congestion control to run:\n%s", text)
	}
}

// TestNoTCP checks the kcptun-only mode.
func TestNoTCP(t *testing.T) {
	c := defaultConfig()
	c.duration = 600 * time.Millisecond
	c.noTCP = true
	var out strings.Builder
	if err := run(context.Background(), c, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "TCP baseline skipped") || strings.Contains(out.String(), "(Linux)") {
		t.Errorf("unexpected output:\n%s", out.String())
	}
}

// fakeSide is a finished side with bulk throughput mbit over d and every
// small message answered in rtt.
func fakeSide(name string, mbit float64, d, rtt time.Duration) *side {
	s := &side{name: name, short: name, bulkBytes: int64(mbit * 1e6 / 8 * d.Seconds())}
	for range 10 {
		s.msgs.sent = append(s.msgs.sent, time.Time{})
		s.msgs.rtts = append(s.msgs.rtts, rtt)
	}
	return s
}

// TestVerdict checks that the verdict compares kcptun with the TCP that
// moved the most and with the lowest TCP p99, and says so when TCP wins.
func TestVerdict(t *testing.T) {
	c := defaultConfig()
	d, ms := c.duration, time.Millisecond
	for _, tc := range []struct {
		name  string
		sides []*side
		want  []string
	}{
		{"kcptun wins", []*side{fakeSide("kcptun", 15, d, 100*ms), fakeSide("TCP CUBIC", 0.5, d, 300*ms), fakeSide("TCP BBR", 10, d, 200*ms)},
			[]string{"1.5x faster than the better TCP, TCP BBR (15.00 vs 10.00 Mbit/s)", "2.0x lower than the best TCP, TCP BBR (100 vs 200 ms)"}},
		{"TCP wins", []*side{fakeSide("kcptun", 5, d, 300*ms), fakeSide("TCP CUBIC", 1, d, 100*ms), fakeSide("TCP BBR", 15, d, 250*ms)},
			[]string{"TCP BBR moved data 3.0x faster than kcptun with no options (15.00 vs 5.00 Mbit/s): TCP wins", "3.0x higher than the best TCP, TCP CUBIC (300 vs 100 ms)"}},
		{"even", []*side{fakeSide("kcptun", 10, d, 100*ms), fakeSide("TCP BBR", 10.5, d, 105*ms)},
			[]string{"about as fast as TCP BBR (10.00 vs 10.50 Mbit/s)", "about the same as TCP BBR (100 vs 105 ms)"}},
		{"TCP stalls", []*side{fakeSide("kcptun", 10, d, 100*ms), fakeSide("TCP CUBIC", 0, d, 100*ms)},
			[]string{"while TCP moved nothing"}},
		{"kcptun alone", []*side{fakeSide("kcptun", 10, d, 100*ms)}, []string{"no TCP figures"}},
	} {
		v := verdict(c, tc.sides)
		for _, w := range tc.want {
			if !strings.Contains(v, w) {
				t.Errorf("%s: verdict %q lacks %q", tc.name, v, w)
			}
		}
	}
}

// TestFlags checks that good flags parse and bad ones are errors.
func TestFlags(t *testing.T) {
	c, err := parseFlags([]string{"-loss", "10", "-rtt", "200ms", "-bw", "5", "-duration", "3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.loss != 0.1 || c.rtt != 200*time.Millisecond || c.bw != 5e6 || c.duration != 3*time.Second {
		t.Errorf("parsed %+v", c)
	}
	for _, args := range [][]string{
		{"-loss", "-1"}, {"-loss", "95"}, {"-loss", "NaN"}, {"-rtt", "-1s"}, {"-bw", "0"},
		{"-duration", "1ms"}, {"-tcp-cc", strings.Repeat("x", 40)}, {"-tcp-cc", "cubic,,bbr"},
		{"-tcp-cc", "bbr,bbr"}, {"-tcp-cc", "bbr;reboot"}, {"-tcp-cc", "a,b,c,d,e"}, {"stray"}, {"-nope"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
	for in, want := range map[string][]string{"": {""}, "cubic,bbr": {"cubic", "bbr"}, " bbr , reno ": {"bbr", "reno"}} {
		c, err := parseFlags([]string{"-tcp-cc", in}, io.Discard)
		if err != nil {
			t.Errorf("-tcp-cc %q: %v", in, err)
			continue
		}
		if got, _ := c.ccList(); !slices.Equal(got, want) {
			t.Errorf("-tcp-cc %q: list %q, want %q", in, got, want)
		}
	}
	if c, _ := parseFlags(nil, io.Discard); c.tcpCC != "cubic,bbr" {
		t.Errorf("default -tcp-cc %q, want cubic,bbr", c.tcpCC)
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}
