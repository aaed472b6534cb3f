package quota

import (
	"testing"
	"time"
)

func TestPeriodSlot(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	at := func(loc *time.Location, s string) time.Time {
		t.Helper()
		v, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name       string
		kind       string
		loc        *time.Location
		window     time.Duration
		t          string
		start, end string // in loc
		length     time.Duration
	}{
		{name: "day", kind: "day", loc: time.UTC, t: "2030-03-10 13:00:00", start: "2030-03-10 00:00:00", end: "2030-03-11 00:00:00", length: 24 * time.Hour},
		{name: "day at midnight", kind: "day", loc: time.UTC, t: "2030-03-10 00:00:00", start: "2030-03-10 00:00:00", end: "2030-03-11 00:00:00"},
		{name: "day a nanosecond before midnight", kind: "day", loc: berlin, t: "2030-03-10 23:59:59", start: "2030-03-10 00:00:00", end: "2030-03-11 00:00:00"},
		{name: "day of spring forward is 23h", kind: "day", loc: berlin, t: "2030-03-31 12:00:00", start: "2030-03-31 00:00:00", end: "2030-04-01 00:00:00", length: 23 * time.Hour},
		{name: "day of fall back is 25h", kind: "day", loc: berlin, t: "2030-10-27 12:00:00", start: "2030-10-27 00:00:00", end: "2030-10-28 00:00:00", length: 25 * time.Hour},
		{name: "new york day across DST", kind: "day", loc: ny, t: "2030-03-10 01:30:00", start: "2030-03-10 00:00:00", end: "2030-03-11 00:00:00", length: 23 * time.Hour},
		{name: "week starts on Monday", kind: "week", loc: time.UTC, t: "2030-03-10 13:00:00", start: "2030-03-04 00:00:00", end: "2030-03-11 00:00:00"},
		{name: "week on a Monday", kind: "week", loc: time.UTC, t: "2030-03-11 00:00:00", start: "2030-03-11 00:00:00", end: "2030-03-18 00:00:00"},
		{name: "week across a year", kind: "week", loc: berlin, t: "2031-01-01 08:00:00", start: "2030-12-30 00:00:00", end: "2031-01-06 00:00:00"},
		{name: "month", kind: "month", loc: berlin, t: "2030-02-28 23:00:00", start: "2030-02-01 00:00:00", end: "2030-03-01 00:00:00"},
		{name: "december", kind: "month", loc: time.UTC, t: "2030-12-31 23:59:59", start: "2030-12-01 00:00:00", end: "2031-01-01 00:00:00"},
		{name: "zone decides the day", kind: "day", loc: berlin, t: "2030-03-10 00:30:00", start: "2030-03-10 00:00:00", end: "2030-03-11 00:00:00"},
		{name: "window bucket", kind: "window", loc: time.UTC, window: time.Hour, t: "2030-03-10 13:00:30", start: "2030-03-10 13:00:00", end: "2030-03-10 13:01:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newPeriod(tt.kind, tt.loc, tt.window)
			if err != nil {
				t.Fatal(err)
			}
			start, end := p.slot(at(tt.loc, tt.t))
			if want := at(tt.loc, tt.start); !start.Equal(want) {
				t.Errorf("start %v, want %v", start.In(tt.loc), want)
			}
			if want := at(tt.loc, tt.end); !end.Equal(want) {
				t.Errorf("end %v, want %v", end.In(tt.loc), want)
			}
			if tt.length != 0 && end.Sub(start) != tt.length {
				t.Errorf("length %v, want %v", end.Sub(start), tt.length)
			}
		})
	}
}

func TestPeriodWindow(t *testing.T) {
	tests := []struct {
		window  time.Duration
		bucket  time.Duration
		buckets int
		err     bool
	}{
		{window: time.Hour, bucket: time.Minute, buckets: 60},
		{window: time.Minute, bucket: time.Second, buckets: 60},
		{window: 90 * time.Second, bucket: time.Second, buckets: 90},
		{window: 24 * time.Hour, bucket: 24 * time.Minute, buckets: 60},
		{window: 30 * time.Second, err: true},
	}
	for _, tt := range tests {
		p, err := newPeriod("window", time.UTC, tt.window)
		if (err != nil) != tt.err {
			t.Fatalf("window %v: error %v, want one: %v", tt.window, err, tt.err)
		}
		if err == nil && (p.bucket != tt.bucket || p.buckets() != tt.buckets) {
			t.Errorf("window %v: bucket %v x %d, want %v x %d", tt.window, p.bucket, p.buckets(), tt.bucket, tt.buckets)
		}
	}
}
