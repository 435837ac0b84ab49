package billing

import (
	"errors"
	"fmt"
	"time"

	"github.com/abacus-billing/abacus"
)

// MaxCount is the largest Schedule.Count Validate accepts. It is far beyond
// any real cadence (1000 years at most) and keeps index arithmetic away from
// overflow.
const MaxCount = 1000

// Schedule is a subscription's billing cadence: periods of Count × Interval,
// whose boundaries are Anchor's local date advanced by whole intervals in
// Loc, at Anchor's local clock time, with the day of month clamped to the
// month's length (an anchor on Jan 31 gives Feb 28/29, Mar 31, Apr 30, ...:
// the anchor day is kept, not drifted). A quarter is 3 months and a year 12;
// a week is 7 local calendar days, whatever its length in hours.
//
// Anchor is an instant; only its reading on Loc's clock matters, so it may
// be expressed in any location. It is itself a boundary (Boundary(0)), and
// the others are resolved by the package's rule for daylight saving
// transitions (see the package documentation): the first instant at which
// the local clock reads the nominal date and time or later. So a boundary
// whose clock time falls in a gap moves to the end of the gap, for that
// boundary only, and one whose clock time occurs twice is the first
// occurrence. An Anchor that is the first instant of a local day that began
// late, because a gap swallowed midnight (as CalendarAnchor returns in such
// zones), counts as midnight, so the other boundaries stay at midnight.
//
// The zero Schedule is invalid; the methods other than Validate panic on an
// invalid Schedule, as they have no meaningful answer to return.
type Schedule struct {
	Interval abacus.Interval // week, month, quarter, year
	Count    int             // >= 1
	Anchor   time.Time       // one period boundary
	Loc      *time.Location
}

// Validate reports whether the schedule can be used: a known Interval, a
// Count from 1 to MaxCount, a non-zero Anchor and a non-nil Loc.
func (s Schedule) Validate() error {
	var errs []error
	if _, _, ok := intervalUnit(s.Interval); !ok {
		errs = append(errs, fmt.Errorf("billing schedule: unknown interval %q (want week, month, quarter or year)", s.Interval))
	}
	if s.Count < 1 || s.Count > MaxCount {
		errs = append(errs, fmt.Errorf("billing schedule: interval count %d out of range 1..%d", s.Count, MaxCount))
	}
	if s.Anchor.IsZero() {
		errs = append(errs, errors.New("billing schedule: missing anchor"))
	}
	if s.Loc == nil {
		errs = append(errs, errors.New("billing schedule: missing time zone"))
	}
	return errors.Join(errs...)
}

// intervalUnit returns the length of one interval in months, or in days for
// a week (months == 0).
func intervalUnit(iv abacus.Interval) (months, days int, ok bool) {
	switch iv {
	case abacus.IntervalWeek:
		return 0, 7, true
	case abacus.IntervalMonth:
		return 1, 0, true
	case abacus.IntervalQuarter:
		return 3, 0, true
	case abacus.IntervalYear:
		return 12, 0, true
	}
	return 0, 0, false
}

// Period is the half-open interval [Start, End) of a schedule's period
// Index: Start = Boundary(Index), End = Boundary(Index+1). Index 0 starts
// at the anchor; periods before the anchor have negative indexes.
type Period struct {
	Index      int
	Start, End time.Time
}

// Contains reports whether t lies in the period: Start <= t < End.
func (p Period) Contains(t time.Time) bool {
	return !t.Before(p.Start) && t.Before(p.End)
}

// cadence is a valid Schedule unpacked for arithmetic: the anchor's nominal
// local date and clock time and the period length.
type cadence struct {
	anchor               time.Time // in loc
	loc                  *time.Location
	year                 int
	month                time.Month
	day                  int
	hour, min, sec, nsec int
	months, days         int   // period length: months, or days (weeks)
	anchorDay            int64 // civilDay of the anchor date (weeks only)
}

// cadence validates s and unpacks it; it panics if s is invalid.
func (s Schedule) cadence() cadence {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	months, days, _ := intervalUnit(s.Interval)
	a := s.Anchor.In(s.Loc)
	c := cadence{anchor: a, loc: s.Loc, months: months * s.Count, days: days * s.Count}
	c.year, c.month, c.day = a.Date()
	c.hour, c.min, c.sec = a.Clock()
	c.nsec = a.Nanosecond()
	if c.hour|c.min|c.sec|c.nsec != 0 {
		// If the local day began late at a, in a gap that swallowed
		// midnight, the anchor is that day's midnight. Only a zone change
		// can start a day, so most anchors skip the second test.
		if offsetAt(a.Add(-1), s.Loc) != offsetAt(a, s.Loc) &&
			firstAtOrAfter(time.Date(c.year, c.month, c.day, 0, 0, 0, 0, time.UTC), s.Loc).Equal(a) {
			c.hour, c.min, c.sec, c.nsec = 0, 0, 0, 0
		}
	}
	if c.months == 0 {
		c.anchorDay = civilDay(c.year, c.month, c.day)
	}
	return c
}

// nominal returns the local date and clock time of boundary k, as a
// time.Time in UTC that stands for a reading of the local clock.
func (c *cadence) nominal(k int) time.Time {
	if c.months == 0 {
		// time.Date normalises the day overflow on the proleptic calendar;
		// UTC has no transitions, so nothing else moves.
		return time.Date(c.year, c.month, c.day+k*c.days, c.hour, c.min, c.sec, c.nsec, time.UTC)
	}
	m := int(c.month-1) + k*c.months
	y := c.year + floorDiv(m, 12)
	mon := time.Month(m - floorDiv(m, 12)*12 + 1)
	return time.Date(y, mon, min(c.day, daysIn(y, mon)), c.hour, c.min, c.sec, c.nsec, time.UTC)
}

// boundary returns boundary k (see Schedule.Boundary).
func (c *cadence) boundary(k int) time.Time {
	if k == 0 {
		return c.anchor
	}
	return firstAtOrAfter(c.nominal(k), c.loc)
}

// Boundary returns the k-th boundary of the schedule (k may be negative):
// the first instant at which Loc's clock reads the anchor's local date
// advanced by k × Count intervals (the day clamped to the month's length),
// at the anchor's clock time, or later. Boundary(0) is the Anchor itself.
//
// Boundaries are instants expressed in Loc, so that their Date is the local
// billing date; compare them with Equal (== also compares the location),
// and convert them with UTC before storing them if the store cares.
func (s Schedule) Boundary(k int) time.Time {
	c := s.cadence()
	return c.boundary(k)
}

// Period returns period k: [Boundary(k), Boundary(k+1)).
func (s Schedule) Period(k int) Period {
	c := s.cadence()
	return Period{Index: k, Start: c.boundary(k), End: c.boundary(k + 1)}
}

// PeriodAt returns the period containing t (Start <= t < End), for any t,
// before or after the anchor. It takes constant time: the index is
// estimated from the calendar distance between the anchor and t, then
// corrected by comparing instants, which the DST rule can only make off by
// one.
func (s Schedule) PeriodAt(t time.Time) Period {
	c := s.cadence()
	return c.periodAt(t)
}

func (c *cadence) periodAt(t time.Time) Period {
	// Estimate k from t's local reading: the number of whole periods
	// between the anchor's nominal date and t's date, minus one if t's date
	// is a nominal boundary date but t reads before the boundary's clock
	// time. The estimate is exact but where DST moved the boundary.
	lt := t.In(c.loc)
	y, m, d := lt.Date()
	var k, rem, bday int
	if c.months == 0 {
		elapsed := civilDay(y, m, d) - c.anchorDay
		k = floorDiv64(elapsed, int64(c.days))
		rem = int(elapsed - int64(k)*int64(c.days))
		bday = d
	} else {
		elapsed := (y-c.year)*12 + int(m-c.month)
		k = floorDiv(elapsed, c.months)
		rem = elapsed - k*c.months
		bday = min(c.day, daysIn(y, m))
	}
	if rem == 0 && c.readsBefore(lt, d, bday) {
		k--
	}
	start, end := c.boundary(k), c.boundary(k+1)
	for t.Before(start) {
		k--
		start, end = c.boundary(k), start
	}
	for !t.Before(end) {
		k++
		start, end = end, c.boundary(k+1)
	}
	return Period{Index: k, Start: start, End: end}
}

// readsBefore reports whether lt, read on day d of its month, reads before
// the anchor's clock time on day bday.
func (c *cadence) readsBefore(lt time.Time, d, bday int) bool {
	if d != bday {
		return d < bday
	}
	h, mi, sec := lt.Clock()
	switch {
	case h != c.hour:
		return h < c.hour
	case mi != c.min:
		return mi < c.min
	case sec != c.sec:
		return sec < c.sec
	}
	return lt.Nanosecond() < c.nsec
}

// Periods returns, in order, the periods that overlap [from, to): the
// period containing from, through the one containing the last instant
// before to. It returns nil if to is not after from. The result has one
// element per period in the range, so the caller bounds the range.
func (s Schedule) Periods(from, to time.Time) []Period {
	if !from.Before(to) {
		return nil
	}
	c := s.cadence()
	p := c.periodAt(from)
	var out []Period
	for p.Start.Before(to) {
		out = append(out, p)
		p = Period{Index: p.Index + 1, Start: p.End, End: c.boundary(p.Index + 2)}
	}
	return out
}

// CalendarAnchor returns the latest calendar boundary at or before t in
// loc: the start of the local day of Monday (week), of the 1st of the month
// (month), of Jan/Apr/Jul/Oct 1 (quarter) or of Jan 1 (year). The start of a
// day is normally midnight; on a day whose midnight fell in a daylight
// saving gap it is the end of the gap (01:00 in America/Santiago on
// 2024-09-08), and where midnight occurs twice it is the first occurrence.
//
// It is the anchor of a calendar-aligned Schedule. It panics on an unknown
// interval or a nil loc.
func CalendarAnchor(iv abacus.Interval, t time.Time, loc *time.Location) time.Time {
	lt := t.In(loc)
	y, m, d := lt.Date()
	var ny, nd int
	var nm time.Month
	switch iv {
	case abacus.IntervalWeek:
		d -= (int(lt.Weekday()) + 6) % 7 // days since Monday
		ny, nm, nd = y, m, d+7
	case abacus.IntervalMonth:
		d = 1
		ny, nm, nd = y, m+1, 1
	case abacus.IntervalQuarter:
		m, d = (m-1)/3*3+1, 1
		ny, nm, nd = y, m+3, 1
	case abacus.IntervalYear:
		m, d = time.January, 1
		ny, nm, nd = y+1, time.January, 1
	default:
		panic(fmt.Sprintf("billing: unknown interval %q", iv))
	}
	// t reads at or after the boundary's date, so the first instant that
	// does is not after t. Only where clocks go back across midnight can t
	// read a date before a boundary that has passed: then that is the one.
	if next := firstAtOrAfter(time.Date(ny, nm, nd, 0, 0, 0, 0, time.UTC), loc); !t.Before(next) {
		return next
	}
	return firstAtOrAfter(time.Date(y, m, d, 0, 0, 0, 0, time.UTC), loc)
}

// probe is the spacing of the offset samples firstAtOrAfter takes on
// either side of a wall time. Two samples 2×probe apart bracket every
// instant whose clock can read the wall time (UTC offsets in the tz
// database stay within about ±15h, and a gap lasts at most a few hours),
// and no zone changes its offset twice within probe: since 1900 the
// closest changes in the tz database are four days apart.
const probe = 26 * time.Hour

// offsetAt returns loc's UTC offset at instant u.
func offsetAt(u time.Time, loc *time.Location) time.Duration {
	_, off := u.In(loc).Zone()
	return time.Duration(off) * time.Second
}

// firstAtOrAfter returns the first instant at which loc's clock reads wall
// (a local date and time held in a UTC time.Time) or later, expressed in
// loc.
//
// It samples the offset probe before, at and probe after wall read as an
// instant, and locates any change between samples by bisection. Between
// changes the clock runs continuously, so the answer lies in the first
// span of constant offset whose clock reaches wall: at wall minus the
// span's offset, or at the start of the span if the clock jumped over wall
// there. It relies on offsets only, not on Time.ZoneBounds, whose bounds
// are wrong in years served by a zone's POSIX TZ rule (golang/go#81583:
// an end before the instant on Dec 31 of leap years).
func firstAtOrAfter(wall time.Time, loc *time.Location) time.Time {
	from := wall.Add(-probe)
	offs := [3]time.Duration{offsetAt(from, loc), offsetAt(wall, loc), offsetAt(wall.Add(probe), loc)}
	if offs[0] == offs[1] && offs[1] == offs[2] {
		return wall.Add(-offs[0]).In(loc)
	}
	// Walk the spans of constant offset from `from`, whose clock reads
	// earlier than wall (offsets are below probe).
	off := offs[0]
	for i := 1; i < len(offs); i++ {
		if offs[i] == off {
			continue
		}
		change := nextOffsetChange(from.Add(time.Duration(i-1)*probe), from.Add(time.Duration(i)*probe), loc)
		if c := wall.Add(-off); c.Before(change) {
			return c.In(loc) // the span before change reaches wall
		}
		off = offs[i]
		if !change.Add(off).Before(wall) {
			return change.In(loc) // the clock jumped over wall at change
		}
	}
	return wall.Add(-off).In(loc)
}

// nextOffsetChange returns the instant in (a, b] at which loc's offset,
// which differs at a and b, changes (once, by the assumption of probe).
// Offsets change on whole seconds, so it bisects on Unix seconds.
func nextOffsetChange(a, b time.Time, loc *time.Location) time.Time {
	offA := offsetAt(a, loc)
	lo, hi := a.Unix(), b.Unix() // offset at lo is offA, at hi it is not
	if b.Nanosecond() != 0 {
		hi++ // b itself is past the change; so is the next whole second
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if offsetAt(time.Unix(mid, 0), loc) == offA {
			lo = mid
		} else {
			hi = mid
		}
	}
	return time.Unix(hi, 0)
}

// daysIn returns the number of days of month m of year y (proleptic
// Gregorian).
func daysIn(y int, m time.Month) int {
	switch m {
	case time.February:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// civilDay numbers the date y-m-d consecutively (days since 1970-01-01).
func civilDay(y int, m time.Month, d int) int64 {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / (24 * 60 * 60)
}

// floorDiv returns ⌊a/b⌋ for b > 0.
func floorDiv(a, b int) int {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

func floorDiv64(a, b int64) int {
	q := a / b
	if a%b < 0 {
		q--
	}
	return int(q)
}

// AddDays returns the instant days calendar days after t in loc, at t's
// local clock time, placed by the same rule as period boundaries: the first
// instant at which the local clock reads that date and time or later (a
// time skipped by a DST change becomes the end of the skipped hour). Trials
// end this way.
func AddDays(t time.Time, days int, loc *time.Location) time.Time {
	l := t.In(loc)
	wall := time.Date(l.Year(), l.Month(), l.Day()+days, l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
	return firstAtOrAfter(wall, loc)
}
