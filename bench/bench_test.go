package bench

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestRun runs a short benchmark in-process and checks that the report is
// consistent: every distinct accepted event aggregated exactly once,
// duplicates sent, the engine measured.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server for a few seconds")
	}
	rep, err := Run(context.Background(), Config{Duration: 2 * time.Second, Batch: 20, Concurrency: 4, Customers: 20,
		DupRate: 0.1, EngineDuration: time.Second, VisibleTimeout: time.Minute,
		Sustain: 2 * time.Second, SingleRate: 100, SingleConcurrency: 8, SingleDuration: time.Second,
		QueryEvents: 3000, QueryDays: 2, Queries: 5})
	if err != nil {
		t.Fatalf("Run: %v (report %+v)", err, rep)
	}
	if rep.Mismatch != "" || rep.Aggregated != rep.DistinctAccepted || rep.DistinctAccepted == 0 {
		t.Fatalf("aggregated %d, distinct accepted %d, mismatch %q", rep.Aggregated, rep.DistinctAccepted, rep.Mismatch)
	}
	if rep.EventsAccepted != rep.EventsSent || rep.FailedRequests != 0 || rep.EventsRejected != 0 {
		t.Errorf("sent %d, accepted %d, rejected %d, failed requests %d", rep.EventsSent, rep.EventsAccepted, rep.EventsRejected, rep.FailedRequests)
	}
	if rep.DistinctAccepted >= rep.EventsAccepted {
		t.Errorf("no duplicates sent at dup rate 0.1: %d distinct of %d", rep.DistinctAccepted, rep.EventsAccepted)
	}
	if rep.LatencyP50 <= 0 || rep.LatencyP50 > rep.LatencyP99 || rep.LatencyP99 > rep.LatencyP999 || rep.LatencyP999 > rep.LatencyMax {
		t.Errorf("latencies p50 %v p99 %v p999 %v max %v", rep.LatencyP50, rep.LatencyP99, rep.LatencyP999, rep.LatencyMax)
	}
	if rep.EventBytes < 225 || rep.EventBytes > 275 {
		t.Errorf("mean event size %d B, want about 250", rep.EventBytes)
	}
	if rep.PeakRSSBytes <= 0 {
		t.Errorf("peak RSS not measured: %s", rep.RSSNote)
	}
	if rep.Engine == nil || rep.Engine.Events == 0 || rep.RatioAccepted <= 0 || rep.RatioEndToEnd <= 0 {
		t.Errorf("engine %+v, ratios %v %v", rep.Engine, rep.RatioAccepted, rep.RatioEndToEnd)
	}
	if rep.CPUPerEvent <= 0 {
		t.Errorf("CPU per event not measured")
	}
	if a := rep.Aggregator; a == nil || a.Transactions <= 0 || a.Busy <= 0 || a.Busy > 1 {
		t.Errorf("aggregator load %+v", a)
	}
	for name, p := range map[string]*PhaseReport{"sustained": rep.Sustained, "single": rep.Single} {
		if p == nil {
			t.Errorf("%s phase missing", name)
			continue
		}
		if p.Requests == 0 || p.Failed != 0 || p.FreshnessSamples == 0 || p.FreshnessP99 <= 0 || p.LatencyP99 <= 0 || p.RSSMaxBytes <= 0 ||
			p.Aggregator == nil || p.Aggregator.Transactions <= 0 {
			t.Errorf("%s phase: %+v", name, p)
		}
		// Memory by tenth: a 1 s phase has ~4 samples, so fewer tenths;
		// the first and last are the early and end figures.
		if n := len(p.RSSTenths); n == 0 || n > 10 || n != len(p.GoTenths) || p.RSSTenths[0] != p.RSSEarlyBytes ||
			p.RSSTenths[n-1] != p.RSSEndBytes || p.GoTenths[n-1] != p.GoEndBytes || p.GoEndBytes <= 0 || p.RSSMaxBytes < p.RSSEndBytes {
			t.Errorf("%s phase memory: RSS tenths %v (early %d, end %d, max %d), Go tenths %v (end %d)", name,
				p.RSSTenths, p.RSSEarlyBytes, p.RSSEndBytes, p.RSSMaxBytes, p.GoTenths, p.GoEndBytes)
		}
	}
	if rep.Single != nil && (rep.Single.Batch != 1 || rep.Single.Requests != 100) {
		t.Errorf("single phase: batch %d, %d requests; want 1 and 100 (1 s at 100/s)", rep.Single.Batch, rep.Single.Requests)
	}
	if q := rep.Query; q == nil || q.Events < 2900 || q.LatencyP99 <= 0 || q.RowsPerQuery <= 0 {
		t.Errorf("query phase: %+v", q)
	}
}

// TestRunOpenLoop checks that open loop keeps to the schedule.
func TestRunOpenLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server for a few seconds")
	}
	rep, err := Run(context.Background(), Config{Duration: 2 * time.Second, Batch: 10, Concurrency: 4, Customers: 10,
		Rate: 50, EngineSkip: true, VisibleTimeout: time.Minute, SustainSkip: true, SingleSkip: true})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// 2 s at 50 requests/s on a fixed schedule: exactly 100 slots.
	if rep.Requests != 100 || rep.Aggregated != rep.DistinctAccepted {
		t.Fatalf("requests %d (want 100), aggregated %d of %d", rep.Requests, rep.Aggregated, rep.DistinctAccepted)
	}
}

func TestGeneratorEvent(t *testing.T) {
	g := newGenerator("r1", "bench_r1", 5, 250)
	rng := rand.New(rand.NewPCG(1, 2))
	var st stamp
	st.set(time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC))
	type decoded struct {
		ID, Type, Customer, Time string
		Properties               json.RawMessage
	}
	check := func(s synth) decoded {
		t.Helper()
		var e decoded
		if err := json.Unmarshal(s.json, &e); err != nil {
			t.Fatalf("%s: %v", s.json, err)
		}
		var props map[string]json.RawMessage
		if err := json.Unmarshal(s.props, &props); err != nil || len(props) != 5 || string(e.Properties) != string(s.props) {
			t.Fatalf("properties %s of event %s (%v)", s.props, s.json, err)
		}
		if e.ID != s.id || e.Customer != s.customer || e.Time != s.time.UTC().Format("2006-01-02T15:04:05.000Z07:00") {
			t.Fatalf("event %s does not match %+v", s.json, s)
		}
		if n := len(s.json); n < 245 || n > 255 {
			t.Errorf("event is %d bytes, want about 250: %s", n, s.json)
		}
		return e
	}
	s := g.event(rng, 3, 42, &st)
	if e := check(s); e.ID != "br1-3-42" || e.Type != "bench_r1" || e.Time != "2026-03-01T12:00:00.123Z" {
		t.Fatalf("event %s", s.json)
	}
	if rec := g.record(nil, &s, time.Now()); len(rec) < len(s.props) {
		t.Errorf("record of %d bytes is shorter than the properties", len(rec))
	}
	// The stamp's text follows its millisecond; the event keeps its own.
	st.set(time.Date(2026, 3, 1, 12, 0, 0, 123999999, time.UTC))
	if string(st.text) != "2026-03-01T12:00:00.123Z" {
		t.Fatalf("stamp %s within the same millisecond", st.text)
	}
	st.set(time.Date(2026, 3, 1, 12, 0, 1, 5e6, time.UTC))
	if check(g.event(rng, 3, 43, &st)).Time != "2026-03-01T12:00:01.005Z" || check(s).Time != "2026-03-01T12:00:00.123Z" {
		t.Fatalf("stamp %s after a new millisecond", st.text)
	}
	// With a spread, each event has a time of its own within it.
	g.spread = time.Hour
	for n := range int64(50) {
		s := g.event(rng, 1, n, &st)
		check(s)
		if s.time.After(st.t) || s.time.Before(st.t.Add(-time.Hour)) {
			t.Fatalf("time %v outside the hour before %v", s.time, st.t)
		}
	}
}

func TestPercentiles(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{ms(5, 1, 3, 2, 4), 0.5, 3 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 1, 5 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 0.99, 5 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.9, 9 * time.Millisecond},
		{nil, 0.5, 0},
	}
	for _, tt := range tests {
		if got := percentiles(tt.in, tt.q)[0]; got != tt.want {
			t.Errorf("percentile %v of %v = %v, want %v", tt.q, tt.in, got, tt.want)
		}
	}
}

// TestMemTenths: each tenth is its last sample with the highest RSS of
// its samples; fewer samples than ten give one tenth per sample.
func TestMemTenths(t *testing.T) {
	m := &memSampler{}
	for i := range 25 {
		rss := int64(i)
		if i == 7 {
			rss = 100 // a spike inside the second tenth after the mark, not its last
		}
		m.samples = append(m.samples, memSample{rss: rss, goMem: int64(i)})
	}
	var last, peaks []int64
	for _, s := range m.tenths(5) {
		last = append(last, s.rss)
		peaks = append(peaks, s.peak)
	}
	if want := []int64{6, 8, 10, 12, 14, 16, 18, 20, 22, 24}; !slices.Equal(last, want) {
		t.Errorf("tenths end at %v, want %v", last, want)
	}
	if want := []int64{6, 100, 10, 12, 14, 16, 18, 20, 22, 24}; !slices.Equal(peaks, want) {
		t.Errorf("tenths peak at %v, want %v", peaks, want)
	}
	if n := len(m.tenths(22)); n != 3 {
		t.Errorf("3 samples gave %d tenths", n)
	}
	if n := len(m.tenths(25)); n != 0 {
		t.Errorf("no samples gave %d tenths", n)
	}
}

// BenchmarkGeneratorEvent is the load generator's cost of one event, which
// abacus bench pays on the same CPUs as the server it measures.
func BenchmarkGeneratorEvent(b *testing.B) {
	g := newGenerator("r1", "bench_r1", 1000, 250)
	rng := rand.New(rand.NewPCG(1, 2))
	var st stamp
	b.ReportAllocs()
	for i := range b.N {
		st.set(time.Now())
		_ = g.event(rng, 3, int64(i), &st)
	}
}
