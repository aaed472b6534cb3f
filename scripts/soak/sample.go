package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ferry/test/testkit"
)

// sample is one reading of ferry and of the driver's counts.
type sample struct {
	t        time.Duration // since the load started (negative: the baseline)
	phase    string        // base | load | settle | after
	rssKiB   int64         // VmRSS of /proc/PID/status
	fds      int64         // entries of /proc/PID/fd
	gor      int64         // go_goroutines
	heap     int64         // go_memstats_heap_inuse_bytes
	active   int64         // ferry_connections_active, all listeners
	channels int64         // entries of GET /channels
	parked   int64         // ferry_copies_parked: copy directions waiting without a goroutine
	refused  int64         // ferry_connections_refused_total: closed at once by a limit
	ticks    int64         // utime+stime of /proc/PID/stat, in clock ticks
	cpu      float64       // percent of a core since the previous sample
	ok, exp  int64
	unexp    int64
}

// prober reads ferry: /proc for the process, the admin service for the
// rest, over one keep-alive connection (counted in the baseline).
type prober struct {
	pid   int
	admin string // http://host:port
	hc    *http.Client
}

func newProber(pid int, admin string) *prober {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
	return &prober{pid: pid, admin: "http://" + admin, hc: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// read takes a sample; an error means ferry is gone or not answering.
func (p *prober) read() (sample, error) {
	var s sample
	rss, err := testkit.StatusKiB(fmt.Sprintf("/proc/%d/status", p.pid), "VmRSS")
	if err != nil {
		return s, fmt.Errorf("ferry (pid %d) is gone: %w", p.pid, err)
	}
	s.rssKiB = rss
	if s.ticks, err = testkit.CPUTicks(p.pid); err != nil {
		return s, fmt.Errorf("ferry (pid %d) is gone: %w", p.pid, err)
	}
	if s.fds, err = testkit.CountFDs(p.pid); err != nil {
		return s, fmt.Errorf("ferry (pid %d) is gone: %w", p.pid, err)
	}
	m, err := p.metrics()
	if err != nil {
		return s, err
	}
	s.gor, s.heap, s.active = int64(m["go_goroutines"]), int64(m["go_memstats_heap_inuse_bytes"]), int64(m["ferry_connections_active"])
	s.parked, s.refused = int64(m["ferry_copies_parked"]), int64(m["ferry_connections_refused_total"])
	if s.channels, err = p.channels(); err != nil {
		return s, err
	}
	return s, nil
}

// metrics scrapes /metrics and sums each metric over its labels.
func (p *prober) metrics() (map[string]float64, error) {
	resp, err := p.hc.Get(p.admin + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("admin /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("admin /metrics: status %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 0; sc.Scan() && n < 1e6; n++ {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil || math.IsNaN(v) {
			continue
		}
		out[name] += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("admin /metrics: %w", err)
	}
	return out, nil
}

// channels counts the live channels of GET /channels.
func (p *prober) channels() (int64, error) {
	resp, err := p.hc.Get(p.admin + "/channels")
	if err != nil {
		return 0, fmt.Errorf("admin /channels: %w", err)
	}
	defer resp.Body.Close()
	var list []json.RawMessage
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&list); err != nil {
		return 0, fmt.Errorf("admin /channels: %w", err)
	}
	return int64(len(list)), nil
}

// clockTick is USER_HZ, the unit of utime and stime.
var clockTick = float64(testkit.ClockTicks)

func (s sample) String() string {
	return fmt.Sprintf("%6s %-6s rss %5.1f MiB  heap %5.1f MiB  goroutines %5d  fds %5d  active %4d  channels %4d  parked %4d  cpu %3.0f%% | ok %7d  expected %6d  unexpected %d",
		fmtDur(s.t), s.phase, float64(s.rssKiB)/1024, float64(s.heap)/(1<<20), s.gor, s.fds, s.active, s.channels, s.parked, s.cpu, s.ok, s.exp, s.unexp)
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDur(-d)
	}
	d = d.Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// series is one quantity judged for flatness.
type series struct {
	name  string
	unit  string
	scale float64 // divides the raw value for display
	slack float64 // growth (in display units) under which it is flat whatever its share
	get   func(sample) int64
}

var allSeries = []series{
	{"rss", "MiB", 1024, 4, func(s sample) int64 { return s.rssKiB }},
	{"heap in use", "MiB", 1 << 20, 4, func(s sample) int64 { return s.heap }},
	{"goroutines", "", 1, 20, func(s sample) int64 { return s.gor }},
	{"fds", "", 1, 20, func(s sample) int64 { return s.fds }},
}

// trend compares the first and the last quarter of the samples after
// the warm-up.
type trend struct {
	s                  series
	first, last        float64 // averages, display units
	perMin             float64 // (last - first) / minutes between the quarters' mid-times
	growing            bool    // grew by more than the slack and 10%
	fromT, toT         time.Duration
	firstEnd, lastFrom time.Duration
}

// trends judges the samples of the load phase from warm on; ok is false
// when there are too few for quarters.
func trends(load []sample, warm time.Duration) (out []trend, ok bool) {
	var xs []sample
	for _, s := range load {
		if s.t >= warm {
			xs = append(xs, s)
		}
	}
	if len(xs) < 4 {
		return nil, false
	}
	q := len(xs) / 4
	first, last := xs[:q], xs[len(xs)-q:]
	midT := func(ss []sample) float64 {
		var t float64
		for _, s := range ss {
			t += s.t.Minutes()
		}
		return t / float64(len(ss))
	}
	minutes := midT(last) - midT(first)
	for _, se := range allSeries {
		avg := func(ss []sample) float64 {
			var v float64
			for _, s := range ss {
				v += float64(se.get(s))
			}
			return v / float64(len(ss)) / se.scale
		}
		t := trend{s: se, first: avg(first), last: avg(last),
			fromT: first[0].t, firstEnd: first[len(first)-1].t, lastFrom: last[0].t, toT: last[len(last)-1].t}
		if minutes > 0 {
			t.perMin = (t.last - t.first) / minutes
		}
		g := t.last - t.first
		t.growing = g > se.slack && g > 0.1*t.first
		out = append(out, t)
	}
	return out, true
}
