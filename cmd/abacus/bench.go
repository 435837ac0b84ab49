package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/abacus-billing/abacus/bench"
	"github.com/abacus-billing/abacus/jetstream"
)

// runBench: abacus bench — load the ingest pipeline end to end and compare
// it with the raw event log (see docs/BENCHMARKS.md).
func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("abacus bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bench.Config
	fs.StringVar(&cfg.URL, "url", "", "benchmark a running server (default: start one in-process in a temp dir)")
	fs.StringVar(&cfg.Key, "key", getenv("ABACUS_KEY"), "admin API key of the server at --url (env ABACUS_KEY)")
	fs.StringVar(&cfg.DB, "db", "", "in-process store: empty for SQLite, or postgres://… (a fresh schema per run)")
	durability := fs.String("durability", "strict", "in-process log durability: strict or relaxed")
	fs.IntVar(&cfg.Partitions, "partitions", 0, "log partitions of the in-process server and the raw engine (default: a new log's, 2 with SQLite and 4 with PostgreSQL)")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "load phase")
	fs.IntVar(&cfg.Batch, "batch", 100, "events per request")
	fs.IntVar(&cfg.Concurrency, "concurrency", 32, "concurrent requests")
	fs.IntVar(&cfg.Customers, "customers", 1000, "distinct customers")
	fs.IntVar(&cfg.Meters, "meters", 3, "meters on the event type (the first counts every event)")
	fs.Float64Var(&cfg.DupRate, "dup-rate", 0.05, "fraction of events that resend an accepted event")
	fs.IntVar(&cfg.EventBytes, "event-bytes", 250, "approximate JSON size of one event")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests per second on a fixed schedule (0 = closed loop)")
	fs.DurationVar(&cfg.EngineDuration, "engine-duration", 0, "raw engine append phase (default duration/3, at least 2s)")
	fs.BoolVar(&cfg.EngineSkip, "no-engine", false, "skip the raw engine measurement")
	fs.DurationVar(&cfg.Sustain, "sustain", 0, "open-loop phase at --load-fraction of the measured end-to-end peak (default: --duration)")
	fs.Float64Var(&cfg.LoadFraction, "load-fraction", 0.7, "rate of the sustained phase, as a fraction of the peak")
	fs.BoolVar(&cfg.SustainSkip, "no-sustain", false, "skip the sustained open-loop phase")
	fs.Float64Var(&cfg.SingleRate, "single-rate", 30000, "single-event phase: one event per request, open loop at this many events/s")
	fs.IntVar(&cfg.SingleConcurrency, "single-concurrency", 256, "senders of the single-event phase")
	fs.DurationVar(&cfg.SingleDuration, "single-duration", 10*time.Second, "single-event phase")
	fs.BoolVar(&cfg.SingleSkip, "no-single", false, "skip the single-event phase")
	fs.Int64Var(&cfg.QueryEvents, "query-events", 0, "query phase: load this many more events over --query-days, then time usage queries (0: skip; 10000000 takes minutes, see docs/BENCHMARKS.md)")
	fs.IntVar(&cfg.QueryDays, "query-days", 30, "days the query phase's events span")
	fs.IntVar(&cfg.Queries, "queries", 200, "usage queries the query phase times")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the load phase to this file (in-process: server and load generator)")
	profilePhase := fs.String("profile-phase", "peak", "the phase --cpuprofile and --memprofile cover: peak, sustained or single")
	memprofile := fs.String("memprofile", "", "write a heap profile (in use and allocated) at the end of the --profile-phase phase's sending to this file, and for sustained and single one a tenth of the way through to this file + .early")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench takes no arguments, got %q", fs.Args())
	}
	cfg.Durability = jetstream.Durability(*durability)
	if *profilePhase != "peak" && *profilePhase != "sustained" && *profilePhase != "single" {
		return fmt.Errorf("--profile-phase must be peak, sustained or single, got %q", *profilePhase)
	}
	cfg.ProfilePhase = *profilePhase
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		cfg.CPUProfile = f
	}
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
		defer f.Close()
		cfg.MemProfile = f
		if *profilePhase != "peak" {
			early, err := os.Create(*memprofile + ".early")
			if err != nil {
				return fmt.Errorf("heap profile: %w", err)
			}
			defer early.Close()
			cfg.MemProfileEarly = early
		}
	}
	if !*asJSON {
		cfg.Progress = stderr
		fmt.Fprintf(stderr, "bench: %s load, batch %d, concurrency %d ...\n", cfg.Duration, cfg.Batch, cfg.Concurrency)
	}
	rep, err := bench.Run(ctx, cfg)
	if rep == nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if e := enc.Encode(rep); e != nil {
			return e
		}
	} else {
		printBench(stdout, rep)
	}
	return err
}

// printAggregator prints how busy the aggregator was over a phase.
func printAggregator(tw io.Writer, a *bench.AggregatorLoad) {
	if a != nil {
		fmt.Fprintf(tw, "  aggregator\tin transactions %.0f%% of the time from first send to all visible, %d transactions\n", a.Busy*100, a.Transactions)
	}
}

func printBench(w io.Writer, r *bench.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	loop := "closed loop"
	if r.Rate > 0 {
		loop = fmt.Sprintf("open loop at %.0f req/s (%.0f events/s)", r.Rate, r.Rate*float64(r.Batch))
	}
	partitions := fmt.Sprintf("%d log partitions", r.Partitions)
	if !strings.HasPrefix(r.Target, "in-process") {
		partitions = fmt.Sprintf("raw engine with %d partitions", r.Partitions)
	}
	fmt.Fprintf(tw, "target\t%s, durability %s, %s\n", r.Target, r.Durability, partitions)
	fmt.Fprintf(tw, "peak load\t%s, batch %d, concurrency %d, %d customers, %d meters, dup rate %.2f, %d B/event\n",
		loop, r.Batch, r.Concurrency, r.Customers, r.Meters, r.DupRate, r.EventBytes)
	fmt.Fprintf(tw, "  requests\t%d in %.1fs (%d failed after retries)\n", r.Requests, r.SendSeconds, r.FailedRequests)
	fmt.Fprintf(tw, "  events\t%d sent, %d accepted (%d distinct), %d rejected\n", r.EventsSent, r.EventsAccepted, r.DistinctAccepted, r.EventsRejected)
	fmt.Fprintf(tw, "  accepted\t%.0f events/s\n", r.AcceptedPerSec)
	fmt.Fprintf(tw, "  end to end\t%.0f events/s (%d distinct visible in GET /v1/usage %.1fs after the first send)\n", r.AggregatedPerSec, r.Aggregated, r.VisibleSeconds)
	fmt.Fprintf(tw, "  latency\tp50 %s  p99 %s  p99.9 %s  max %s\n", ms(r.LatencyP50), ms(r.LatencyP99), ms(r.LatencyP999), ms(r.LatencyMax))
	if r.CPUPerEvent > 0 {
		fmt.Fprintf(tw, "  CPU\t%.1f µs per event (whole process, load generator included)\n", float64(r.CPUPerEvent)/1e3)
	}
	printAggregator(tw, r.Aggregator)
	for _, ph := range []struct {
		name string
		p    *bench.PhaseReport
	}{{"sustained", r.Sustained}, {"single event", r.Single}} {
		p := ph.p
		if p == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\topen loop, batch %d, %.0f events/s scheduled for %.1fs, %d senders\n", ph.name, p.Batch, p.TargetPerSec, p.Seconds, p.Concurrency)
		fmt.Fprintf(tw, "  accepted\t%.0f events/s (%d requests, %d failed); all visible %.2fs after the last answer\n", p.AcceptedPerSec, p.Requests, p.Failed, p.DrainSeconds)
		fmt.Fprintf(tw, "  latency\tp50 %s  p99 %s  p99.9 %s  max %s (from the scheduled send)\n", ms(p.LatencyP50), ms(p.LatencyP99), ms(p.LatencyP999), ms(p.LatencyMax))
		fmt.Fprintf(tw, "  freshness\tp50 %s  p99 %s  max %s (202 → visible in GET /v1/usage, %d probes)\n", ms(p.FreshnessP50), ms(p.FreshnessP99), ms(p.FreshnessMax), p.FreshnessSamples)
		if p.RSSMaxBytes > 0 {
			fmt.Fprintf(tw, "  RSS\t%s after the first tenth (Go %s), %s at the end (Go %s), %s highest; CPU %.1f µs per event\n",
				mib(p.RSSEarlyBytes), mib(p.GoEarlyBytes), mib(p.RSSEndBytes), mib(p.GoEndBytes), mib(p.RSSMaxBytes), float64(p.CPUPerEvent)/1e3)
			fmt.Fprintf(tw, "  RSS tenths\t%s MiB (Go %s)\n", mibs(p.RSSTenths), mibs(p.GoTenths))
		}
		printAggregator(tw, p.Aggregator)
		if p.Mismatch != "" {
			fmt.Fprintf(tw, "  MISMATCH\t%s\n", p.Mismatch)
		}
	}
	if q := r.Query; q != nil {
		fmt.Fprintf(tw, "query\t%d events over %d days loaded and visible in %.1fs (%.0f events/s); %d events stored\n", q.Events, q.Days, q.LoadSeconds, q.LoadPerSec, q.StoredEvents)
		fmt.Fprintf(tw, "  usage\t%d queries (one customer, sum meter, %d days, hourly windows, %.0f rows each): p50 %s  p99 %s  max %s\n",
			q.Queries, q.Days, q.RowsPerQuery, ms(q.LatencyP50), ms(q.LatencyP99), ms(q.LatencyMax))
	}
	if r.PeakRSSBytes > 0 {
		fmt.Fprintf(tw, "peak RSS\t%s (%s)\n", mib(r.PeakRSSBytes), r.RSSNote)
	} else {
		fmt.Fprintf(tw, "peak RSS\t%s\n", r.RSSNote)
	}
	if e := r.Engine; e != nil {
		fmt.Fprintf(tw, "raw engine\tappend %.0f events/s (p50 %s, p99 %s), read %.0f events/s (%d stalled reads restarted), append+read %.0f events/s\n",
			e.AppendPerSec, ms(e.AppendP50), ms(e.AppendP99), e.ReadPerSec, e.ReadRestarts, e.EndToEndPerSec)
		fmt.Fprintf(tw, "ratio\taccepted/engine append %.2f, end to end/engine append+read %.2f\n", r.RatioAccepted, r.RatioEndToEnd)
	}
	if r.Mismatch != "" {
		fmt.Fprintf(tw, "MISMATCH\t%s\n", r.Mismatch)
	}
	tw.Flush()
}

// mibs lists byte counts in MiB.
func mibs(bs []int64) string {
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = fmt.Sprintf("%.0f", float64(b)/(1<<20)) // rounded as mib rounds
	}
	return strings.Join(parts, " ")
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
