// Package bench measures the ingest pipeline end to end: HTTP ingest, group
// commit to the log, aggregation into the store, and visibility in usage
// queries. It also measures the raw event log (embedded JetStream) with the
// same bytes and concurrency, so Abacus throughput can be stated as a
// fraction of what the engine underneath can do on the same machine.
//
// The load generator runs in the same process as an in-process server and
// shares its CPUs; the report says so.
package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/client"
	"github.com/abacus-billing/abacus/jetstream"
)

// Config is one benchmark run. Zero values take the documented defaults.
type Config struct {
	// URL and Key of a running server. Empty URL starts one in-process
	// (app.Start) in a temporary data dir with DB and Durability.
	URL, Key string
	// DB is the in-process store: "" (SQLite in the temp dir) or a
	// postgres:// URL; the run gets a fresh schema there, dropped at the end.
	DB string
	// Durability of the in-process server and of the raw engine run
	// (default strict).
	Durability jetstream.Durability
	// Partitions of the in-process log and the raw engine (default 8).
	Partitions int

	Duration    time.Duration // load phase (default 30s)
	Batch       int           // events per request (default 100)
	Concurrency int           // concurrent requests (default 32)
	Customers   int           // distinct customers (default 1000)
	Meters      int           // meters on the event type (default 3, at least 1)
	DupRate     float64       // fraction of events that resend an accepted event (default 0)
	EventBytes  int           // approximate JSON size of one event (default 250)
	// Rate > 0 runs open loop: Rate requests per second on a fixed
	// schedule, latency measured from the scheduled start so that a slow
	// server cannot hide its queueing (no coordinated omission). 0 runs
	// closed loop: each sender sends its next request when the last returns.
	Rate float64
	// EngineDuration is the raw-engine append phase (default Duration/3,
	// at least 2s); EngineSkip skips that phase.
	EngineDuration time.Duration
	EngineSkip     bool
	// VisibleTimeout bounds the wait for aggregation (default 5 min).
	VisibleTimeout time.Duration
	// CPUProfile, when set, receives a CPU profile of the load phase (send
	// and wait until visible). In-process it covers server and load
	// generator alike.
	CPUProfile io.Writer
	// Progress, when set, receives a line every few seconds.
	Progress io.Writer
}

func (c *Config) defaults() {
	c.Durability = cmp.Or(c.Durability, jetstream.Strict)
	c.Partitions = cmp.Or(c.Partitions, 8)
	c.Duration = cmp.Or(c.Duration, 30*time.Second)
	c.Batch = cmp.Or(c.Batch, 100)
	c.Concurrency = cmp.Or(c.Concurrency, 32)
	c.Customers = cmp.Or(c.Customers, 1000)
	c.Meters = max(cmp.Or(c.Meters, 3), 1)
	c.EventBytes = cmp.Or(c.EventBytes, 250)
	c.EngineDuration = cmp.Or(c.EngineDuration, max(c.Duration/3, 2*time.Second))
	c.VisibleTimeout = cmp.Or(c.VisibleTimeout, 5*time.Minute)
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var p abacus.Problems
	if c.URL != "" && c.Key == "" {
		p.Add("key", "is required with --url")
	}
	if c.Batch < 1 || c.Batch > 10000 {
		p.Add("batch", "must be 1..10000, got %d", c.Batch)
	}
	if c.Concurrency < 1 {
		p.Add("concurrency", "must be at least 1")
	}
	if c.Customers < 1 {
		p.Add("customers", "must be at least 1")
	}
	if c.DupRate < 0 || c.DupRate >= 1 {
		p.Add("dup-rate", "must be in [0, 1), got %v", c.DupRate)
	}
	if c.Rate < 0 {
		p.Add("rate", "must be >= 0")
	}
	if c.EventBytes < 150 || c.EventBytes > 60000 {
		p.Add("event-bytes", "must be 150..60000 (the fixed fields take ~150 bytes), got %d", c.EventBytes)
	}
	if c.Durability != jetstream.Strict && c.Durability != jetstream.Relaxed {
		p.Add("durability", "must be strict or relaxed, got %q", c.Durability)
	}
	return p.Err()
}

// Report is the outcome of a run. Rates are per second of wall time.
type Report struct {
	Target      string  `json:"target"` // "in-process sqlite", "in-process postgres" or the URL
	Durability  string  `json:"durability"`
	Batch       int     `json:"batch"`
	Concurrency int     `json:"concurrency"`
	Customers   int     `json:"customers"`
	Meters      int     `json:"meters"`
	DupRate     float64 `json:"dup_rate"`
	EventBytes  int     `json:"event_bytes"` // measured mean JSON size
	Rate        float64 `json:"rate_rps"`    // 0: closed loop

	SendSeconds      float64 `json:"send_seconds"`
	Requests         int64   `json:"requests"`
	FailedRequests   int64   `json:"failed_requests"` // failed after retries
	EventsSent       int64   `json:"events_sent"`
	EventsAccepted   int64   `json:"events_accepted"` // in 202 answers, resent duplicates included
	EventsRejected   int64   `json:"events_rejected"`
	DistinctAccepted int64   `json:"distinct_accepted"`
	AcceptedPerSec   float64 `json:"accepted_per_sec"`

	// Aggregated is the event count of the all-events meter once it
	// stopped moving; it must equal DistinctAccepted.
	Aggregated       int64   `json:"aggregated"`
	VisibleSeconds   float64 `json:"visible_seconds"` // first send → all visible in GET /v1/usage
	AggregatedPerSec float64 `json:"aggregated_per_sec"`
	Mismatch         string  `json:"mismatch,omitempty"`

	LatencyP50  time.Duration `json:"latency_p50_ns"`
	LatencyP99  time.Duration `json:"latency_p99_ns"`
	LatencyP999 time.Duration `json:"latency_p999_ns"`
	LatencyMax  time.Duration `json:"latency_max_ns"`

	// PeakRSSBytes is VmHWM of this process after the load phase (server
	// and load generator together); 0 with a remote URL.
	PeakRSSBytes int64  `json:"peak_rss_bytes"`
	RSSNote      string `json:"rss_note,omitempty"`

	Engine *EngineReport `json:"engine,omitempty"`
	// RatioAccepted is AcceptedPerSec / Engine.AppendPerSec; RatioEndToEnd
	// is AggregatedPerSec / Engine.EndToEndPerSec.
	RatioAccepted float64 `json:"ratio_accepted"`
	RatioEndToEnd float64 `json:"ratio_end_to_end"`
}

// Run runs the benchmark: set up meters and customers, drive load for
// Duration, wait until every accepted event is visible in usage totals,
// then measure the raw engine. A count mismatch is reported in
// Report.Mismatch and as an error wrapping ErrMismatch, with the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Target: cfg.URL, Durability: string(cfg.Durability), Batch: cfg.Batch, Concurrency: cfg.Concurrency,
		Customers: cfg.Customers, Meters: cfg.Meters, DupRate: cfg.DupRate, Rate: cfg.Rate}
	var srv *server
	if cfg.URL == "" {
		var err error
		srv, err = startServer(ctx, cfg)
		if err != nil {
			return nil, err
		}
		defer srv.close()
		cfg.URL, cfg.Key, rep.Target = srv.url, srv.key, srv.target
	} else {
		rep.Durability = "server's own"
	}
	c := client.New(cfg.URL, cfg.Key, client.WithRetries(3))
	run := newRun(cfg)
	if err := run.setup(ctx, c); err != nil {
		return nil, err
	}
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
	}
	load, err := run.load(ctx, c)
	if err == nil {
		err = run.waitVisible(ctx, c, load, rep)
	}
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return nil, err
	}
	load.fill(rep)
	if strings.HasPrefix(rep.Target, "in-process") {
		rep.PeakRSSBytes, err = peakRSS()
		rep.RSSNote = "VmHWM of the bench process: server and load generator together"
		if err != nil {
			rep.RSSNote = "not measured: " + err.Error()
		}
	} else {
		rep.RSSNote = "not measured: the server runs in another process (--url)"
	}
	if srv != nil {
		// The engine runs alone: an idle server in the same process has
		// been seen to delay the second embedded server's API answers
		// past their timeout.
		srv.close()
	}
	if !cfg.EngineSkip {
		if rep.Engine, err = runEngine(ctx, cfg, run.gen); err != nil {
			return rep, fmt.Errorf("raw engine: %w", err)
		}
		if rep.Engine.AppendPerSec > 0 {
			rep.RatioAccepted = rep.AcceptedPerSec / rep.Engine.AppendPerSec
		}
		if rep.Engine.EndToEndPerSec > 0 {
			rep.RatioEndToEnd = rep.AggregatedPerSec / rep.Engine.EndToEndPerSec
		}
	}
	if rep.Mismatch != "" {
		return rep, fmt.Errorf("%w: %s", ErrMismatch, rep.Mismatch)
	}
	return rep, nil
}

// ErrMismatch means the aggregated total differs from the distinct events
// the server acknowledged: an event was lost or counted twice.
var ErrMismatch = errors.New("aggregated total differs from distinct accepted events")

// waitVisible polls the all-events count meter through the API until it
// reaches the distinct accepted events and stays there, so the figure is
// end to end (HTTP → log → aggregator → store → query).
func (r *run) waitVisible(ctx context.Context, c *client.Client, l *loadResult, rep *Report) error {
	want := l.distinct
	q := client.UsageQuery{Meter: r.meterKeys[0], From: l.first.UTC().Truncate(time.Minute).Add(-time.Minute)}
	deadline := time.Now().Add(r.cfg.VisibleTimeout)
	var got int64
	for {
		res, err := c.Usage(ctx, q)
		if err != nil {
			return fmt.Errorf("usage query: %w", err)
		}
		got = 0
		for _, row := range res.Rows {
			got += row.Count
		}
		if got >= want {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	visible := time.Since(l.first)
	if got == want && l.failed > 0 {
		// Failed requests may still have reached the log; give them a
		// moment to show up so that the mismatch check sees them.
		time.Sleep(2 * time.Second)
		if res, err := c.Usage(ctx, q); err == nil {
			got = 0
			for _, row := range res.Rows {
				got += row.Count
			}
		}
	}
	rep.Aggregated = got
	rep.VisibleSeconds = visible.Seconds()
	rep.AggregatedPerSec = float64(want) / visible.Seconds()
	if got != want {
		rep.Mismatch = fmt.Sprintf("usage count of meter %s is %d, distinct accepted events %d (difference %+d; %d requests failed after retries)",
			q.Meter, got, want, got-want, l.failed)
		if got < want {
			rep.Mismatch += fmt.Sprintf("; gave up waiting after %s", r.cfg.VisibleTimeout)
		}
	}
	return nil
}

// peakRSS reads VmHWM (peak resident set) of this process.
func peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v) // "123456 kB"
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n * 1024, err
			}
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}

// percentiles sorts lat and returns the requested quantiles.
func percentiles(lat []time.Duration, qs ...float64) []time.Duration {
	slices.Sort(lat)
	out := make([]time.Duration, len(qs))
	if len(lat) == 0 {
		return out
	}
	for i, q := range qs {
		// Nearest rank: the smallest value with at least q of the samples
		// at or below it.
		k := int(q*float64(len(lat))+0.999999) - 1
		out[i] = lat[min(max(k, 0), len(lat)-1)]
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
