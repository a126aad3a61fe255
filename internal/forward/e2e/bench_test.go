package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchBytes is how much one benchmark iteration moves through one
// forwarded TCP connection.
const benchBytes = 64 << 20

// BenchmarkForward drives the two programs end to end: one TCP connection
// through examples/client and examples/server to a target in the test,
// moving 64 MiB up (client to target) or down (target to client), with
// default flags and with -crypt aes-128-gcm -nocomp. Besides the time it
// reports MiB/s, the peak RSS of each process (VmHWM) and the CPU seconds
// each process spent per 100 MiB moved. Run it with
//
//	go test -run '^$' -bench Forward -benchtime 3x ./internal/forward/e2e
//
// KCPTUN_E2E_CLIENT and KCPTUN_E2E_SERVER name other builds to measure
// instead of the current tree's; their log lines must match this tree's
// "listening" lines, which the benchmark waits for.
func BenchmarkForward(b *testing.B) {
	settings := []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"aes-128-gcm-nocomp", []string{"-crypt", "aes-128-gcm", "-nocomp"}},
	}
	for _, s := range settings {
		for _, up := range []bool{true, false} {
			dir := map[bool]string{true: "up", false: "down"}[up]
			b.Run(s.name+"/"+dir, func(b *testing.B) { benchForward(b, s.args, up) })
		}
	}
}

func benchForward(b *testing.B, args []string, up bool) {
	target := startSinkSource(b)
	server, saddr := startServer(b, target.Addr().String(), append([]string{"-quiet"}, args...)...)
	client, caddr := startClient(b, saddr, append([]string{"-quiet"}, args...)...)
	block := make([]byte, 1<<20)
	_, _ = rand.NewChaCha8([32]byte{42}).Read(block)

	cpu0c, cpu0s := cpuSeconds(b, client), cpuSeconds(b, server)
	b.SetBytes(benchBytes)
	b.ResetTimer()
	startT := time.Now()
	for range b.N {
		moveThrough(b, caddr, block, up)
	}
	elapsed := time.Since(startT)
	b.StopTimer()
	cpuC, cpuS := cpuSeconds(b, client)-cpu0c, cpuSeconds(b, server)-cpu0s
	moved := float64(b.N) * benchBytes / (1 << 20)
	b.ReportMetric(moved/elapsed.Seconds(), "MiB/s")
	b.ReportMetric(peakRSS(b, client), "client-RSS-MiB")
	b.ReportMetric(peakRSS(b, server), "server-RSS-MiB")
	b.ReportMetric(cpuC/moved*100, "client-CPU-s/100MiB")
	b.ReportMetric(cpuS/moved*100, "server-CPU-s/100MiB")
}

// moveThrough moves benchBytes through one connection to the client at
// addr: up sends them to the target and waits for its receipt, down asks the
// target for them and reads them all.
func moveThrough(b *testing.B, addr string, block []byte, up bool) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	var hdr [9]byte
	hdr[0] = 'd'
	if up {
		hdr[0] = 'u'
	}
	binary.BigEndian.PutUint64(hdr[1:], benchBytes)
	if _, err := c.Write(hdr[:]); err != nil {
		b.Fatal(err)
	}
	if up {
		for left := benchBytes; left > 0; left -= len(block) {
			if _, err := c.Write(block[:min(left, len(block))]); err != nil {
				b.Fatal(err)
			}
		}
		var ack [1]byte
		if _, err := io.ReadFull(c, ack[:]); err != nil {
			b.Fatalf("no receipt from the target: %v", err)
		}
		return
	}
	n, err := io.Copy(io.Discard, io.LimitReader(c, benchBytes))
	if err != nil || n != benchBytes {
		b.Fatalf("read %d of %d bytes: %v", n, benchBytes, err)
	}
}

// startSinkSource starts the benchmark's target: each connection sends a
// 9-byte request ('u' or 'd', then a big-endian length); for 'u' the target
// reads that many bytes and answers one byte, for 'd' it sends that many.
func startSinkSource(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		block := make([]byte, 1<<20)
		_, _ = rand.NewChaCha8([32]byte{7}).Read(block)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				var hdr [9]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				n := int64(binary.BigEndian.Uint64(hdr[1:]))
				if hdr[0] == 'u' {
					if got, _ := io.CopyN(io.Discard, c, n); got == n {
						_, _ = c.Write([]byte{1})
					}
					return
				}
				for left := n; left > 0; left -= int64(len(block)) {
					if _, err := c.Write(block[:min(left, int64(len(block)))]); err != nil {
						return
					}
				}
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln
}

// peakRSS returns the process's peak resident set size in MiB (VmHWM).
func peakRSS(b *testing.B, p *proc) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Skipf("no /proc here: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				b.Fatalf("VmHWM %q: %v", v, err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmHWM in /proc status")
	return 0
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds returns the user and system CPU time the process has used.
func cpuSeconds(b *testing.B, p *proc) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Skipf("no /proc here: %v", err)
	}
	// The command name (field 2) may hold spaces; fields after ")" are fixed.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseFloat(fields[11], 64)
	st, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("bad /proc stat: %q", s)
	}
	return (ut + st) / clockTicks
}
