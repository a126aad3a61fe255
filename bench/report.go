package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteMarkdown writes results as markdown: for each workload present, a
// summary with one row per path and one column per system, then a detailed
// table with one row per result.
func WriteMarkdown(w io.Writer, results []Result) error {
	var b strings.Builder
	for _, wl := range Workloads {
		rs := slices.DeleteFunc(slices.Clone(results), func(r Result) bool { return r.Workload != wl })
		if len(rs) == 0 {
			continue
		}
		writeSummary(&b, wl, rs)
		writeDetail(&b, wl, rs)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

type pathKey struct{ loss, rtt, bw float64 }

func keyOf(r Result) pathKey { return pathKey{r.LossPct, r.RTTms, r.BwMbps} }

func summaryCell(wl string, r Result) string {
	if r.Err != "" && r.N == 0 && r.GoodputMbps == 0 {
		return "error"
	}
	switch wl {
	case Bulk:
		return fmt.Sprintf("%.2f", r.GoodputMbps)
	case RR:
		s := fmt.Sprintf("%.0f / %.0f", r.P50ms, r.P99ms)
		if r.Missing > 0 {
			s += fmt.Sprintf(" (%d lost)", r.Missing)
		}
		return s
	case Loaded:
		s := fmt.Sprintf("%.1f; %.0f / %.0f", r.GoodputMbps, r.P50ms, r.P99ms)
		if r.Missing > 0 {
			s += fmt.Sprintf(" (%d lost)", r.Missing)
		}
		return s
	case Share, VsCubic:
		if len(r.FlowMbps) != 2 {
			return "error"
		}
		return fmt.Sprintf("%.1f / %.1f (%s / %s)", r.FlowMbps[0], r.FlowMbps[1], pct(r.FlowMbps[0], r.BwMbps), pct(r.FlowMbps[1], r.BwMbps))
	default:
		return fmt.Sprintf("%d, %.0f / %.0f", r.N, r.P50ms, r.P99ms)
	}
}

func writeSummary(b *strings.Builder, wl string, rs []Result) {
	var systems []string
	var keys []pathKey
	cells := map[pathKey]map[string]Result{}
	for _, r := range rs {
		if !slices.Contains(systems, r.System) {
			systems = append(systems, r.System)
		}
		k := keyOf(r)
		if cells[k] == nil {
			cells[k] = map[string]Result{}
			keys = append(keys, k)
		}
		cells[k][r.System] = r
	}
	slices.SortStableFunc(systems, func(a, c string) int { return slices.Index(Systems, a) - slices.Index(Systems, c) })
	switch wl {
	case Bulk:
		b.WriteString("### Bulk goodput, Mbit/s (limits: C(1-p) for any protocol; Ck/(k+m) for FEC 10+3)\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s | C(1-p) | Ck/(k+m) |")
	case RR:
		b.WriteString("### 64-byte request/response at 50 Hz: p50 / p99 round trip, ms\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s |")
	case Loaded:
		b.WriteString("### Latency under load: bulk goodput Mbit/s; p50 / p99 ms of 64-byte messages at 50 Hz on a second connection meanwhile\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s |")
	case Share:
		b.WriteString("### Two flows of the same system through one bottleneck: Mbit/s of each (% of C)\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s |")
	case VsCubic:
		b.WriteString("### The system against kernel TCP CUBIC through one bottleneck: Mbit/s of the system / of CUBIC (% of C)\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s |")
	default:
		b.WriteString("### Sequential short connections: count done, p50 / p99 ms from dial to response\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s |")
	}
	for _, s := range systems {
		b.WriteString(" " + s + " |")
	}
	b.WriteString("\n|")
	n := 3 + len(systems)
	if wl == Bulk {
		n += 2
	}
	b.WriteString(strings.Repeat("---|", n) + "\n")
	for _, k := range keys {
		fmt.Fprintf(b, "| %g | %g | %g |", k.loss, k.rtt, k.bw)
		if wl == Bulk {
			c := k.bw
			fmt.Fprintf(b, " %.2f | %.2f |", c*(1-k.loss/100), c*fecEfficiency)
		}
		for _, s := range systems {
			r, ok := cells[k][s]
			cell := "-"
			if ok {
				cell = summaryCell(wl, r)
			}
			b.WriteString(" " + cell + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func writeDetail(b *strings.Builder, wl string, rs []Result) {
	switch wl {
	case Bulk:
		b.WriteString("<details><summary>Bulk, every figure</summary>\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s | system | goodput Mbit/s | % of C(1-p) | % of Ck/(k+m) | wire B per payload B | lost dgrams | queue drops | CPU s | peak RSS MiB | error |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	case RR:
		b.WriteString("<details><summary>Request/response, every figure</summary>\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s | system | answered | unanswered | p50 ms | p99 ms | max ms | wire B per payload B | CPU s | peak RSS MiB | error |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	case Loaded:
		b.WriteString("<details><summary>Latency under load, every figure</summary>\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s | system | bulk Mbit/s | % of C(1-p) | answered | unanswered | p50 ms | p99 ms | max ms | wire B per payload B | queue drops | CPU s | peak RSS MiB | error |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	case Share, VsCubic:
		b.WriteString("<details><summary>Shared bottleneck (" + wl + "), every figure</summary>\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s | system | against | first Mbit/s | second Mbit/s | sum % of C | first's share | Jain | wire B per payload B | queue drops | CPU s | peak RSS MiB | error |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	default:
		b.WriteString("<details><summary>Short connections, every figure</summary>\n\n")
		b.WriteString("| loss % | RTT ms | C Mbit/s | system | done | per s | p50 ms | p99 ms | max ms | wire B per payload B | CPU s | peak RSS MiB | error |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	}
	for _, r := range rs {
		fmt.Fprintf(b, "| %g | %g | %g | %s |", r.LossPct, r.RTTms, r.BwMbps, r.System)
		switch wl {
		case Bulk:
			fmt.Fprintf(b, " %.2f | %s | %s | %.2f | %d | %d |", r.GoodputMbps, pct(r.GoodputMbps, r.LimitLoss), pct(r.GoodputMbps, r.LimitFEC),
				r.WirePerPayload, r.LostDatagrams, r.QueueDrops)
		case RR:
			fmt.Fprintf(b, " %d | %d | %.1f | %.1f | %.1f | %.2f |", r.N, r.Missing, r.P50ms, r.P99ms, r.MaxMs, r.WirePerPayload)
		case Loaded:
			fmt.Fprintf(b, " %.2f | %s | %d | %d | %.1f | %.1f | %.1f | %.2f | %d |", r.GoodputMbps, pct(r.GoodputMbps, r.LimitLoss),
				r.N, r.Missing, r.P50ms, r.P99ms, r.MaxMs, r.WirePerPayload, r.QueueDrops)
		case Share, VsCubic:
			var f1, f2 float64
			if len(r.FlowMbps) == 2 {
				f1, f2 = r.FlowMbps[0], r.FlowMbps[1]
			}
			fmt.Fprintf(b, " %s | %.2f | %.2f | %s | %.2f | %.3f | %.2f | %d |", r.Competitor, f1, f2, pct(r.GoodputMbps, r.BwMbps),
				r.FirstShare, r.Jain, r.WirePerPayload, r.QueueDrops)
		default:
			fmt.Fprintf(b, " %d | %.1f | %.1f | %.1f | %.1f | %.2f |", r.N, r.PerSec, r.P50ms, r.P99ms, r.MaxMs, r.WirePerPayload)
		}
		fmt.Fprintf(b, " %.2f | %.0f | %s |\n", r.CPUSeconds, r.PeakRSSMiB, strings.ReplaceAll(r.Err, "|", "/"))
	}
	b.WriteString("\n</details>\n\n")
}

func pct(v, limit float64) string {
	if limit <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*v/limit)
}
