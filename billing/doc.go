// Package billing computes when things are billed: the billing periods of a
// subscription.
//
// A Schedule describes a cadence (every Count weeks, months, quarters or
// years) pinned to an anchor instant and a time zone. Its period boundaries
// are defined on the customer's local calendar, not on elapsed time: a
// monthly subscription anchored on Jan 31 renews on Feb 29 (or 28), Mar 31,
// Apr 30, ..., and a weekly one renews at the same local clock time every
// seventh day, even across a daylight saving change (such a week lasts 167
// or 169 hours).
//
// Every boundary is computed directly from the anchor's local date and
// clock time, never from the previous boundary, so short months do not
// make the anchor day drift (Jan 31 → Feb 28 → Mar 28 is the classic bug).
//
// Daylight saving transitions make some local clock times happen twice and
// others not at all. The package resolves both the same way: a boundary is
// the first instant at which the local clock reads the nominal date and
// time or later. A nominal time that occurs twice (clocks set back) is the
// first occurrence; a nominal time that does not exist (clocks set forward)
// is the instant the clock jumps past it, the end of the gap. This rule is
// independent of the sign of the zone's offset, unlike time.Date, which
// moves a nonexistent time forward east of Greenwich but backward west of
// it (00:00 on 2024-09-08 in America/Santiago comes out as 23:00 on
// Sep 7, a period starting on the wrong day).
package billing
