package forward

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/seed-fc8f924e/kcptun"
)

// LogSNMP appends a CSV row of the SDK's counters (kcptun.Header's columns)
// to a file every period until ctx ends, as the classic binaries'
// --snmplog does: only the file's base name goes through Go's time format
// ("/var/log/kcptun/snmp-20060102.log" starts a new file each day), so
// digits in the directory stay as they are. A new or empty file gets the
// header row first. It returns ctx's error, or the first error writing.
//
// kcptun.LogSNMP formats the whole path; this differs only in that.
func LogSNMP(ctx context.Context, path string, period time.Duration) error {
	if period <= 0 {
		return fmt.Errorf("snmp log %s: period %v must be positive", path, period)
	}
	dir, base := filepath.Split(path)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			name := dir + now.Format(base)
			if err := appendRow(name, kcptun.ReadSNMP().Row()); err != nil {
				return fmt.Errorf("snmp log %s: %w", name, err)
			}
		}
	}
}

func appendRow(name string, row []string) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
		_ = w.Write(kcptun.Header())
	}
	_ = w.Write(row)
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
