// Command matrix runs kcptun, raw kcp-go+smux and TCP over the same emulated
// lossy paths and prints the results as JSON lines and markdown tables.
//
// Every combination of the -loss, -rtt, -bw, -systems and -workloads lists is
// one cell. The default workloads are bulk, rr and conns; loaded, share and
// vs-cubic (latency under load, two flows through one bottleneck) are run by
// naming them. Each cell runs in a fresh child process (this program with -cell),
// so that its CPU time and peak RSS are its own, and is killed if it takes
// longer than its duration plus 30 s. A cell takes about -duration, plus up to
// 3 s for request/response; the full default matrix (4 losses x 3 RTTs x 2
// bandwidths x 8 systems x 3 workloads = 576 cells) takes about 31 minutes at
// -duration 3s on two cores, 23 minutes without tcp-linux and tcp-linux-bbr,
// which are left out of the defaults when they cannot run here (not root, or
// no BBR in the kernel).
//
//	go run ./cmd/matrix -loss 5 -rtt 100 -bw 10 -systems sdk-fast2,tcp -workloads bulk
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/seed-fc8f924e/kcptun/bench"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "matrix:", err)
		os.Exit(1)
	}
}

type options struct {
	losses    []float64
	rtts      []time.Duration
	bws       []int64
	systems   []string
	workloads []string
	duration  time.Duration
	seed      int64
	jsonPath  string
	mdPath    string
	cell      string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("matrix", flag.ContinueOnError)
	fs.SetOutput(stderr)
	loss := fs.String("loss", "0,1,5,10", "loss `percentages`, each direction, comma-separated")
	rtt := fs.String("rtt", "20,100,200", "round-trip `milliseconds`, comma-separated")
	bw := fs.String("bw", "10,100", "bottleneck `Mbit/s`, each direction, comma-separated")
	defSystems := bench.Systems
	// Leave out of the defaults what cannot run here (the kernel TCP
	// systems when not root or without the congestion control).
	defSystems = slices.DeleteFunc(slices.Clone(defSystems), func(s string) bool { return bench.SystemAvailable(s) != nil })
	systems := fs.String("systems", strings.Join(defSystems, ","), "`systems` to run, comma-separated (tcp-linux and tcp-linux-bbr need root)")
	workloads := fs.String("workloads", strings.Join(bench.DefaultWorkloads, ","),
		"`workloads` to run, comma-separated, of "+strings.Join(bench.Workloads, ", ")+" (vs-cubic needs what tcp-linux needs)")
	o := &options{}
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "duration of each cell")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the emulator's random choices")
	fs.StringVar(&o.jsonPath, "json", "", "also write JSON lines to this `file` (\"-\" for standard output)")
	fs.StringVar(&o.mdPath, "md", "", "also write the markdown tables to this `file`")
	fs.StringVar(&o.cell, "cell", "", "internal: run the one cell given as JSON and print its result")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.losses, err = parseList(*loss, "loss", func(s string) (float64, error) {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 0 || v >= 100 {
			return 0, fmt.Errorf("want a percentage in [0, 100)")
		}
		return v / 100, nil
	}); err != nil {
		return nil, err
	}
	if o.rtts, err = parseList(*rtt, "rtt", func(s string) (time.Duration, error) {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 0 || v > 10000 {
			return 0, fmt.Errorf("want milliseconds in 0..10000")
		}
		return time.Duration(v * float64(time.Millisecond)), nil
	}); err != nil {
		return nil, err
	}
	if o.bws, err = parseList(*bw, "bw", func(s string) (int64, error) {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 || v > 100000 {
			return 0, fmt.Errorf("want Mbit/s in (0, 100000]")
		}
		return int64(v * 1e6), nil
	}); err != nil {
		return nil, err
	}
	if o.systems, err = parseList(*systems, "systems", oneOf(bench.Systems)); err != nil {
		return nil, err
	}
	if o.workloads, err = parseList(*workloads, "workloads", oneOf(bench.Workloads)); err != nil {
		return nil, err
	}
	if o.duration < time.Second || o.duration > 10*time.Minute {
		return nil, fmt.Errorf("-duration %v: want 1s..10m", o.duration)
	}
	return o, nil
}

func oneOf(names []string) func(string) (string, error) {
	return func(s string) (string, error) {
		if !slices.Contains(names, s) {
			return "", fmt.Errorf("want one of %s", strings.Join(names, ", "))
		}
		return s, nil
	}
}

func parseList[T any](s, flagName string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, fmt.Errorf("-%s %q: %w", flagName, f, err)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-%s: empty list", flagName)
	}
	return out, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if o.cell != "" {
		return runCell(ctx, o.cell, stdout)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	var jsonOut io.Writer
	switch o.jsonPath {
	case "":
	case "-":
		jsonOut = stdout
	default:
		f, err := os.Create(o.jsonPath)
		if err != nil {
			return fmt.Errorf("create -json file: %w", err)
		}
		defer f.Close()
		bw := bufio.NewWriter(f)
		defer bw.Flush()
		jsonOut = bw
	}
	var specs []bench.Spec
	for _, bw := range o.bws {
		for _, rtt := range o.rtts {
			for _, loss := range o.losses {
				for _, w := range o.workloads {
					for _, s := range o.systems {
						specs = append(specs, bench.Spec{
							System: s, Workload: w, Duration: o.duration, Seed: o.seed,
							Path: bench.Path{Loss: loss, RTT: rtt, Bandwidth: bench.Bitrate(bw)},
						})
					}
				}
			}
		}
	}
	fmt.Fprintf(stderr, "matrix: %d cells of %v each, about %v in all\n", len(specs), o.duration,
		(time.Duration(len(specs)) * (o.duration + 700*time.Millisecond)).Round(time.Second))
	start := time.Now()
	var results []bench.Result
	for i, sp := range specs {
		if ctx.Err() != nil {
			break
		}
		r := runChild(ctx, self, sp)
		results = append(results, r)
		fmt.Fprintf(stderr, "[%3d/%d %5.0fs] %-13s %-5s %s: %s\n", i+1, len(specs), time.Since(start).Seconds(),
			sp.System, sp.Workload, sp.Path, brief(r))
		if jsonOut != nil {
			line, _ := json.Marshal(r)
			if _, err := fmt.Fprintf(jsonOut, "%s\n", line); err != nil {
				return fmt.Errorf("write JSON: %w", err)
			}
		}
	}
	var md bytes.Buffer
	if err := bench.WriteMarkdown(&md, results); err != nil {
		return err
	}
	if o.mdPath != "" {
		if err := os.WriteFile(o.mdPath, md.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write -md file: %w", err)
		}
	}
	if o.jsonPath != "-" {
		if _, err := stdout.Write(md.Bytes()); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func brief(r bench.Result) string {
	s := ""
	switch r.Workload {
	case bench.Bulk:
		s = fmt.Sprintf("%.2f Mbit/s", r.GoodputMbps)
	case bench.RR:
		s = fmt.Sprintf("p50 %.0f ms p99 %.0f ms, %d unanswered", r.P50ms, r.P99ms, r.Missing)
	case bench.Loaded:
		s = fmt.Sprintf("bulk %.2f Mbit/s, rr p50 %.0f ms p99 %.0f ms max %.0f ms, %d unanswered", r.GoodputMbps, r.P50ms, r.P99ms, r.MaxMs, r.Missing)
	case bench.Share, bench.VsCubic:
		s = "no flow figures"
		if len(r.FlowMbps) == 2 {
			s = fmt.Sprintf("%.2f + %.2f Mbit/s (%s second), first's share %.2f, Jain %.3f", r.FlowMbps[0], r.FlowMbps[1], r.Competitor, r.FirstShare, r.Jain)
		}
	default:
		s = fmt.Sprintf("%d conns, p50 %.0f ms", r.N, r.P50ms)
	}
	s += fmt.Sprintf(", wire x%.2f, cpu %.2fs, rss %.0fMiB", r.WirePerPayload, r.CPUSeconds, r.PeakRSSMiB)
	if r.Err != "" {
		s += " ERROR " + r.Err
	}
	return s
}

// runChild runs sp in a child process and returns its result; failures are
// recorded in the result's Err.
func runChild(ctx context.Context, self string, sp bench.Spec) bench.Result {
	fail := func(err error) bench.Result {
		return bench.Result{System: sp.System, Workload: sp.Workload, LossPct: sp.Path.Loss * 100,
			RTTms: float64(sp.Path.RTT) / 1e6, BwMbps: float64(sp.Path.Bandwidth) / 1e6, Err: err.Error()}
	}
	js, err := json.Marshal(sp)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, sp.Duration+30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, self, "-cell", string(js))
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var r bench.Result
	if jerr := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &r); jerr != nil {
		if err == nil {
			err = jerr
		}
		return fail(fmt.Errorf("cell process: %w: %s", err, strings.TrimSpace(errb.String())))
	}
	return r
}

// runCell runs one cell in this process and prints its result as JSON.
func runCell(ctx context.Context, cell string, stdout io.Writer) error {
	var sp bench.Spec
	if err := json.Unmarshal([]byte(cell), &sp); err != nil {
		return fmt.Errorf("-cell: %w", err)
	}
	r, _ := bench.Run(ctx, sp) // the error is in r.Err
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", line)
	return err
}
