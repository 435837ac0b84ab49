package aggregate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/sqlite"
)

// BenchmarkApplySQLite measures the aggregator's transaction on SQLite:
// batches of 20,000 events (200 log messages of 100), shaped like the
// events of `abacus bench` (~250 B, three meters: a count, a sum grouped
// by model and region, a max grouped by region), 1,000 customers. Reported
// per event, so that before/after comparisons read directly: wall and CPU
// time of gathering and the transaction, and wall time of the transaction
// alone (tx-ns/event).
func BenchmarkApplySQLite(b *testing.B) {
	benchApply(b, openSQLite(b))
}

// openSQLite opens a store in a temporary directory, closed with the test.
func openSQLite(tb testing.TB) *sqlite.Store {
	st, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "abacus.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

func benchApply(b *testing.B, st abacus.Store) {
	ctx := context.Background()
	tenant := &abacus.Tenant{ID: "t-bench", Name: "bench", CreatedAt: time.Now()}
	if err := st.CreateTenant(ctx, tenant); err != nil {
		b.Fatal(err)
	}
	for _, m := range []*abacus.Meter{
		{TenantID: tenant.ID, Key: "events", EventType: "call", Aggregation: abacus.AggCount},
		{TenantID: tenant.ID, Key: "tokens", EventType: "call", Aggregation: abacus.AggSum, Value: "$.tokens",
			GroupBy: map[string]string{"model": "$.model", "region": "$.region"}},
		{TenantID: tenant.ID, Key: "latency", EventType: "call", Aggregation: abacus.AggMax, Value: "$.latency_ms",
			GroupBy: map[string]string{"region": "$.region"}},
	} {
		m.CreatedAt = time.Now()
		if err := st.CreateMeter(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	a := New(Config{Store: st})
	perMessage, messages := 100, benchMessages
	rng := rand.New(rand.NewPCG(1, 2))
	var seq uint64
	var n int
	batch := make([]abacus.LogMessage, messages)
	b0 := newBatch()
	b.ReportAllocs()
	var cpu, inTx time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		now := time.Now()
		for i := range batch {
			msg := abacus.AppendMessage(nil, perMessage)
			for range perMessage {
				e := benchEvent(rng, tenant.ID, n, now)
				n++
				msg = abacus.AppendRecord(msg, &e)
			}
			seq++
			batch[i] = abacus.LogMessage{Partition: 0, Sequence: seq, Data: msg}
		}
		b.StartTimer()
		cpu0 := processCPU()
		// Gathering (decoding, evaluating) and the transaction, on one
		// goroutine: the CPU of both per event.
		for _, m := range batch {
			meters, v := a.meters.last()
			b0.add(m, meters, v, a)
		}
		t0 := time.Now()
		if err := a.apply(ctx, b0); err != nil {
			b.Fatal(err)
		}
		inTx += time.Since(t0)
		b0.reset()
		cpu += processCPU() - cpu0
	}
	// CPU time as well as wall time: the machines these run on are
	// shared, and other processes stretch wall time far more than CPU time.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perMessage*messages), "ns/event")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*perMessage*messages), "cpu-ns/event")
	// The transaction alone: the single writer's critical path, which
	// gathering ahead (the rest of cpu-ns) takes work off.
	b.ReportMetric(float64(inTx.Nanoseconds())/float64(b.N*perMessage*messages), "tx-ns/event")
}

// processCPU is the user and system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var (
	benchModels  = []string{"m-small", "m-medium", "m-large", "m-xl"}
	benchRegions = []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-south-1"}
)

func benchEvent(rng *rand.Rand, tenant string, n int, now time.Time) abacus.Event {
	pad := make([]byte, 96)
	for i := range pad {
		pad[i] = "0123456789abcdef"[rng.IntN(16)]
	}
	props := fmt.Sprintf(`{"tokens":%d,"model":%q,"region":%q,"latency_ms":%d,"request_id":%q}`,
		1+rng.IntN(8000), benchModels[rng.IntN(len(benchModels))], benchRegions[rng.IntN(len(benchRegions))], 5+rng.IntN(2000), pad)
	return abacus.Event{TenantID: tenant, ID: "bench-ev-" + strconv.Itoa(n), Type: "call",
		Customer: fmt.Sprintf("cust-%05d", rng.IntN(1000)), Time: now.Truncate(time.Millisecond).UTC(), TimeGiven: true,
		IngestTime: now.UTC(), Properties: []byte(props)}
}

// benchMessages is the log messages of 100 events per benchmark batch.
var benchMessages = 200
