package kcptun

import (
	"context"
	"encoding/csv"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSNMPRowsAndDeltas(t *testing.T) {
	before := ReadSNMP()
	ln := listenEcho(t)
	c, err := Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c, randomBytes(t, 64<<10))
	_ = c.Close()
	d := ReadSNMP().Sub(before)
	if d.OutPkts == 0 || d.InPkts == 0 || d.BytesSent < 64<<10 || d.ActiveOpens == 0 {
		t.Errorf("delta after a transfer: %+v", d)
	}
	h, r := Header(), d.Row()
	if len(h) != len(r) || h[0] != "Unix" || len(h) != 1+len(snmpFields) {
		t.Fatalf("header %d columns, row %d", len(h), len(r))
	}
	for i, v := range r {
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			t.Errorf("column %s = %q is not a number", h[i], v)
		}
	}
}

func TestLogSNMP(t *testing.T) {
	// A directory name that Go's time format would change ("2006") stays as
	// given: only the base name is a pattern.
	dir := filepath.Join(t.TempDir(), "2006")
	pattern := filepath.Join(dir, "snmp-20060102.log")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- LogSNMP(ctx, pattern, 10*time.Millisecond) }()
	name := filepath.Join(dir, time.Now().Format("snmp-20060102.log"))
	var rows [][]string
	waitFor(t, "two CSV rows", func() bool {
		f, err := os.Open(name)
		if err != nil {
			return false
		}
		defer f.Close()
		rows, _ = csv.NewReader(f).ReadAll()
		return len(rows) >= 3
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("LogSNMP returned %v, want context.Canceled", err)
	}
	if rows[0][0] != "Unix" || len(rows[0]) != len(rows[1]) {
		t.Errorf("first rows %v / %v", rows[0], rows[1])
	}
	if err := LogSNMP(context.Background(), pattern, 0); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("period 0: %v", err)
	}
}

// TestSessionStatsLogValue checks the one-line session summary: the
// controller's part, with what the packet layer re-sent and repeated by
// itself, only for an adaptive session.
func TestSessionStatsLogValue(t *testing.T) {
	line := func(s SessionStats) string {
		var b strings.Builder
		slog.New(slog.NewTextHandler(&b, nil)).Info("session", "stats", s)
		return b.String()
	}
	s := SessionStats{SegmentsSent: 40, SegmentsResent: 5, SegmentsResentAgain: 2, AcksRepeated: 7, Created: time.Now()}
	fixed := line(s)
	if !strings.Contains(fixed, "stats.segments_resent=5") || strings.Contains(fixed, "stats.mode=") || strings.Contains(fixed, "acks_repeated") {
		t.Errorf("a fixed session's summary: %s", fixed)
	}
	s.Adaptive = true
	s.Control.Mode = "probe-bw"
	s.Control.LinkBound = true
	adaptive := line(s)
	for _, want := range []string{"stats.mode=probe-bw", "stats.link_bound=true", "stats.resent_again=2", "stats.acks_repeated=7"} {
		if !strings.Contains(adaptive, want) {
			t.Errorf("an adaptive session's summary lacks %s: %s", want, adaptive)
		}
	}
}
