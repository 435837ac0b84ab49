package usage

import (
	"fmt"
	"time"
)

// Window sizes of a usage query.
const (
	WindowMinute = "minute"
	WindowHour   = "hour"
	WindowDay    = "day"
	WindowMonth  = "month"
	WindowNone   = "none"
)

// windows tiles [from, to) into windows of the given size in loc.
//
// Minutes and hours are whole units of local wall time measured with the
// offset in force at their start, so across a DST change every real hour is
// one window (the repeated hour of autumn appears twice, the skipped hour of
// spring not at all), and in zones with a 30- or 45-minute offset hours start
// at local :00. Days and months start at local midnight (a DST day is 23 or
// 25 hours long). The first and last windows are cut to [from, to).
func windows(from, to time.Time, size string, loc *time.Location) ([]window, error) {
	if !from.Before(to) {
		return nil, nil
	}
	var out []window
	for start := from; start.Before(to); {
		end, err := nextBoundary(start, size, loc)
		if err != nil {
			return nil, err
		}
		if end.After(to) {
			end = to
		}
		out = append(out, window{start: start, end: end})
		start = end
		if len(out) > MaxWindows {
			return nil, fmt.Errorf("more than %d windows; use a larger window or a shorter range", MaxWindows)
		}
	}
	return out, nil
}

// MaxWindows bounds the windows of one query.
const MaxWindows = 50000

type window struct{ start, end time.Time }

func nextBoundary(t time.Time, size string, loc *time.Location) (time.Time, error) {
	switch size {
	case WindowNone:
		return time.Unix(1<<62, 0), nil
	case WindowMinute:
		return nextFixed(t, time.Minute, loc), nil
	case WindowHour:
		return nextFixed(t, time.Hour, loc), nil
	case WindowDay:
		l := t.In(loc)
		return time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, loc), nil
	case WindowMonth:
		l := t.In(loc)
		return time.Date(l.Year(), l.Month()+1, 1, 0, 0, 0, 0, loc), nil
	}
	return time.Time{}, fmt.Errorf("unknown window %q", size)
}

// nextFixed returns the first local-wall-clock multiple of unit after t,
// using the UTC offset in force at t.
func nextFixed(t time.Time, unit time.Duration, loc *time.Location) time.Time {
	_, off := t.In(loc).Zone()
	local := t.Add(time.Duration(off) * time.Second)
	next := local.Truncate(unit).Add(unit)
	b := next.Add(-time.Duration(off) * time.Second)
	// An offset change inside (t, b) (a DST switch at a non-unit boundary is
	// impossible for real zones, but an offset change at b is common) is
	// handled because the next window recomputes the offset at its start.
	return b
}
