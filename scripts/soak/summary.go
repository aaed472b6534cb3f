package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// summary prints what the run found and its result: 0 PASS, 1 FAIL.
func (s *soak) summary() int {
	c, base, load := s.cfg, s.base, s.load
	fmt.Printf("\n== summary: %v of load, %d samples every %v; the first %v are warm-up\n",
		c.duration, len(load), c.interval, fmtDur(time.Duration(c.warmup*float64(c.duration))))
	if len(load) > 0 {
		l := load[len(load)-1]
		sec := float64(l.ticks-base.ticks) / clockTick
		fmt.Printf("ferry CPU: %.1f s over %v of load, %.0f%% of a core on average; peak RSS %.1f MiB\n",
			sec, fmtDur(l.t), 100*sec/l.t.Seconds(), float64(peakRSS(load))/1024)
	}
	growing := s.printFlatness()
	s.printSettled()
	if s.alive && s.last.refused > base.refused {
		fmt.Printf("ferry refused %d connections at once (ferry_connections_refused_total: a [limits] cap or max_connections)\n", s.last.refused-base.refused)
	}
	s.d.printOperations()
	if n := s.d.nUnexpected.Load(); n > 0 {
		s.problems = append(s.problems, fmt.Sprintf("%d unexpected outcomes", n))
	}
	if len(growing) > 0 {
		msg := "grew under load: " + strings.Join(growing, ", ")
		if c.strict {
			s.problems = append(s.problems, msg)
		} else {
			fmt.Println("warning: " + msg + " (not a failure without -strict)")
		}
	}
	if len(s.problems) > 0 {
		fmt.Println("result: FAIL: " + strings.Join(s.problems, "; "))
		return 1
	}
	fmt.Println("result: PASS")
	return 0
}

// printFlatness compares the first and last quarters of the samples
// after the warm-up and returns the names of the quantities that grew.
func (s *soak) printFlatness() []string {
	c, base := s.cfg, s.base
	growing := []string{}
	ts, ok := trends(s.load, time.Duration(c.warmup*float64(c.duration)))
	if !ok {
		fmt.Println("flatness: too few samples after the warm-up to compare quarters (run longer or sample more often)")
		return growing
	}
	t0 := ts[0]
	fmt.Printf("flatness: first quarter %s-%s against last quarter %s-%s (averages)\n",
		fmtDur(t0.fromT), fmtDur(t0.firstEnd), fmtDur(t0.lastFrom), fmtDur(t0.toT))
	fmt.Printf("  %-12s %10s %10s %10s %12s  %s\n", "", "baseline", "first q", "last q", "growth/min", "verdict")
	for _, t := range ts {
		verdict := "flat"
		if t.growing {
			verdict = "GROWING"
			growing = append(growing, t.s.name)
		}
		name := t.s.name
		if t.s.unit != "" {
			name += " " + t.s.unit
		}
		fmt.Printf("  %-12s %10.1f %10.1f %10.1f %+12.2f  %s\n", name, float64(t.s.get(base))/t.s.scale, t.first, t.last, t.perMin, verdict)
	}
	return growing
}

// printSettled says whether ferry came back to its baseline after the
// load, if it was still there.
func (s *soak) printSettled() {
	if !s.alive {
		return
	}
	c, base, last := s.cfg, s.base, s.last
	word := "settled"
	if !s.settled {
		word = "NOT SETTLED"
		s.problems = append(s.problems, fmt.Sprintf("ferry did not come back to its baseline within %v of the load's end", c.settle))
	}
	fmt.Printf("after the load: %s in %v: goroutines %d (baseline %d, slack %d), fds %d (baseline %d, slack %d), active %d, channels %d, rss %.1f MiB (baseline %.1f)\n",
		word, s.settleTook.Round(100*time.Millisecond), last.gor, base.gor, c.gorSlack, last.fds, base.fds, c.fdSlack,
		last.active, last.channels, float64(last.rssKiB)/1024, float64(base.rssKiB)/1024)
}

// printOperations prints the driver's counts, the short tunnels'
// latencies, the outcomes by scenario and by path, and the first
// unexpected outcomes.
func (d *driver) printOperations() {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Printf("operations: %d ok, %d failed as expected, %d unexpected; %d paced starts skipped (all slots busy)\n",
		d.nOK.Load(), d.nExpected.Load(), d.nUnexpected.Load(), d.skipped.Load())
	d.printLatencies()
	d.printCounts()
	if len(d.errs) > 0 {
		fmt.Println("first unexpected outcomes:")
		for _, e := range d.errs {
			fmt.Println("  " + e)
		}
	}
}

// printLatencies prints the short tunnels' latencies by path; d.mu is
// held.
func (d *driver) printLatencies() {
	if len(d.shortLat) == 0 {
		return
	}
	fmt.Printf("short tunnels (connect, handshake, echo, close) by path; direct is the control, without ferry:\n")
	fmt.Printf("  %-24s %8s %10s %10s %10s %10s\n", "path", "tunnels", "p50", "p99", "p99.9", "max")
	for _, p := range slices.Sorted(maps.Keys(d.shortLat)) {
		l := d.shortLat[p]
		slices.Sort(l)
		q := func(f float64) string {
			return l[min(len(l)-1, int(f*float64(len(l))))].Round(10 * time.Microsecond).String()
		}
		fmt.Printf("  %-24s %8d %10s %10s %10s %10s\n", p, len(l), q(0.5), q(0.99), q(0.999), q(1))
	}
}

// printCounts prints the outcomes by scenario, then by path: names are
// "scenario path"; d.mu is held.
func (d *driver) printCounts() {
	byKind, byPath := map[string]*counts{}, map[string]*counts{}
	var kinds, paths []string
	add := func(m map[string]*counts, keys *[]string, k string, ct *counts) {
		if m[k] == nil {
			m[k] = &counts{}
			*keys = append(*keys, k)
		}
		m[k].ok += ct.ok
		m[k].expected += ct.expected
		m[k].unexpected += ct.unexpected
	}
	for _, n := range d.names {
		kind, p, found := strings.Cut(n, " ")
		if !found {
			kind, p = n, "http" // "http", "http+hook"
			if strings.HasSuffix(n, "+hook") {
				kind, p = "http", "http+hook"
			}
		}
		add(byKind, &kinds, kind, d.byName[n])
		add(byPath, &paths, p, d.byName[n])
	}
	slices.Sort(kinds)
	slices.Sort(paths)
	fmt.Printf("  %-24s %8s %8s %10s\n", "scenario", "ok", "expected", "unexpected")
	for _, k := range kinds {
		ct := byKind[k]
		fmt.Printf("  %-24s %8d %8d %10d\n", k, ct.ok, ct.expected, ct.unexpected)
	}
	fmt.Printf("  %-24s %8s %8s %10s\n", "path", "ok", "expected", "unexpected")
	for _, p := range paths {
		ct := byPath[p]
		fmt.Printf("  %-24s %8d %8d %10d\n", p, ct.ok, ct.expected, ct.unexpected)
	}
}
