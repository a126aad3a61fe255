package forward

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLogSNMPFormatsOnlyTheBaseName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs-2006-01-02")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- LogSNMP(ctx, filepath.Join(dir, "snmp-20060102.log"), 5*time.Millisecond) }()
	name := filepath.Join(dir, "snmp-"+time.Now().Format("20060102")+".log")
	var lines []string
	for deadline := time.Now().Add(10 * time.Second); len(lines) < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d lines after 10 s", name, len(lines))
		}
		b, _ := os.ReadFile(name)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("LogSNMP returned %v, want context.Canceled", err)
	}
	if !strings.HasPrefix(lines[0], "Unix,BytesSent,") || strings.HasPrefix(lines[1], "Unix") {
		t.Errorf("want one header line first, got %q", lines[:2])
	}
	if err := LogSNMP(context.Background(), name, 0); err == nil {
		t.Error("LogSNMP accepted a zero period")
	}
}
