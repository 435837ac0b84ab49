package billing

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
)

func loadLoc(tb testing.TB, name string) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		tb.Fatalf("load %s: %v", name, err)
	}
	return loc
}

// utc is an instant written in UTC, for expected values whose exact
// instant matters (DST cases).
func utc(y int, m time.Month, d, hh, mm int) time.Time {
	return time.Date(y, m, d, hh, mm, 0, 0, time.UTC)
}

// local is an instant written as a local date and clock time; tests use it
// only for clock times that exist exactly once on that date.
func local(loc *time.Location, y int, m time.Month, d, hh, mm int) time.Time {
	return time.Date(y, m, d, hh, mm, 0, 0, loc)
}

// wantBoundaries checks Boundary(k) for k = first, first+1, ... and that
// the periods between them tile, and PeriodAt finds them.
func wantBoundaries(t *testing.T, s Schedule, first int, want ...time.Time) {
	t.Helper()
	for i, w := range want {
		k := first + i
		if got := s.Boundary(k); !got.Equal(w) {
			t.Errorf("Boundary(%d) = %v (%v), want %v (%v)", k, got, got.UTC(), w.In(s.Loc), w.UTC())
		}
		if got := s.Boundary(k); got.Location() != s.Loc {
			t.Errorf("Boundary(%d) in %v, want %v", k, got.Location(), s.Loc)
		}
		if i+1 == len(want) {
			break
		}
		next := want[i+1]
		if !w.Before(next) {
			t.Fatalf("test data: %v not before %v", w, next)
		}
		wp := Period{Index: k, Start: w, End: next}
		for _, at := range []time.Time{w, next.Add(-1), w.Add(next.Sub(w) / 2)} {
			if got := s.PeriodAt(at); !samePeriod(got, wp) {
				t.Errorf("PeriodAt(%v) = %v, want %v", at, fmtPeriod(got), fmtPeriod(wp))
			}
		}
	}
}

func samePeriod(a, b Period) bool {
	return a.Index == b.Index && a.Start.Equal(b.Start) && a.End.Equal(b.End)
}

func fmtPeriod(p Period) string {
	return fmt.Sprintf("#%d [%v, %v)", p.Index, p.Start, p.End)
}

func TestMonthlyClampsToMonthEnd(t *testing.T) {
	ny := loadLoc(t, "America/New_York")
	at := func(y int, m time.Month, d int) time.Time { return local(ny, y, m, d, 10, 0) }
	s := Schedule{Interval: abacus.IntervalMonth, Count: 1, Anchor: at(2024, 1, 31), Loc: ny}
	wantBoundaries(t, s, 0,
		at(2024, 1, 31), at(2024, 2, 29), at(2024, 3, 31), at(2024, 4, 30),
		at(2024, 5, 31), at(2024, 6, 30), at(2024, 7, 31), at(2024, 8, 31),
		at(2024, 9, 30), at(2024, 10, 31), at(2024, 11, 30), at(2024, 12, 31),
		at(2025, 1, 31), at(2025, 2, 28), at(2025, 3, 31))
	// Negative k keeps the anchor day too.
	wantBoundaries(t, s, -13,
		at(2022, 12, 31), at(2023, 1, 31), at(2023, 2, 28), at(2023, 3, 31),
		at(2023, 4, 30))
}

func TestMonthlyAnchorsLateInJanuary(t *testing.T) {
	loc := loadLoc(t, "Europe/Paris")
	at := func(y int, m time.Month, d int) time.Time { return local(loc, y, m, d, 0, 0) }
	cases := []struct {
		anchor time.Time
		want   []time.Time // boundaries 0, 1, 2
	}{
		{at(2024, 1, 29), []time.Time{at(2024, 1, 29), at(2024, 2, 29), at(2024, 3, 29)}},
		{at(2024, 1, 30), []time.Time{at(2024, 1, 30), at(2024, 2, 29), at(2024, 3, 30)}},
		{at(2025, 1, 29), []time.Time{at(2025, 1, 29), at(2025, 2, 28), at(2025, 3, 29)}},
		{at(2025, 1, 30), []time.Time{at(2025, 1, 30), at(2025, 2, 28), at(2025, 3, 30)}},
		{at(2025, 1, 28), []time.Time{at(2025, 1, 28), at(2025, 2, 28), at(2025, 3, 28)}},
		{at(2000, 1, 30), []time.Time{at(2000, 1, 30), at(2000, 2, 29), at(2000, 3, 30)}}, // 400-year leap
		{at(2100, 1, 29), []time.Time{at(2100, 1, 29), at(2100, 2, 28), at(2100, 3, 29)}}, // century, not leap
	}
	for _, c := range cases {
		t.Run(c.anchor.Format("2006-01-02"), func(t *testing.T) {
			s := Schedule{Interval: abacus.IntervalMonth, Count: 1, Anchor: c.anchor, Loc: loc}
			wantBoundaries(t, s, 0, c.want...)
		})
	}
}

func TestQuarterly(t *testing.T) {
	loc := loadLoc(t, "Australia/Sydney") // southern DST, changes in Apr and Oct
	at := func(y int, m time.Month, d int) time.Time { return local(loc, y, m, d, 9, 30) }
	s := Schedule{Interval: abacus.IntervalQuarter, Count: 1, Anchor: at(2023, 11, 30), Loc: loc}
	wantBoundaries(t, s, -1,
		at(2023, 8, 30), at(2023, 11, 30), at(2024, 2, 29), at(2024, 5, 30),
		at(2024, 8, 30), at(2024, 11, 30), at(2025, 2, 28), at(2025, 5, 30))
	// Every Sydney quarter is a whole number of local days, not of 24h.
	if d := s.Boundary(2).Sub(s.Boundary(1)); d != 91*24*time.Hour+time.Hour {
		t.Errorf("Feb 29 .. May 30 2024 lasts %v, want 91 days and the hour clocks went back on Apr 7", d)
	}
}

func TestYearlyLeapDay(t *testing.T) {
	at := func(y int, m time.Month, d int) time.Time { return local(time.UTC, y, m, d, 12, 0) }
	s := Schedule{Interval: abacus.IntervalYear, Count: 1, Anchor: at(2024, 2, 29), Loc: time.UTC}
	wantBoundaries(t, s, -5,
		at(2019, 2, 28), at(2020, 2, 29), at(2021, 2, 28), at(2022, 2, 28), at(2023, 2, 28),
		at(2024, 2, 29), at(2025, 2, 28), at(2026, 2, 28), at(2027, 2, 28), at(2028, 2, 29))
	s.Count = 4
	wantBoundaries(t, s, -1, at(2020, 2, 29), at(2024, 2, 29), at(2028, 2, 29), at(2032, 2, 29))
	s.Count = 2
	wantBoundaries(t, s, 0, at(2024, 2, 29), at(2026, 2, 28), at(2028, 2, 29))
}

func TestCountTwoMonths(t *testing.T) {
	at := func(y int, m time.Month, d int) time.Time { return local(time.UTC, y, m, d, 0, 0) }
	s := Schedule{Interval: abacus.IntervalMonth, Count: 2, Anchor: at(2023, 8, 31), Loc: time.UTC}
	wantBoundaries(t, s, -2,
		at(2023, 4, 30), at(2023, 6, 30), at(2023, 8, 31), at(2023, 10, 31),
		at(2023, 12, 31), at(2024, 2, 29), at(2024, 4, 30), at(2024, 6, 30))
}

func TestWeeklyAcrossDST(t *testing.T) {
	berlin := loadLoc(t, "Europe/Berlin")
	at := func(m time.Month, d int) time.Time { return local(berlin, 2024, m, d, 0, 0) }
	s := Schedule{Interval: abacus.IntervalWeek, Count: 1, Anchor: at(1, 1), Loc: berlin} // a Monday
	wantBoundaries(t, s, 12, at(3, 25), at(4, 1), at(4, 8))
	wantBoundaries(t, s, 42, at(10, 21), at(10, 28), at(11, 4))
	wantBoundaries(t, s, -1, local(berlin, 2023, 12, 25, 0, 0), at(1, 1))
	for _, c := range []struct {
		k    int
		want time.Duration
	}{{12, 167 * time.Hour}, {13, 168 * time.Hour}, {42, 169 * time.Hour}} {
		p := s.Period(c.k)
		if got := p.End.Sub(p.Start); got != c.want {
			t.Errorf("period %d (%v) lasts %v, want %v", c.k, p.Start, got, c.want)
		}
		if h, m, sec := p.Start.Clock(); h|m|sec != 0 || p.Start.Weekday() != time.Monday {
			t.Errorf("period %d starts %v, want local midnight on a Monday", c.k, p.Start)
		}
	}
}

// TestDSTGapAndOverlap pins the resolution rule: a nonexistent clock time
// moves to the end of the gap (in both hemispheres of offsets, where
// time.Date moves it forward or backward), and a repeated one is its first
// occurrence.
func TestDSTGapAndOverlap(t *testing.T) {
	berlin := loadLoc(t, "Europe/Berlin")
	ny := loadLoc(t, "America/New_York")
	cases := []struct {
		name string
		s    Schedule
		k    int
		want time.Time
	}{
		// Sunday 2024-03-31 02:30 does not exist in Berlin: 02:00 CET -> 03:00 CEST.
		{"berlin gap", Schedule{abacus.IntervalWeek, 1, local(berlin, 2024, 3, 24, 2, 30), berlin}, 1, utc(2024, 3, 31, 1, 0)},
		{"berlin after gap", Schedule{abacus.IntervalWeek, 1, local(berlin, 2024, 3, 24, 2, 30), berlin}, 2, utc(2024, 4, 7, 0, 30)},
		// Sunday 2024-10-27 02:30 happens twice; the first is CEST (00:30 UTC).
		// time.Date picks the second here.
		{"berlin overlap", Schedule{abacus.IntervalWeek, 1, local(berlin, 2024, 10, 20, 2, 30), berlin}, 1, utc(2024, 10, 27, 0, 30)},
		// 2024-03-10 02:30 does not exist in New York; time.Date gives 01:30 EST.
		{"new york gap", Schedule{abacus.IntervalMonth, 1, local(ny, 2024, 2, 10, 2, 30), ny}, 1, utc(2024, 3, 10, 7, 0)},
		// 2024-11-03 01:30 happens twice; the first is EDT.
		{"new york overlap", Schedule{abacus.IntervalMonth, 1, local(ny, 2024, 10, 3, 1, 30), ny}, 1, utc(2024, 11, 3, 5, 30)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.s.Boundary(c.k); !got.Equal(c.want) {
				t.Errorf("Boundary(%d) = %v, want %v", c.k, got.UTC(), c.want)
			}
			prev, next := c.s.Boundary(c.k-1), c.s.Boundary(c.k+1)
			if !prev.Before(c.want) || !c.want.Before(next) {
				t.Errorf("boundaries %v, %v, %v not increasing", prev, c.want, next)
			}
			if p := c.s.PeriodAt(c.want.Add(-1)); p.Index != c.k-1 {
				t.Errorf("PeriodAt(boundary-1ns).Index = %d, want %d", p.Index, c.k-1)
			}
		})
	}
	// An anchor at the second occurrence stays the anchor: Boundary(0) is
	// the anchor, not the first occurrence.
	second := utc(2024, 10, 27, 1, 30) // 02:30 CET
	s := Schedule{Interval: abacus.IntervalWeek, Count: 1, Anchor: second, Loc: berlin}
	if got := s.Boundary(0); !got.Equal(second) {
		t.Errorf("Boundary(0) = %v, want the anchor %v", got.UTC(), second)
	}
	if p := s.PeriodAt(utc(2024, 10, 27, 0, 30)); p.Index != -1 || !p.End.Equal(second) {
		t.Errorf("first 02:30 is in %v, want the period before the anchor", fmtPeriod(p))
	}
	wantBoundaries(t, s, -1, utc(2024, 10, 20, 0, 30), second, utc(2024, 11, 3, 1, 30))
}

// TestMidnightTransitions covers zones that change their clocks at 00:00,
// where time.Date puts a nonexistent midnight on the previous day.
func TestMidnightTransitions(t *testing.T) {
	santiago := loadLoc(t, "America/Santiago") // 2024-09-08 00:00 -> 01:00; 2024-04-06 24:00 -> 23:00
	beirut := loadLoc(t, "Asia/Beirut")        // 2024-03-31 00:00 -> 01:00
	havana := loadLoc(t, "America/Havana")     // 2024-11-03 01:00 -> 00:00: midnight twice
	asuncion := loadLoc(t, "America/Asuncion") // 2023-10-01 00:00 -> 01:00, a month's 1st

	t.Run("santiago monthly", func(t *testing.T) {
		s := Schedule{Interval: abacus.IntervalMonth, Count: 1, Anchor: local(santiago, 2024, 7, 8, 0, 0), Loc: santiago}
		wantBoundaries(t, s, 0,
			utc(2024, 7, 8, 4, 0),  // -04
			utc(2024, 8, 8, 4, 0),  // -04
			utc(2024, 9, 8, 4, 0),  // 01:00 -03, the day's first instant (not Sep 7 23:00)
			utc(2024, 10, 8, 3, 0), // -03
		)
		if d := s.Boundary(2).In(santiago).Day(); d != 8 {
			t.Errorf("Sep boundary on day %d, want 8", d)
		}
	})
	t.Run("santiago weekly 23:30 twice", func(t *testing.T) {
		s := Schedule{Interval: abacus.IntervalWeek, Count: 1, Anchor: local(santiago, 2024, 3, 30, 23, 30), Loc: santiago}
		// Sat 2024-04-06 23:30 occurs at 02:30 UTC (-03) and 03:30 UTC (-04).
		wantBoundaries(t, s, 0, utc(2024, 3, 31, 2, 30), utc(2024, 4, 7, 2, 30), utc(2024, 4, 14, 3, 30))
	})
	t.Run("beirut monthly on the 31st", func(t *testing.T) {
		s := Schedule{Interval: abacus.IntervalMonth, Count: 1, Anchor: local(beirut, 2024, 1, 31, 0, 0), Loc: beirut}
		wantBoundaries(t, s, 0,
			utc(2024, 1, 30, 22, 0), utc(2024, 2, 28, 22, 0),
			utc(2024, 3, 30, 22, 0), // Mar 31 01:00 EEST, the end of the gap
			utc(2024, 4, 29, 21, 0))
	})
	t.Run("havana first midnight", func(t *testing.T) {
		s := Schedule{Interval: abacus.IntervalMonth, Count: 1, Anchor: local(havana, 2024, 10, 3, 0, 0), Loc: havana}
		wantBoundaries(t, s, 0, utc(2024, 10, 3, 4, 0), utc(2024, 11, 3, 4, 0), utc(2024, 12, 3, 5, 0))
	})
	t.Run("asuncion calendar month", func(t *testing.T) {
		a := CalendarAnchor(abacus.IntervalMonth, utc(2023, 10, 15, 12, 0), asuncion)
		if want := utc(2023, 10, 1, 4, 0); !a.Equal(want) { // Oct 1 01:00 -03, not Sep 30 23:00 -04
			t.Fatalf("CalendarAnchor = %v, want %v", a, want)
		}
		if q := CalendarAnchor(abacus.IntervalQuarter, utc(2023, 12, 31, 12, 0), asuncion); !q.Equal(a) {
			t.Errorf("quarter anchor %v, want %v", q, a)
		}
		// The anchor reads 01:00 but stands for midnight: later boundaries
		// are at midnight.
		s := Schedule{Interval: abacus.IntervalMonth, Count: 1, Anchor: a, Loc: asuncion}
		wantBoundaries(t, s, -1, utc(2023, 9, 1, 4, 0), a, utc(2023, 11, 1, 3, 0), utc(2023, 12, 1, 3, 0))
	})
}

func TestCalendarAnchor(t *testing.T) {
	berlin := loadLoc(t, "Europe/Berlin")
	at := func(y int, m time.Month, d, hh int) time.Time { return local(berlin, y, m, d, hh, 0) }
	cases := []struct {
		iv   abacus.Interval
		t    time.Time
		want time.Time
	}{
		{abacus.IntervalWeek, at(2024, 5, 15, 13), at(2024, 5, 13, 0)}, // Wednesday
		{abacus.IntervalWeek, at(2024, 5, 19, 23), at(2024, 5, 13, 0)}, // Sunday
		{abacus.IntervalWeek, at(2024, 5, 13, 0), at(2024, 5, 13, 0)},  // on the boundary
		{abacus.IntervalWeek, at(2024, 5, 13, 0).Add(-1), at(2024, 5, 6, 0)},
		{abacus.IntervalWeek, at(2024, 1, 2, 0), at(2024, 1, 1, 0)},
		{abacus.IntervalWeek, at(2023, 1, 1, 0), at(2022, 12, 26, 0)}, // across the year
		{abacus.IntervalWeek, at(2024, 3, 31, 12), at(2024, 3, 25, 0)},
		{abacus.IntervalMonth, at(2024, 5, 15, 13), at(2024, 5, 1, 0)},
		{abacus.IntervalMonth, at(2024, 3, 1, 0), at(2024, 3, 1, 0)},
		{abacus.IntervalMonth, at(2024, 3, 1, 0).Add(-1), at(2024, 2, 1, 0)},
		{abacus.IntervalQuarter, at(2024, 5, 15, 13), at(2024, 4, 1, 0)},
		{abacus.IntervalQuarter, at(2024, 12, 31, 23), at(2024, 10, 1, 0)},
		{abacus.IntervalQuarter, at(2024, 4, 1, 0), at(2024, 4, 1, 0)},
		{abacus.IntervalQuarter, at(2024, 4, 1, 0).Add(-1), at(2024, 1, 1, 0)},
		{abacus.IntervalQuarter, at(2024, 7, 1, 0).Add(-1), at(2024, 4, 1, 0)},
		{abacus.IntervalYear, at(2024, 5, 15, 13), at(2024, 1, 1, 0)},
		{abacus.IntervalYear, at(2025, 1, 1, 0), at(2025, 1, 1, 0)},
		{abacus.IntervalYear, at(2025, 1, 1, 0).Add(-1), at(2024, 1, 1, 0)},
		// t in another location: the calendar is loc's. 2024-06-30 23:30
		// UTC is already July 1 in Berlin.
		{abacus.IntervalMonth, utc(2024, 6, 30, 23, 30), at(2024, 7, 1, 0)},
		{abacus.IntervalQuarter, utc(2024, 6, 30, 21, 59), at(2024, 4, 1, 0)},
		{abacus.IntervalQuarter, utc(2024, 6, 30, 22, 0), at(2024, 7, 1, 0)},
	}
	for _, c := range cases {
		got := CalendarAnchor(c.iv, c.t, berlin)
		if !got.Equal(c.want) {
			t.Errorf("CalendarAnchor(%s, %v) = %v, want %v", c.iv, c.t, got, c.want)
		}
		if got.Location() != berlin {
			t.Errorf("CalendarAnchor(%s, %v) in %v", c.iv, c.t, got.Location())
		}
	}
	// Midnight occurs twice in Havana on 2020-11-01 (a Sunday and a 1st):
	// the month starts at the first.
	havana := loadLoc(t, "America/Havana")
	for _, tt := range []time.Time{utc(2020, 11, 1, 4, 0), utc(2020, 11, 1, 4, 30), utc(2020, 11, 1, 5, 30), utc(2020, 11, 20, 0, 0)} {
		if got, want := CalendarAnchor(abacus.IntervalMonth, tt, havana), utc(2020, 11, 1, 4, 0); !got.Equal(want) {
			t.Errorf("Havana CalendarAnchor(month, %v) = %v, want %v", tt, got.UTC(), want)
		}
	}
	if got, want := CalendarAnchor(abacus.IntervalMonth, utc(2020, 11, 1, 3, 59), havana), utc(2020, 10, 1, 4, 0); !got.Equal(want) {
		t.Errorf("Havana CalendarAnchor(month, Oct 31 23:59) = %v, want %v", got.UTC(), want)
	}
}

func TestCalendarSchedule(t *testing.T) {
	// A calendar-aligned weekly schedule keeps Monday midnight through DST
	// changes in a zone that changes clocks at midnight.
	santiago := loadLoc(t, "America/Santiago")
	a := CalendarAnchor(abacus.IntervalWeek, utc(2024, 3, 1, 12, 0), santiago)
	s := Schedule{Interval: abacus.IntervalWeek, Count: 1, Anchor: a, Loc: santiago}
	prev := s.Boundary(-1)
	for k := range 60 {
		b := s.Boundary(k)
		l := b.In(santiago)
		if h, m, sec := l.Clock(); h|m|sec != 0 || l.Weekday() != time.Monday {
			t.Errorf("Boundary(%d) = %v, want Monday midnight", k, l)
		}
		if !prev.Before(b) {
			t.Errorf("Boundary(%d) = %v not after %v", k, b, prev)
		}
		if c := CalendarAnchor(abacus.IntervalWeek, b.Add(time.Hour), santiago); !c.Equal(b) {
			t.Errorf("CalendarAnchor(week, %v) = %v, want %v", b.Add(time.Hour), c, b)
		}
		prev = b
	}
}

func TestPeriodAtFarFromAnchor(t *testing.T) {
	berlin := loadLoc(t, "Europe/Berlin")
	anchor := local(berlin, 2024, 1, 31, 2, 30)
	for _, iv := range []abacus.Interval{abacus.IntervalWeek, abacus.IntervalMonth, abacus.IntervalQuarter, abacus.IntervalYear} {
		for _, count := range []int{1, 3, 7} {
			s := Schedule{Interval: iv, Count: count, Anchor: anchor, Loc: berlin}
			for _, at := range []time.Time{
				time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
				time.Date(1600, 2, 29, 12, 0, 0, 0, time.UTC),
				time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
				time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			} {
				p := s.PeriodAt(at)
				if !p.Contains(at) {
					t.Errorf("%s×%d: PeriodAt(%v) = %v does not contain it", iv, count, at, fmtPeriod(p))
				}
				if q := s.Period(p.Index); !samePeriod(p, q) {
					t.Errorf("%s×%d: PeriodAt(%v) = %v, Period(%d) = %v", iv, count, at, fmtPeriod(p), p.Index, fmtPeriod(q))
				}
			}
		}
	}
}

func TestAnchorInOtherLocation(t *testing.T) {
	tokyo := loadLoc(t, "Asia/Tokyo")
	// 2024-01-31 20:00 UTC is Feb 1 05:00 in Tokyo: the anchor day is the 1st.
	s := Schedule{Interval: abacus.IntervalMonth, Count: 1, Anchor: utc(2024, 1, 31, 20, 0), Loc: tokyo}
	wantBoundaries(t, s, 0, local(tokyo, 2024, 2, 1, 5, 0), local(tokyo, 2024, 3, 1, 5, 0))
	if s.Boundary(0).Location() != tokyo {
		t.Errorf("Boundary(0) in %v, want Tokyo", s.Boundary(0).Location())
	}
	// A fixed zone works as well as a tz database zone.
	fz := time.FixedZone("+05:45", 5*3600+45*60)
	s = Schedule{Interval: abacus.IntervalWeek, Count: 2, Anchor: utc(2024, 1, 1, 0, 0), Loc: fz}
	wantBoundaries(t, s, -1, utc(2023, 12, 18, 0, 0), utc(2024, 1, 1, 0, 0), utc(2024, 1, 15, 0, 0))
}

func TestPeriods(t *testing.T) {
	at := func(y int, m time.Month, d int) time.Time { return local(time.UTC, y, m, d, 0, 0) }
	s := Schedule{Interval: abacus.IntervalMonth, Count: 1, Anchor: at(2024, 1, 31), Loc: time.UTC}
	cases := []struct {
		from, to time.Time
		want     []int
	}{
		{at(2024, 2, 1), at(2024, 5, 1), []int{0, 1, 2, 3}},
		{at(2024, 1, 31), at(2024, 3, 31), []int{0, 1}},           // to on a boundary is excluded
		{at(2024, 1, 31), at(2024, 3, 31).Add(1), []int{0, 1, 2}}, // one nanosecond of period 2
		{at(2024, 1, 31).Add(-1), at(2024, 1, 31), []int{-1}},
		{at(2023, 11, 15), at(2024, 1, 1), []int{-3, -2, -1}},
		{at(2024, 3, 3), at(2024, 3, 4), []int{1}},
		{at(2024, 3, 3), at(2024, 3, 3), nil},
		{at(2024, 3, 4), at(2024, 3, 3), nil},
	}
	for _, c := range cases {
		got := s.Periods(c.from, c.to)
		var idx []int
		for i, p := range got {
			idx = append(idx, p.Index)
			if q := s.Period(p.Index); !samePeriod(p, q) {
				t.Errorf("Periods(%v, %v)[%d] = %v, want %v", c.from, c.to, i, fmtPeriod(p), fmtPeriod(q))
			}
		}
		if !slices.Equal(idx, c.want) {
			t.Errorf("Periods(%v, %v) indexes %v, want %v", c.from, c.to, idx, c.want)
		}
		if c.want == nil && got != nil {
			t.Errorf("Periods(%v, %v) = %v, want nil", c.from, c.to, got)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Schedule{Interval: abacus.IntervalMonth, Count: 1, Anchor: utc(2024, 1, 1, 0, 0), Loc: time.UTC}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid schedule: %v", err)
	}
	for _, iv := range []abacus.Interval{abacus.IntervalWeek, abacus.IntervalQuarter, abacus.IntervalYear} {
		s := ok
		s.Interval = iv
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", iv, err)
		}
	}
	s := ok
	s.Count = MaxCount
	if err := s.Validate(); err != nil {
		t.Errorf("count %d: %v", MaxCount, err)
	}
	bad := []struct {
		name string
		edit func(*Schedule)
		want string
	}{
		{"interval", func(s *Schedule) { s.Interval = "day" }, `unknown interval "day"`},
		{"empty interval", func(s *Schedule) { s.Interval = "" }, "unknown interval"},
		{"count 0", func(s *Schedule) { s.Count = 0 }, "count 0 out of range"},
		{"count -1", func(s *Schedule) { s.Count = -1 }, "count -1 out of range"},
		{"count big", func(s *Schedule) { s.Count = MaxCount + 1 }, "count 1001 out of range"},
		{"anchor", func(s *Schedule) { s.Anchor = time.Time{} }, "missing anchor"},
		{"loc", func(s *Schedule) { s.Loc = nil }, "missing time zone"},
	}
	for _, b := range bad {
		s := ok
		b.edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: Validate() = %v, want %q", b.name, err, b.want)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: PeriodAt did not panic", b.name)
				}
			}()
			s.PeriodAt(utc(2024, 1, 1, 0, 0))
		}()
	}
	if err := (Schedule{}).Validate(); err == nil || strings.Count(err.Error(), "\n") != 3 {
		t.Errorf("zero Schedule: %v, want all four problems", err)
	}
}

func BenchmarkPeriodAt(b *testing.B) {
	berlin := loadLoc(b, "Europe/Berlin")
	for _, iv := range []abacus.Interval{abacus.IntervalWeek, abacus.IntervalMonth} {
		s := Schedule{Interval: iv, Count: 1, Anchor: local(berlin, 2019, 1, 31, 2, 30), Loc: berlin}
		b.Run(string(iv), func(b *testing.B) {
			// Instants spread over 2015..2035, far from the anchor on both sides.
			ts := make([]time.Time, 1024)
			step := 20 * 365 * 24 * time.Hour / time.Duration(len(ts))
			for i := range ts {
				ts[i] = utc(2015, 1, 1, 0, 0).Add(time.Duration(i) * step)
			}
			for i := 0; b.Loop(); i++ {
				p := s.PeriodAt(ts[i%len(ts)])
				if p.Start.IsZero() {
					b.Fatal("zero")
				}
			}
		})
	}
}
