package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/aggregate"
	"github.com/abacus-billing/abacus/client"
	"golang.org/x/sync/errgroup"
)

// run is the state shared by the phases of one benchmark.
type run struct {
	cfg       Config
	id        string // makes event type, meter keys and event ids unique per run
	eventType string
	meterKeys []string // [0] counts every event
	gen       *generator
	// probeType and probeMeter are the freshness probe's event type and
	// its count meter, apart from the load's.
	probeType, probeMeter string
	// from is where usage queries of the run start: before every event
	// time the run sends.
	from time.Time
	// distinct sums the distinct accepted events of every phase so far:
	// what meterKeys[0] must count.
	distinct int64
	// agg is the in-process server's aggregator (nil with a remote URL).
	agg *aggregate.Aggregator
}

// AggregatorLoad is how busy the aggregator's appliers were over a phase
// (first send → all visible), in-process only: the time they spent in
// transactions over the phase's time × appliers, and their transactions.
// An applier takes whatever queued while its last transaction ran, so
// near 1 means it never waited, not that it fell behind: that shows in
// the time until all is visible.
type AggregatorLoad struct {
	Busy         float64 `json:"busy"`
	Transactions int64   `json:"transactions"`
}

// aggregatorMark starts measuring the aggregator's load; the returned
// function ends it (nil without an in-process aggregator).
func (r *run) aggregatorMark() func() *AggregatorLoad {
	if r.agg == nil {
		return func() *AggregatorLoad { return nil }
	}
	busy0, txs0 := r.agg.Busy()
	t0 := time.Now()
	return func() *AggregatorLoad {
		busy, txs := r.agg.Busy()
		span := time.Since(t0) * time.Duration(r.agg.Appliers())
		return &AggregatorLoad{Busy: float64(busy-busy0) / float64(span), Transactions: txs - txs0}
	}
}

func newRun(cfg Config) *run {
	r := &run{cfg: cfg, id: randomHex(4)}
	r.eventType = "bench_" + r.id
	r.probeType, r.probeMeter = "bench_probe_"+r.id, "bench_probe_"+r.id
	r.gen = newGenerator(r.id, r.eventType, cfg.Customers, cfg.EventBytes)
	r.from = time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	if cfg.QueryEvents > 0 {
		r.from = r.from.Add(-time.Duration(cfg.QueryDays) * 24 * time.Hour)
	}
	return r
}

// setup creates the meters and customers. Meters are new per run (their
// keys carry the run id) so that a shared server's history does not
// pollute the totals; customers are shared and may exist already.
func (r *run) setup(ctx context.Context, c *client.Client) error {
	meters := []abacus.Meter{
		{Key: "bench_events_" + r.id, EventType: r.eventType, Aggregation: abacus.AggCount},
		{Key: "bench_tokens_" + r.id, EventType: r.eventType, Aggregation: abacus.AggSum, Value: "$.tokens",
			GroupBy: map[string]string{"model": "$.model", "region": "$.region"}},
		{Key: "bench_latency_" + r.id, EventType: r.eventType, Aggregation: abacus.AggMax, Value: "$.latency_ms",
			GroupBy: map[string]string{"region": "$.region"}},
	}
	for i := len(meters); i < r.cfg.Meters; i++ {
		meters = append(meters, abacus.Meter{Key: fmt.Sprintf("bench_tokens%d_%s", i, r.id), EventType: r.eventType,
			Aggregation: abacus.AggSum, Value: "$.tokens", GroupBy: map[string]string{"model": "$.model"}})
	}
	for _, m := range meters[:r.cfg.Meters] {
		if _, err := c.CreateMeter(ctx, m); err != nil {
			return fmt.Errorf("create meter %s: %w", m.Key, err)
		}
		r.meterKeys = append(r.meterKeys, m.Key)
	}
	probe := abacus.Meter{Key: r.probeMeter, EventType: r.probeType, Aggregation: abacus.AggCount}
	if _, err := c.CreateMeter(ctx, probe); err != nil {
		return fmt.Errorf("create meter %s: %w", probe.Key, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range r.cfg.Customers {
		g.Go(func() error {
			_, err := c.CreateCustomer(gctx, abacus.Customer{ID: customerID(i), Name: "Bench customer " + strconv.Itoa(i)})
			if err != nil && !client.IsCode(err, abacus.ECONFLICT) {
				return fmt.Errorf("create customer %s: %w", customerID(i), err)
			}
			return nil
		})
	}
	return g.Wait()
}

func customerID(i int) string { return fmt.Sprintf("bench-cust-%05d", i) }

// generator makes synthetic events of about eventBytes bytes of JSON with
// realistic properties (tokens, model, region).
type generator struct {
	runID      string
	eventType  string
	eventBytes int
	// spread > 0 gives events times spread uniformly over the spread
	// before now (the query phase's month of history); 0 gives now.
	spread time.Duration
	// ids[i] is customerID(i) for each customer, made once: formatting one
	// per event was a sixth of the load generator's CPU.
	ids []string
}

func newGenerator(runID, eventType string, customers, eventBytes int) *generator {
	g := &generator{runID: runID, eventType: eventType, eventBytes: eventBytes, ids: make([]string, customers)}
	for i := range g.ids {
		g.ids[i] = customerID(i)
	}
	return g
}

var (
	models  = []string{"m-small", "m-medium", "m-large", "m-xl"}
	regions = []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-south-1"}
)

// synth is one synthetic event, kept so that a duplicate resends it with
// the very same payload.
type synth struct {
	id, customer string
	time         time.Time
	props        []byte // JSON object, within json
	json         []byte // the whole event
}

// stamp is a sender's event time, to the millisecond, and its JSON text,
// formatted when the millisecond changes rather than for every event.
type stamp struct {
	t    time.Time
	text []byte
}

func (st *stamp) set(now time.Time) {
	t := now.Truncate(time.Millisecond)
	if st.text != nil && t.Equal(st.t) {
		return
	}
	st.t, st.text = t, appendTime(st.text[:0], t)
}

func appendTime(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
}

// event makes the n-th event of worker w at st's time (or, with a spread,
// up to the spread before it), in one allocation besides its id.
func (g *generator) event(rng *rand.Rand, w int, n int64, st *stamp) synth {
	s := synth{customer: g.ids[rng.IntN(len(g.ids))], time: st.t}
	timeText := st.text
	if g.spread > 0 {
		s.time = st.t.Add(-time.Duration(rng.Int64N(int64(g.spread)))).Truncate(time.Millisecond)
		timeText = appendTime(make([]byte, 0, 32), s.time)
	}
	j := make([]byte, 0, g.eventBytes+16)
	j = append(j, `{"id":"`...)
	idAt := len(j)
	j = append(j, 'b')
	j = append(j, g.runID...)
	j = append(j, '-')
	j = strconv.AppendInt(j, int64(w), 10)
	j = append(j, '-')
	j = strconv.AppendInt(j, n, 10)
	s.id = string(j[idAt:])
	j = append(j, `","type":"`...)
	j = append(j, g.eventType...)
	j = append(j, `","customer":"`...)
	j = append(j, s.customer...)
	j = append(j, `","time":"`...)
	j = append(j, timeText...)
	j = append(j, `","properties":`...)
	propsAt := len(j)
	j = append(j, `{"tokens":`...)
	j = strconv.AppendInt(j, int64(1+rng.IntN(8000)), 10)
	j = append(j, `,"model":"`...)
	j = append(j, models[rng.IntN(len(models))]...)
	j = append(j, `","region":"`...)
	j = append(j, regions[rng.IntN(len(regions))]...)
	j = append(j, `","latency_ms":`...)
	j = strconv.AppendInt(j, int64(5+rng.IntN(2000)), 10)
	j = append(j, `,"request_id":"`...)
	// Pad the request id so the whole event is about eventBytes long,
	// sixteen hex digits from each random number.
	fixed := len(j) + len(`"}}`)
	for pad := max(g.eventBytes-fixed, 8); pad > 0; {
		r := rng.Uint64()
		for k := 0; k < 16 && pad > 0; k++ {
			j = append(j, "0123456789abcdef"[r&15])
			r >>= 4
			pad--
		}
	}
	j = append(j, `"}`...)
	s.props = j[propsAt:len(j):len(j)]
	s.json = append(j, '}')
	return s
}

// record is the log form of s, as ingest would write it.
func (g *generator) record(dst []byte, s *synth, now time.Time) []byte {
	e := abacus.Event{TenantID: abacus.DefaultTenantID, ID: s.id, Type: g.eventType, Customer: s.customer,
		Time: s.time, TimeGiven: true, IngestTime: now, Properties: s.props}
	return abacus.AppendRecord(dst, &e)
}

// loadResult sums up the load phase.
type loadResult struct {
	first, last time.Time
	requests    int64
	failed      int64
	sent        int64
	accepted    int64
	rejected    int64
	distinct    int64
	bytes       int64
	latencies   []time.Duration
}

func (l *loadResult) fill(rep *Report) {
	rep.SendSeconds = l.last.Sub(l.first).Seconds()
	rep.Requests, rep.FailedRequests = l.requests, l.failed
	rep.EventsSent, rep.EventsAccepted, rep.EventsRejected, rep.DistinctAccepted = l.sent, l.accepted, l.rejected, l.distinct
	if rep.SendSeconds > 0 {
		rep.AcceptedPerSec = float64(l.accepted) / rep.SendSeconds
	}
	if l.sent > 0 {
		rep.EventBytes = int(l.bytes / l.sent)
	}
	p := percentiles(l.latencies, 0.50, 0.99, 0.999, 1)
	rep.LatencyP50, rep.LatencyP99, rep.LatencyP999, rep.LatencyMax = p[0], p[1], p[2], p[3]
}

// phase is one load phase: how requests are shaped and paced.
type phase struct {
	name        string
	batch       int
	concurrency int
	duration    time.Duration
	// rate > 0 runs open loop at rate requests per second; 0 closed loop.
	rate float64
	// events > 0 stops the phase once that many events were sent (the
	// duration still bounds it).
	events int64
	gen    *generator
	// worker offsets sender numbers so that event ids of different phases
	// never collide.
	worker int
	// heap, when set, receives a heap profile at the end of the sending;
	// heapEarly (open-loop phases) one a tenth of the way through it.
	heap, heapEarly io.Writer
}

// load drives the server through one phase.
func (r *run) load(ctx context.Context, c *client.Client, ph phase) (*loadResult, error) {
	var (
		mu       sync.Mutex
		total    loadResult
		next     atomic.Int64 // open loop: the next request's slot
		budget   atomic.Int64 // events left when ph.events > 0
		progress atomic.Int64 // accepted events, for the progress line
	)
	budget.Store(ph.events)
	start := time.Now()
	deadline := start.Add(ph.duration)
	stopProgress := r.progress(ph.name, start, &progress)
	defer stopProgress()
	var wg sync.WaitGroup
	for w := range ph.concurrency {
		wg.Go(func() {
			l := r.sender(ctx, c, &ph, ph.worker+w, start, deadline, &next, &budget, &progress)
			mu.Lock()
			defer mu.Unlock()
			total.requests += l.requests
			total.failed += l.failed
			total.sent += l.sent
			total.accepted += l.accepted
			total.rejected += l.rejected
			total.distinct += l.distinct
			total.bytes += l.bytes
			total.latencies = append(total.latencies, l.latencies...)
			if total.last.Before(l.last) {
				total.last = l.last
			}
		})
	}
	wg.Wait()
	total.first = start
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if total.requests == 0 {
		return nil, fmt.Errorf("%s: no request was sent", ph.name)
	}
	return &total, nil
}

// sender is one concurrent sender. Duplicates resend an event this sender
// had acknowledged, so each is exactly one repeat of a counted event.
func (r *run) sender(ctx context.Context, c *client.Client, ph *phase, w int, start, deadline time.Time, next, budget, progress *atomic.Int64) loadResult {
	cfg := r.cfg
	var l loadResult
	rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
	const ringSize = 512
	var ring []synth // accepted events, candidates for duplicates
	var n int64
	batch := make([]synth, 0, ph.batch)
	isNew := make([]bool, 0, ph.batch)
	var body []byte
	var st stamp
	var interval time.Duration
	if ph.rate > 0 {
		interval = time.Duration(float64(time.Second) / ph.rate)
	}
	for ctx.Err() == nil {
		sched := time.Now()
		if interval > 0 {
			sched = start.Add(time.Duration(next.Add(1)-1) * interval)
			if !sched.Before(deadline) {
				break
			}
			if d := time.Until(sched); d > 0 {
				time.Sleep(d)
			}
		} else if !sched.Before(deadline) {
			break
		}
		if ph.events > 0 && budget.Add(-int64(ph.batch)) < 0 {
			break
		}
		batch, isNew = batch[:0], isNew[:0]
		body = append(body[:0], '[')
		st.set(time.Now())
		for i := range ph.batch {
			var s synth
			if len(ring) > 0 && cfg.DupRate > 0 && rng.Float64() < cfg.DupRate {
				s, isNew = ring[rng.IntN(len(ring))], append(isNew, false)
			} else {
				s, isNew = ph.gen.event(rng, w, n, &st), append(isNew, true)
				n++
			}
			batch = append(batch, s)
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, s.json...)
			l.bytes += int64(len(s.json))
		}
		body = append(body, ']')
		res, err := c.IngestRaw(ctx, "application/json", body)
		end := time.Now()
		l.latencies = append(l.latencies, end.Sub(sched))
		l.last = end
		l.requests++
		l.sent += int64(len(batch))
		if err != nil {
			if ctx.Err() == nil {
				l.failed++
			}
			continue
		}
		rejected := map[int]bool{}
		for _, rj := range res.Rejected {
			rejected[rj.Index] = true
		}
		l.accepted += int64(res.Accepted)
		l.rejected += int64(len(res.Rejected))
		progress.Add(int64(res.Accepted))
		for i, s := range batch {
			if rejected[i] || !isNew[i] {
				continue
			}
			l.distinct++
			if len(ring) < ringSize {
				ring = append(ring, s)
			} else {
				ring[rng.IntN(ringSize)] = s
			}
		}
	}
	return l
}

// progress prints accepted events every 5 s to cfg.Progress until stopped.
func (r *run) progress(name string, start time.Time, accepted *atomic.Int64) (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				el := time.Since(start).Seconds()
				fmt.Fprintf(r.cfg.Progress, "  %s %4.0fs  %d events accepted (%.0f/s)\n", name, el, accepted.Load(), float64(accepted.Load())/el)
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
