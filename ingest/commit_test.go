package ingest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
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
		c := NewCommitter(CommitterConfig{Log: l, MaxBytes: 300}) // several pieces a partition
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

// gateLog holds its first Append until gate is closed and counts appends.
// It stands in for the log only here, where a test needs an append to stay
// in flight for as long as it likes; TestCommitRacingClose runs the same
// race against the real embedded log.
type gateLog struct {
	gate, entered chan struct{}
	once          sync.Once
	mu            sync.Mutex
	appends       int
}

func newGateLog() *gateLog { return &gateLog{gate: make(chan struct{}), entered: make(chan struct{})} }

func (l *gateLog) Partitions() int      { return 1 }
func (l *gateLog) MaxMessageBytes() int { return 1 << 20 }
func (l *gateLog) Append(ctx context.Context, p int, msg []byte) (uint64, error) {
	first := false
	l.once.Do(func() { first = true })
	if first {
		close(l.entered)
		<-l.gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.appends++
	return uint64(l.appends), nil
}
func (l *gateLog) Read(context.Context, int, uint64, func(abacus.LogMessage) error) error { return nil }
func (l *gateLog) LastSequence(context.Context, int) (uint64, error)                      { return 0, nil }
func (l *gateLog) Close() error                                                           { return nil }

// TestCloseAnswersQueued: pieces queued behind an append in flight when
// Close is called are all answered, and a Commit is accepted only when its
// events were appended. Closing twice does nothing.
func TestCloseAnswersQueued(t *testing.T) {
	for round := range 50 {
		l := newGateLog()
		c := NewCommitter(CommitterConfig{Log: l, MaxEvents: 1}) // an append per piece
		const n = 5
		errs := make(chan error, n)
		go func() { errs <- c.Commit(context.Background(), events("first", 1)) }()
		<-l.entered
		for i := range n - 1 {
			go func() { errs <- c.Commit(context.Background(), events(fmt.Sprint(i), 1)) }()
		}
		for len(c.queues[0]) < n-1 {
			time.Sleep(time.Millisecond)
		}
		closed := make(chan struct{})
		go func() { c.Close(); close(closed) }()
		time.Sleep(5 * time.Millisecond)
		close(l.gate)
		accepted := 0
		for range n {
			select {
			case err := <-errs:
				if err == nil {
					accepted++
				} else if abacus.ErrorCode(err) != abacus.EUNAVAILABLE {
					t.Fatalf("round %d: %v, want EUNAVAILABLE", round, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: a Commit was never answered", round)
			}
		}
		<-closed
		if accepted != l.appends {
			t.Fatalf("round %d: %d Commits accepted, %d appends", round, accepted, l.appends)
		}
		c.Close()
		if err := c.Commit(context.Background(), events("late", 1)); abacus.ErrorCode(err) != abacus.EUNAVAILABLE {
			t.Fatalf("round %d: Commit after Close: %v", round, err)
		}
	}
}
