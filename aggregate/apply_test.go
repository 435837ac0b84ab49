package aggregate

import (
	"testing"

	"github.com/abacus-billing/abacus"
)

// TestBatchReset: a reset batch holds no events, keeps its arrays through
// fewer than shrinkAfter small batches in a row, and gives them up after.
func TestBatchReset(t *testing.T) {
	b := newBatch()
	b.uniq = make([]abacus.AppliedEvent, 0, 10_000)
	for round := 1; round <= shrinkAfter; round++ {
		b.uniq = append(b.uniq, abacus.AppliedEvent{Event: abacus.Event{ID: "e"}})
		b.contribs = append(b.contribs, nil)
		b.reset()
		if len(b.uniq) != 0 || cap(b.uniq) > 0 && b.uniq[:1][0].ID != "" {
			t.Fatalf("round %d: the reset batch holds an event", round)
		}
		if kept := cap(b.uniq) == 10_000; kept != (round < shrinkAfter) {
			t.Fatalf("round %d: capacity %d", round, cap(b.uniq))
		}
	}
}
