package quota

import (
	"fmt"
	"time"
)

// period is when a limit's usage starts again: a calendar day, ISO week
// or month in a time zone, or a rolling window.
type period struct {
	// kind is "day", "week", "month" or "window".
	kind string
	loc  *time.Location
	// window is the rolling window's length, bucket the length of the
	// slices its usage is counted in (window / windowBuckets, at least a
	// second); zero for calendar periods.
	window, bucket time.Duration
}

// windowBuckets is how many slices a rolling window is counted in: its
// usage is the sum of the current slice and the buckets()-1 before it, so
// a slice stops counting once its start is more than the window ago
// (usage covers the window less at most one slice) and usage falls back
// in steps of window/windowBuckets.
const windowBuckets = 60

// newPeriod makes a calendar period (day, week, month) in loc, or, with
// kind "window", a rolling window of length w.
func newPeriod(kind string, loc *time.Location, w time.Duration) (period, error) {
	switch kind {
	case "day", "week", "month":
		return period{kind: kind, loc: loc}, nil
	case "window":
		if w < time.Minute {
			return period{}, fmt.Errorf("must be at least 1m, got %v", w)
		}
		b := max((w / windowBuckets).Truncate(time.Second), time.Second)
		return period{kind: kind, window: w, bucket: b}, nil
	}
	return period{}, fmt.Errorf(`unknown period %q: want "day", "week" or "month"`, kind)
}

// slot is the span of the counter that t adds to: the calendar period
// that holds t, or the window's bucket that does. Calendar days start at
// midnight in the zone (time.Date normalises a midnight that a DST change
// skips), weeks on Monday (ISO 8601), months on the 1st.
func (p period) slot(t time.Time) (start, end time.Time) {
	if p.kind == "window" {
		b := int64(p.bucket / time.Second)
		s := t.Unix() / b * b
		return time.Unix(s, 0), time.Unix(s+b, 0)
	}
	y, m, d := t.In(p.loc).Date()
	switch p.kind {
	case "week":
		back := (int(time.Date(y, m, d, 12, 0, 0, 0, p.loc).Weekday()) + 6) % 7
		return time.Date(y, m, d-back, 0, 0, 0, 0, p.loc), time.Date(y, m, d-back+7, 0, 0, 0, 0, p.loc)
	case "month":
		return time.Date(y, m, 1, 0, 0, 0, 0, p.loc), time.Date(y, m+1, 1, 0, 0, 0, 0, p.loc)
	}
	return time.Date(y, m, d, 0, 0, 0, 0, p.loc), time.Date(y, m, d+1, 0, 0, 0, 0, p.loc)
}

// expires is when the store may forget a slot ending at end: at the end
// of a calendar period, once it has left the window for a bucket.
func (p period) expires(end time.Time) time.Time {
	return end.Add(p.window)
}

// buckets is the number of slots a usage sums: 1, or windowBuckets
// (window / bucket) for a window.
func (p period) buckets() int {
	if p.kind != "window" {
		return 1
	}
	return int((p.window + p.bucket - 1) / p.bucket)
}
