package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/seed-fc8f924e/kcptun/internal/kerneltcp"
)

// TestMain fails the run if any goroutine the demo started outlives it.
// kcp-go's process-wide timer workers, started from its init, are not ours.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).sched"),
			goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).prepend"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// TestDemoSmoke runs the demo for a short while and checks that the table
// shows both systems, or kcptun alone with the reason when TCP cannot run
// here (not root, no ip command, no TUN device).
func TestDemoSmoke(t *testing.T) {
	c := defaultConfig()
	c.duration = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	start := time.Now()
	if err := run(ctx, c, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("demo took %v:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	text := out.String()
	for _, want := range []string{"kcptun (fast2)", "bulk throughput", "small messages p99", "Verdict:"} {
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
	if !strings.Contains(text, "TCP (Linux, cubic)") {
		t.Errorf("output lacks the TCP column")
	}
	// The demo removes the namespaces it created.
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		if mine := fmt.Sprintf("kcptun-demo-%d-", os.Getpid()); strings.Contains(string(out), mine) {
			t.Errorf("namespaces %s* left behind:\n%s", mine, out)
		}
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
	if !strings.Contains(out.String(), "TCP baseline skipped") || strings.Contains(out.String(), "TCP (Linux") {
		t.Errorf("unexpected output:\n%s", out.String())
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
		{"-duration", "1ms"}, {"-tcp-cc", strings.Repeat("x", 40)}, {"stray"}, {"-nope"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}
