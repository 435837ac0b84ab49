package subscription_test

import (
	"slices"
	"testing"

	"github.com/abacus-billing/abacus"
)

// TestChargesAsOfBarrier: with a clock that stands still, charges read as
// of a barrier stay what they were when it was taken, although the change
// applied after it reads the same clock. recorded_at and superseded_at are
// knowledge stamps, and a stamp after a barrier is later than it; had they
// been the clock, the change would be recorded at the barrier's instant
// and show through.
func TestChargesAsOfBarrier(t *testing.T) {
	for _, sk := range allStores {
		t.Run(sk.name, func(t *testing.T) {
			c := lateChange()
			w := newWorld(t, sk.open(t), c)
			w.clock.step = 0
			w.deliver(inOrder(c.pick("e1", "e2")))
			before := chargeIDLines(w.charges("s1"))
			k, err := w.store.Barrier(w.ctx, w.clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			if !k.Equal(w.clock.Now()) {
				t.Fatalf("barrier K = %v, want the clock %v", k, w.clock.Now())
			}
			w.deliver(inOrder(c.pick("e3")))
			after := chargeIDLines(w.charges("s1"))
			if slices.Equal(before, after) {
				t.Fatalf("the late change changed no charge: the test proves nothing")
			}
			asOf, err := w.store.ListCharges(w.ctx, abacus.ChargeFilter{TenantID: w.tenant, SubscriptionID: "s1", AsOf: &k})
			if err != nil {
				t.Fatal(err)
			}
			if got := chargeIDLines(asOf); !slices.Equal(got, before) {
				t.Errorf("charges as of the barrier:\n  %v\nwant those current when it was taken:\n  %v", got, before)
			}
			if e3 := w.event("e3"); e3.AppliedAt == nil || !e3.AppliedAt.After(k) {
				t.Errorf("e3 applied at %v, want after the barrier %v", e3.AppliedAt, k)
			}
		})
	}
}
