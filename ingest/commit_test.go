package ingest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/ingest"
	"github.com/abacus-billing/abacus/jetstream"
)

func openLog(t *testing.T) *jetstream.Log {
	t.Helper()
	l, err := jetstream.Open(context.Background(), jetstream.Config{Dir: t.TempDir(), Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func events(prefix string, n int) []abacus.Event {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	out := make([]abacus.Event, n)
	for i := range out {
		out[i] = abacus.Event{TenantID: "t", ID: fmt.Sprintf("%s-%d", prefix, i), Type: "call", Customer: fmt.Sprintf("c%d", i%5),
			Time: now, IngestTime: now, Properties: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return out
}

// TestCommitRacingClose: Commits running while the committer closes all
// return, each either accepted or EUNAVAILABLE; none waits forever for a
// piece that reached a queue after its loop stopped.
func TestCommitRacingClose(t *testing.T) {
	for round := range 20 {
		l := openLog(t)
		c := ingest.NewCommitter(ingest.CommitterConfig{Log: l, MaxBytes: 300}) // several pieces a partition
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 16 {
			wg.Go(func() {
				for i := 0; ; i++ {
					err := c.Commit(context.Background(), events(fmt.Sprintf("r%d-w%d-%d", round, w, i), 20))
					if err != nil {
						if abacus.ErrorCode(err) != abacus.EUNAVAILABLE {
							errs <- err
						}
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		c.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Commits still waiting 10 s after Close", round)
		}
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v, want EUNAVAILABLE", round, err)
		}
	}
}
