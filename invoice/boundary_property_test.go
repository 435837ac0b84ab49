package invoice

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/billing"
)

// TestInvoiceBoundariesTile: for random subscriptions (interval, count,
// calendar or anniversary anchor on any day including the 29th-31st, any
// of a mix of zones, a start at any instant) the invoice boundaries over ten
// years tile time: boundary 0 is the start, each boundary is after the one
// before, every schedule boundary after the start is exactly one invoice
// boundary, BoundaryAfter inverts Boundary, and the periods between them
// neither overlap nor leave a gap. The schedule arithmetic itself has its
// own property test in package billing.
func TestInvoiceBoundariesTile(t *testing.T) {
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "America/Santiago", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Chatham", "America/Havana"}
	intervals := []abacus.Interval{abacus.IntervalWeek, abacus.IntervalMonth, abacus.IntervalQuarter, abacus.IntervalYear}
	r := rand.New(rand.NewPCG(2026, 11))
	for n := 0; n < 600; n++ {
		loc, err := time.LoadLocation(zones[r.IntN(len(zones))])
		if err != nil {
			t.Fatal(err)
		}
		iv := intervals[r.IntN(len(intervals))]
		count := 1 + r.IntN(3)
		// Starts cluster on month ends and DST seasons.
		start := time.Date(2020+r.IntN(8), time.Month(1+r.IntN(12)), []int{1, 15, 28, 29, 30, 31}[r.IntN(6)],
			r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1e9), loc).UTC()
		anchor := start
		if r.IntN(2) == 0 {
			anchor = billing.CalendarAnchor(iv, start, loc).UTC()
		}
		sub := &abacus.Subscription{ID: "s", StartAt: start, AnchorAt: anchor, Interval: iv, IntervalCount: count, TimeZone: loc.String()}
		sch := billing.Schedule{Interval: iv, Count: count, Anchor: anchor, Loc: loc}
		if Boundary(sub, sch, 0) != start {
			t.Fatalf("case %d: boundary 0 %s is not the start %s", n, Boundary(sub, sch, 0), start)
		}
		end := start.AddDate(10, 0, 0)
		prev := start
		k := sch.PeriodAt(start).Index + 1 // the first schedule boundary after the start
		for i := 1; prev.Before(end); i++ {
			b := Boundary(sub, sch, i)
			if !b.After(prev) {
				t.Fatalf("case %d (%s ×%d %s anchor %s start %s): boundary %d %s is not after %s", n, iv, count, loc, anchor, start, i, b, prev)
			}
			if want := sch.Boundary(k).UTC(); !b.Equal(want) {
				t.Fatalf("case %d: boundary %d is %s, schedule boundary %d is %s", n, i, b, k, want)
			}
			// Every instant of [prev, b) maps back to boundary i.
			for _, at := range []time.Time{prev, prev.Add(b.Sub(prev) / 2), b.Add(-time.Nanosecond)} {
				if got := BoundaryAfter(sub, sch, at); got != i {
					t.Fatalf("case %d: BoundaryAfter(%s) = %d, want %d (period [%s, %s))", n, at, got, i, prev, b)
				}
			}
			prev, k = b, k+1
		}
	}
}
