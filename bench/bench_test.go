package bench

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	flagLoss     = flag.Float64("path.loss", 5, "benchmarks: loss percentage, each direction")
	flagRTT      = flag.Duration("path.rtt", 100*time.Millisecond, "benchmarks: round-trip time")
	flagBW       = flag.Float64("path.bw", 10, "benchmarks: bottleneck in Mbit/s")
	flagDuration = flag.Duration("cell.duration", 3*time.Second, "benchmarks: duration of each measurement")
)

// TestEachSystem runs a short bulk transfer and a short request/response
// exchange on every system over a lossy path and checks that data flowed.
func TestEachSystem(t *testing.T) {
	p := Path{Loss: 0.02, RTT: 20 * time.Millisecond, Bandwidth: 10e6}
	for _, sys := range Systems {
		t.Run(sys, func(t *testing.T) {
			if err := SystemAvailable(sys); err != nil {
				t.Skip(err)
			}
			r, err := Run(context.Background(), Spec{System: sys, Workload: Bulk, Path: p, Duration: 1500 * time.Millisecond, Seed: 1})
			if err != nil {
				t.Fatalf("bulk: %v", err)
			}
			if r.GoodputMbps <= 0 || r.PayloadBytes <= 0 || r.WirePerPayload < 1 {
				t.Errorf("bulk: goodput %.2f Mbit/s, %d payload bytes, wire x%.2f: want data to flow over at least its own size on the wire",
					r.GoodputMbps, r.PayloadBytes, r.WirePerPayload)
			}
			if r.GoodputMbps > p.Bandwidth.Mbps() {
				t.Errorf("bulk: goodput %.2f Mbit/s above the %g Mbit/s bottleneck", r.GoodputMbps, p.Bandwidth.Mbps())
			}
			r, err = Run(context.Background(), Spec{System: sys, Workload: RR, Path: p, Duration: time.Second, Seed: 1})
			if err != nil {
				t.Fatalf("rr: %v", err)
			}
			if r.N < 40 || r.P50ms < 20 || r.P99ms < r.P50ms || r.MaxMs < r.P99ms {
				t.Errorf("rr: %d answers, p50 %.1f p99 %.1f max %.1f ms: want about 50 answers, p50 >= the 20 ms RTT, ordered quantiles",
					r.N, r.P50ms, r.P99ms, r.MaxMs)
			}
		})
	}
}

// TestConns checks the short-connection workload on a KCP system and TCP.
func TestConns(t *testing.T) {
	p := Path{RTT: 10 * time.Millisecond, Bandwidth: 10e6}
	for _, sys := range []string{SDKFast2, TCP} {
		r, err := Run(context.Background(), Spec{System: sys, Workload: Conns, Path: p, Duration: time.Second, Seed: 1})
		if err != nil {
			t.Fatalf("%s: %v", sys, err)
		}
		if r.N < 5 || r.P50ms < 10 {
			t.Errorf("%s: %d connections, p50 %.1f ms: want several, each at least one 10 ms round trip", sys, r.N, r.P50ms)
		}
	}
}

// TestBadSpecs checks that bad input is an error, never a panic.
func TestBadSpecs(t *testing.T) {
	good := Spec{System: TCP, Workload: Bulk, Duration: time.Second, Path: Path{RTT: time.Millisecond}}
	for name, mod := range map[string]func(*Spec){
		"system":    func(s *Spec) { s.System = "quic" },
		"workload":  func(s *Spec) { s.Workload = "video" },
		"duration":  func(s *Spec) { s.Duration = 0 },
		"loss":      func(s *Spec) { s.Path.Loss = 1 },
		"nan loss":  func(s *Spec) { s.Path.Loss = nan() },
		"rtt":       func(s *Spec) { s.Path.RTT = -time.Second },
		"bandwidth": func(s *Spec) { s.Path.Bandwidth = -1 },
	} {
		s := good
		mod(&s)
		if _, err := Run(context.Background(), s); err == nil {
			t.Errorf("%s: Run(%+v) succeeded, want an error", name, s)
		}
	}
}

func nan() float64 { var z float64; return z / z }

// TestMarkdown checks that every system of the results appears in the
// tables, failures included.
func TestMarkdown(t *testing.T) {
	rs := []Result{
		{System: SDKFast2, Workload: Bulk, LossPct: 5, RTTms: 80, BwMbps: 20, GoodputMbps: 12, LimitLoss: 19, LimitFEC: 15.4},
		{System: TCP, Workload: Bulk, LossPct: 5, RTTms: 80, BwMbps: 20, GoodputMbps: 0.5, LimitLoss: 19, LimitFEC: 15.4},
		{System: TCP, Workload: RR, LossPct: 5, RTTms: 80, BwMbps: 20, Err: "boom | bang"},
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, rs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"| sdk-fast2 | tcp |", "| 5 | 80 | 20 | 19.00 | 15.38 | 12.00 | 0.50 |", "boom / bang", "error"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

// BenchmarkPath measures every system and workload over the path given by
// -path.loss, -path.rtt and -path.bw, each for -cell.duration per
// iteration; run it with -benchtime 1x. The figures are reported as custom
// metrics (Mbit/s, ms, wire bytes per payload byte, CPU seconds).
func BenchmarkPath(b *testing.B) {
	p := Path{Loss: *flagLoss / 100, RTT: *flagRTT, Bandwidth: Bitrate(*flagBW * 1e6)}
	for _, w := range Workloads {
		for _, sys := range Systems {
			if SystemAvailable(sys) != nil {
				continue
			}
			b.Run(fmt.Sprintf("%s/%s", w, sys), func(b *testing.B) {
				var r Result
				for b.Loop() {
					var err error
					r, err = Run(context.Background(), Spec{System: sys, Workload: w, Path: p, Duration: *flagDuration, Seed: 1})
					if err != nil {
						b.Fatal(err)
					}
				}
				switch w {
				case Bulk:
					b.ReportMetric(r.GoodputMbps, "Mbit/s")
				default:
					b.ReportMetric(r.P50ms, "p50-ms")
					b.ReportMetric(r.P99ms, "p99-ms")
					b.ReportMetric(float64(r.N), "samples")
				}
				b.ReportMetric(r.WirePerPayload, "wire/payload")
				b.ReportMetric(r.CPUSeconds, "cpu-s")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
