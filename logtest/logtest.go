// Package logtest is the one conformance suite every abacus.EventLog
// implementation passes.
package logtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
)

// Exercise runs the suite. open returns a fresh, empty log with at least 2
// partitions; reopen (may be nil) closes nothing and returns a new handle
// on the same data, to check that appended messages survive.
func Exercise(t *testing.T, open func(t *testing.T) abacus.EventLog) {
	t.Run("AppendRead", func(t *testing.T) { testAppendRead(t, open(t)) })
	t.Run("ReadAfter", func(t *testing.T) { testReadAfter(t, open(t)) })
	t.Run("ConcurrentAppends", func(t *testing.T) { testConcurrent(t, open(t)) })
	t.Run("LargestMessage", func(t *testing.T) { testLarge(t, open(t)) })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var errDone = errors.New("done")

// readN reads n messages of partition p after seq.
func readN(t *testing.T, l abacus.EventLog, p int, after uint64, n int) []abacus.LogMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []abacus.LogMessage
	err := l.Read(ctx, p, after, func(m abacus.LogMessage) error {
		m.Data = append([]byte(nil), m.Data...)
		got = append(got, m)
		if len(got) == n {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("read partition %d after %d: got %d of %d messages: %v", p, after, len(got), n, err)
	}
	return got
}

func testAppendRead(t *testing.T, l abacus.EventLog) {
	defer l.Close()
	ctx := context.Background()
	if l.Partitions() < 2 {
		t.Fatalf("partitions = %d", l.Partitions())
	}
	for i := 1; i <= 3; i++ {
		seq, err := l.Append(ctx, 0, []byte(fmt.Sprint("p0-", i)))
		must(t, err)
		if seq != uint64(i) {
			t.Fatalf("partition 0 append %d: seq %d", i, seq)
		}
	}
	seq, err := l.Append(ctx, 1, []byte("p1-1"))
	must(t, err)
	if seq != 1 {
		t.Fatalf("partition 1 first seq = %d: partitions must have their own sequences", seq)
	}
	got := readN(t, l, 0, 0, 3)
	for i, m := range got {
		if m.Partition != 0 || m.Sequence != uint64(i+1) || string(m.Data) != fmt.Sprint("p0-", i+1) {
			t.Fatalf("message %d = %d/%d %q", i, m.Partition, m.Sequence, m.Data)
		}
	}
	if got := readN(t, l, 1, 0, 1); string(got[0].Data) != "p1-1" {
		t.Fatalf("partition 1 = %q", got[0].Data)
	}
	last, err := l.LastSequence(ctx, 0)
	must(t, err)
	if last != 3 {
		t.Fatalf("last sequence = %d", last)
	}
}

func testReadAfter(t *testing.T, l abacus.EventLog) {
	defer l.Close()
	ctx := context.Background()
	for i := 1; i <= 10; i++ {
		_, err := l.Append(ctx, 1, []byte(fmt.Sprint(i)))
		must(t, err)
	}
	got := readN(t, l, 1, 7, 3)
	if got[0].Sequence != 8 || string(got[0].Data) != "8" || got[2].Sequence != 10 {
		t.Fatalf("read after 7 = %+v", got)
	}
	// A reader that is ahead of the log waits for new messages.
	done := make(chan abacus.LogMessage, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go l.Read(rctx, 1, 10, func(m abacus.LogMessage) error {
		m.Data = append([]byte(nil), m.Data...)
		done <- m
		return errDone
	})
	time.Sleep(100 * time.Millisecond)
	_, err := l.Append(ctx, 1, []byte("11"))
	must(t, err)
	select {
	case m := <-done:
		if m.Sequence != 11 || string(m.Data) != "11" {
			t.Fatalf("tail read = %d %q", m.Sequence, m.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tailing reader did not see the new message")
	}
}

func testConcurrent(t *testing.T, l abacus.EventLog) {
	defer l.Close()
	ctx := context.Background()
	const writers, each = 8, 50
	var wg sync.WaitGroup
	seqs := make(chan uint64, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				seq, err := l.Append(ctx, 0, []byte(fmt.Sprint(w, "-", i)))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("sequence %d returned twice", s)
		}
		seen[s] = true
	}
	got := readN(t, l, 0, 0, writers*each)
	for i, m := range got {
		if m.Sequence != uint64(i+1) {
			t.Fatalf("message %d has sequence %d", i, m.Sequence)
		}
	}
}

func testLarge(t *testing.T, l abacus.EventLog) {
	defer l.Close()
	big := make([]byte, l.MaxMessageBytes())
	for i := range big {
		big[i] = byte(i)
	}
	_, err := l.Append(context.Background(), 0, big)
	must(t, err)
	got := readN(t, l, 0, 0, 1)
	if len(got[0].Data) != len(big) || got[0].Data[len(big)-1] != big[len(big)-1] {
		t.Fatalf("large message came back with %d bytes", len(got[0].Data))
	}
}
