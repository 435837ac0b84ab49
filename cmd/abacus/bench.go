package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
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
	fs.IntVar(&cfg.Partitions, "partitions", 8, "log partitions (in-process server and raw engine)")
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
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the load phase to this file (in-process: server and load generator)")
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
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		cfg.CPUProfile = f
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

func printBench(w io.Writer, r *bench.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	loop := "closed loop"
	if r.Rate > 0 {
		loop = fmt.Sprintf("open loop at %.0f req/s (%.0f events/s)", r.Rate, r.Rate*float64(r.Batch))
	}
	fmt.Fprintf(tw, "target\t%s, durability %s\n", r.Target, r.Durability)
	fmt.Fprintf(tw, "load\t%s, batch %d, concurrency %d, %d customers, %d meters, dup rate %.2f, %d B/event\n",
		loop, r.Batch, r.Concurrency, r.Customers, r.Meters, r.DupRate, r.EventBytes)
	fmt.Fprintf(tw, "requests\t%d in %.1fs (%d failed after retries)\n", r.Requests, r.SendSeconds, r.FailedRequests)
	fmt.Fprintf(tw, "events\t%d sent, %d accepted (%d distinct), %d rejected\n", r.EventsSent, r.EventsAccepted, r.DistinctAccepted, r.EventsRejected)
	fmt.Fprintf(tw, "accepted\t%.0f events/s\n", r.AcceptedPerSec)
	fmt.Fprintf(tw, "aggregated\t%.0f events/s (%d distinct visible in GET /v1/usage %.1fs after the first send)\n", r.AggregatedPerSec, r.Aggregated, r.VisibleSeconds)
	fmt.Fprintf(tw, "latency\tp50 %s  p99 %s  p99.9 %s  max %s\n", ms(r.LatencyP50), ms(r.LatencyP99), ms(r.LatencyP999), ms(r.LatencyMax))
	if r.PeakRSSBytes > 0 {
		fmt.Fprintf(tw, "peak RSS\t%.0f MiB (%s)\n", float64(r.PeakRSSBytes)/(1<<20), r.RSSNote)
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

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
