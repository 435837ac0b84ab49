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
	"runtime/pprof"
	"slices"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/app"
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
	// Partitions of the in-process log and the raw engine. 0 gives the
	// in-process server its default for a new log (app.Config.NewPartitions)
	// and the engine the same count; against a server at URL the engine
	// gets a new SQLite server's count.
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

	// Sustain is the open-loop phase after the peak phase: requests of
	// Batch events on a fixed schedule at LoadFraction (default 0.7) of the
	// end-to-end rate the peak phase measured, for Sustain (default
	// Duration). It measures latency without coordinated omission, the
	// freshness of usage (202 → visible in GET /v1/usage) with a probe, and
	// memory over time. SustainSkip skips it.
	Sustain      time.Duration
	LoadFraction float64
	SustainSkip  bool
	// SingleRate is the single-event phase: requests of one event each, open
	// loop at SingleRate events/s (default 30,000) from SingleConcurrency
	// senders (default 256) for SingleDuration (default 10s). SingleSkip
	// skips it.
	SingleRate        float64
	SingleConcurrency int
	SingleDuration    time.Duration
	SingleSkip        bool
	// QueryEvents > 0 runs the query phase: load that many more events
	// (batches of 1,000) with times spread over the last QueryDays (default
	// 30) days, then time Queries (default 200) GET /v1/usage calls, each
	// for one random customer, the sum meter, the whole span, hourly
	// windows.
	QueryEvents int64
	QueryDays   int
	Queries     int
	// VisibleTimeout bounds the wait for aggregation (default 5 min).
	VisibleTimeout time.Duration
	// CPUProfile, when set, receives a CPU profile of the phase ProfilePhase
	// names: "peak" (the default: send and wait until visible), "sustained"
	// or "single". In-process it covers server and load generator alike.
	CPUProfile   io.Writer
	ProfilePhase string
	// MemProfile, when set, receives a heap profile (live objects and
	// allocations since start) taken at the end of that phase's sending,
	// when queues are fullest. MemProfileEarly, for the sustained and
	// single phases, receives one a tenth of the way through its sending
	// (the RSS tenths also cover the wait until visible after it, so the
	// two first tenths differ by a tenth of that wait): `go tool pprof
	// -base early end` shows what grew.
	MemProfile      io.Writer
	MemProfileEarly io.Writer
	// Progress, when set, receives a line every few seconds.
	Progress io.Writer
}

// profilePhase is the phase the profiles cover.
func (c *Config) profilePhase() string { return cmp.Or(c.ProfilePhase, "peak") }

// profile starts the CPU profile if it covers phase; the returned func
// stops it.
func (c *Config) profile(phase string) (stop func(), err error) {
	if c.CPUProfile == nil || c.profilePhase() != phase {
		return func() {}, nil
	}
	if err := pprof.StartCPUProfile(c.CPUProfile); err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return pprof.StopCPUProfile, nil
}

// heapProfile is where the open-loop phase named phase writes its heap
// profiles: MemProfile and MemProfileEarly if the profiles cover it.
func (c *Config) heapProfile(phase string) (end, early io.Writer) {
	if c.profilePhase() != phase {
		return nil, nil
	}
	return c.MemProfile, c.MemProfileEarly
}

func (c *Config) defaults() {
	c.Durability = cmp.Or(c.Durability, jetstream.Strict)
	c.Duration = cmp.Or(c.Duration, 30*time.Second)
	c.Batch = cmp.Or(c.Batch, 100)
	c.Concurrency = cmp.Or(c.Concurrency, 32)
	c.Customers = cmp.Or(c.Customers, 1000)
	c.Meters = max(cmp.Or(c.Meters, 3), 1)
	c.EventBytes = cmp.Or(c.EventBytes, 250)
	c.EngineDuration = cmp.Or(c.EngineDuration, max(c.Duration/3, 2*time.Second))
	c.VisibleTimeout = cmp.Or(c.VisibleTimeout, 5*time.Minute)
	c.Sustain = cmp.Or(c.Sustain, c.Duration)
	c.LoadFraction = cmp.Or(c.LoadFraction, 0.7)
	c.SingleRate = cmp.Or(c.SingleRate, 30000)
	c.SingleConcurrency = cmp.Or(c.SingleConcurrency, 256)
	c.SingleDuration = cmp.Or(c.SingleDuration, 10*time.Second)
	c.QueryDays = cmp.Or(c.QueryDays, 30)
	c.Queries = cmp.Or(c.Queries, 200)
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
	if c.LoadFraction < 0 || c.LoadFraction > 1 {
		p.Add("load-fraction", "must be in (0, 1], got %v", c.LoadFraction)
	}
	if c.SingleRate < 0 || c.SingleConcurrency < 0 || c.QueryEvents < 0 || c.Queries < 0 {
		p.Add("single-rate", "rates, concurrencies and counts must be >= 0")
	}
	if c.QueryDays < 0 || c.QueryDays > 34 {
		p.Add("query-days", "must be 1..34 (events older than the backdating window of 35 days are rejected), got %d", c.QueryDays)
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
	Partitions  int     `json:"partitions"`  // of the in-process log and the raw engine (against a URL, the engine's only)

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

	// CPUPerEvent is the CPU time (user + system) of this process from the
	// first send until every event was visible, per distinct event: the
	// cost of one event through the whole pipeline, load generator
	// included, and a figure other processes on the machine do not
	// distort the way they distort rates. 0 with a remote URL.
	CPUPerEvent time.Duration `json:"cpu_per_event_ns"`
	// Aggregator is how busy the aggregator was over the same span
	// (in-process only).
	Aggregator *AggregatorLoad `json:"aggregator,omitempty"`

	// PeakRSSBytes is VmHWM of this process at the end of the run (server
	// and load generator together); 0 with a remote URL.
	PeakRSSBytes int64  `json:"peak_rss_bytes"`
	RSSNote      string `json:"rss_note,omitempty"`

	Sustained *PhaseReport `json:"sustained,omitempty"`
	Single    *PhaseReport `json:"single,omitempty"`
	Query     *QueryReport `json:"query,omitempty"`

	Engine *EngineReport `json:"engine,omitempty"`
	// RatioAccepted is AcceptedPerSec / Engine.AppendPerSec; RatioEndToEnd
	// is AggregatedPerSec / Engine.EndToEndPerSec.
	RatioAccepted float64 `json:"ratio_accepted"`
	RatioEndToEnd float64 `json:"ratio_end_to_end"`
}

// Run runs the benchmark: set up meters and customers, drive load for
// Duration, wait until every accepted event is visible in usage totals,
// then run the sustained, single-event and query phases that are not
// skipped, then measure the raw engine. A count mismatch is reported in
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
		cfg.Partitions = srv.app.Log.Partitions()
	} else {
		rep.Durability = "server's own"
		// The server's count is not known here: the engine gets what a
		// new SQLite server would.
		cfg.Partitions = cmp.Or(cfg.Partitions, (&app.Config{DB: "sqlite:"}).NewPartitions())
	}
	rep.Partitions = cfg.Partitions
	local := srv != nil
	c := client.New(cfg.URL, cfg.Key, client.WithRetries(3))
	run := newRun(cfg)
	if local {
		run.agg = srv.app.Aggregator
	}
	if err := run.setup(ctx, c); err != nil {
		return nil, err
	}
	var mem *memSampler
	if local {
		mem = startMemSampler()
		defer mem.stop()
	}
	stopProfile, err := cfg.profile("peak")
	if err != nil {
		return nil, err
	}
	cpu0 := cpuTime()
	aggDone := run.aggregatorMark()
	load, err := run.load(ctx, c, phase{name: "peak", batch: cfg.Batch, concurrency: cfg.Concurrency,
		duration: cfg.Duration, rate: cfg.Rate, gen: run.gen})
	if err == nil && cfg.MemProfile != nil && cfg.profilePhase() == "peak" {
		if err = pprof.Lookup("heap").WriteTo(cfg.MemProfile, 0); err != nil {
			err = fmt.Errorf("heap profile: %w", err)
		}
	}
	if err == nil {
		err = run.waitVisible(ctx, c, load, rep)
	}
	stopProfile()
	if err != nil {
		return nil, err
	}
	rep.Aggregator = aggDone()
	load.fill(rep)
	if local && rep.DistinctAccepted > 0 {
		rep.CPUPerEvent = (cpuTime() - cpu0) / time.Duration(rep.DistinctAccepted)
	}
	if !cfg.SustainSkip && rep.Mismatch == "" {
		peak := rep.AggregatedPerSec
		if rep.AcceptedPerSec > 0 {
			peak = min(peak, rep.AcceptedPerSec)
		}
		rate := cfg.LoadFraction * peak / float64(cfg.Batch)
		stopProfile, err := cfg.profile("sustained")
		if err != nil {
			return nil, err
		}
		heap, heapEarly := cfg.heapProfile("sustained")
		rep.Sustained, err = run.openLoop(ctx, c, mem, phase{name: "sustained", batch: cfg.Batch,
			concurrency: cfg.Concurrency * 4, duration: cfg.Sustain, rate: rate, gen: run.gen, worker: 1000, heap: heap, heapEarly: heapEarly})
		stopProfile()
		if err != nil {
			return rep, err
		}
	}
	if !cfg.SingleSkip && rep.Mismatch == "" {
		stopProfile, err := cfg.profile("single")
		if err != nil {
			return nil, err
		}
		heap, heapEarly := cfg.heapProfile("single")
		rep.Single, err = run.openLoop(ctx, c, mem, phase{name: "single", batch: 1, concurrency: cfg.SingleConcurrency,
			duration: cfg.SingleDuration, rate: cfg.SingleRate, gen: run.gen, worker: 2000, heap: heap, heapEarly: heapEarly})
		stopProfile()
		if err != nil {
			return rep, err
		}
	}
	if cfg.QueryEvents > 0 && rep.Mismatch == "" {
		if rep.Query, err = run.queryPhase(ctx, c); err != nil {
			return rep, err
		}
	}
	for _, ph := range []*PhaseReport{rep.Sustained, rep.Single} {
		if ph != nil && ph.Mismatch != "" && rep.Mismatch == "" {
			rep.Mismatch = ph.Mismatch
		}
	}
	if local {
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

// waitVisible waits until the peak phase's events are visible and fills
// the report's end-to-end figures.
func (r *run) waitVisible(ctx context.Context, c *client.Client, l *loadResult, rep *Report) error {
	r.distinct += l.distinct
	got, visible, err := r.waitCount(ctx, c, r.distinct, l.failed)
	if err != nil {
		return err
	}
	rep.Aggregated = got
	rep.VisibleSeconds = visible.Sub(l.first).Seconds()
	rep.AggregatedPerSec = float64(l.distinct) / rep.VisibleSeconds
	rep.Mismatch = r.mismatch(got, l.failed)
	return nil
}

// waitCount polls the all-events count meter through the API until it
// reaches want and returns the count and when it got there, so that
// figures are end to end (HTTP → log → aggregator → store → query). It
// polls every 100 ms: the query reads every customer's rollups, and
// polling at 20 ms took a tenth of the CPU of the run it measured.
func (r *run) waitCount(ctx context.Context, c *client.Client, want, failed int64) (int64, time.Time, error) {
	q := client.UsageQuery{Meter: r.meterKeys[0], From: r.from}
	deadline := time.Now().Add(r.cfg.VisibleTimeout)
	count := func() (int64, error) {
		res, err := c.Usage(ctx, q)
		if err != nil {
			return 0, fmt.Errorf("usage query: %w", err)
		}
		var got int64
		for _, row := range res.Rows {
			got += row.Count
		}
		return got, nil
	}
	var got int64
	for {
		var err error
		if got, err = count(); err != nil {
			return 0, time.Time{}, err
		}
		if got >= want || time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return 0, time.Time{}, ctx.Err()
		}
	}
	visible := time.Now()
	if got == want && failed > 0 {
		// Failed requests may still have reached the log; give them a
		// moment to show up so that the mismatch check sees them.
		time.Sleep(2 * time.Second)
		if n, err := count(); err == nil {
			got = n
		}
	}
	return got, visible, nil
}

// mismatch describes a difference between the counted and the distinct
// accepted events of the run so far ("" when equal).
func (r *run) mismatch(got, failed int64) string {
	want := r.distinct
	if got == want {
		return ""
	}
	m := fmt.Sprintf("usage count of meter %s is %d, distinct accepted events %d (difference %+d; %d requests failed after retries)",
		r.meterKeys[0], got, want, got-want, failed)
	if got < want {
		m += fmt.Sprintf("; gave up waiting after %s", r.cfg.VisibleTimeout)
	}
	return m
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
