package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
)

// steadyLimit is how far a reference's rounds may spread (largest over
// smallest) before the run is called unsteady: the targets' own limits
// are 1x-1.5x, so a reference that moved 20% within one run can carry a
// verdict either way on its own.
const steadyLimit = 1.2

// references run the same code in every round, so when their rounds
// disagree it is the machine that moved (another guest, the host's
// scheduler, memory reclaim). haproxy is what the targets divide by;
// gonet, the Go floor, shows how the Go runtime fared, which moves
// ferry's figures and not haproxy's.
var references = []string{haproxyTCP.name, goFloor.name}

// spread is how one reference figure varied over the rounds of a run.
type spread struct {
	what     string
	unit     string
	min, max float64
	runs     int
	judged   bool // haproxy's per-event figures; see spreads
}

func (s spread) ratio() float64 { return s.max / s.min }

func (s spread) moved() bool { return s.judged && s.ratio() > steadyLimit }

// steadyFigure is the CPU figure of each repeated mode the targets use.
var steadyFigure = map[string]struct {
	unit string
	get  func(*Result) float64
}{
	"throughput": {"CPU-s/GB", perGB},
	"connrate":   {"CPU-µs per new tunnel", func(r *Result) float64 { return r.CPUUsPerConn }},
	"pingpong":   {"CPU-µs per round trip", func(r *Result) float64 { return r.CPUUsPerRound }},
	"http":       {"CPU-µs per request", func(r *Result) float64 { return r.CPUUsPerReq }},
}

// spreads are the references' figures measured in more than one round,
// in the order first read. Only haproxy's per-event figures (new
// tunnels, round trips, requests) are judged: on a quiet machine their
// rounds agree within a few percent (1.02-1.08x in the report of
// 2026-12-06 13:28), while a bulk copy's CPU per GB varies by 20-40%
// between rounds even then (the page cache, splice pipes, the
// scheduler's placement of the other core), and so does the Go floor's
// plain HTTP (1.21-1.34x in that run).
func (rs *results) spreads() []spread {
	var out []spread
	seen := map[string]bool{}
	for _, r := range rs.all {
		fig, ok := steadyFigure[r.Mode]
		k := runKeyOf(r)
		if !ok || !slices.Contains(references, r.Name) || seen[k.String()] {
			continue
		}
		seen[k.String()] = true
		var vs []float64
		for _, x := range rs.runs(k) {
			if v := fig.get(x); v > 0 {
				vs = append(vs, v)
			}
		}
		if len(vs) < 2 {
			continue
		}
		out = append(out, spread{what: steadyLabel(r), unit: fig.unit, min: slices.Min(vs), max: slices.Max(vs), runs: len(vs),
			judged: r.Name == haproxyTCP.name && r.Mode != "throughput"})
	}
	return out
}

// steadyLabel names a reference figure: setup, mode and its parameter.
func steadyLabel(r *Result) string {
	l := subj{r.Name, r.Variant, r.Proto}.label() + ", " + r.Mode
	switch r.Mode {
	case "throughput":
		l += " " + combo{r.Streams, r.Dir}.label()
	case "http":
		l += " " + sizeString(r.ObjectBytes) + " objects"
	}
	return l
}

// steadiness says in one sentence whether the references held still
// over the run's rounds; empty when nothing was repeated.
func (rs *results) steadiness() string {
	ss := rs.spreads()
	if len(ss) == 0 {
		return ""
	}
	var moved []spread
	judged := 0
	for _, s := range ss {
		if s.judged {
			judged++
		}
		if s.moved() {
			moved = append(moved, s)
		}
	}
	if judged == 0 {
		return ""
	}
	if len(moved) == 0 {
		return fmt.Sprintf("The machine held steady: each of haproxy's %d per-event figures repeated in rounds stayed within %.1f× of itself (see \"How steady the machine was\").", judged, steadyLimit)
	}
	// The largest few say enough; the section lists them all.
	slices.SortStableFunc(moved, func(a, b spread) int { return cmp.Compare(b.ratio(), a.ratio()) })
	var named []string
	for _, s := range moved[:min(len(moved), 3)] {
		named = append(named, fmt.Sprintf("%s %.2f×", s.what, s.ratio()))
	}
	if len(moved) > 3 {
		named = append(named, fmt.Sprintf("%d more", len(moved)-3))
	}
	return fmt.Sprintf("**The machine drifted during this run**: %d of haproxy's %d per-event figures repeated in rounds moved more than %.1f× between their rounds (%s), so a verdict near its limit may be the machine's; run again on a quiet machine before relying on it.",
		len(moved), judged, steadyLimit, strings.Join(named, "; "))
}

// writeSteadiness lists every repeated reference figure with its
// smallest and largest round.
func (rs *results) writeSteadiness(w io.Writer) {
	ss := rs.spreads()
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "## How steady the machine was\n\n")
	fmt.Fprintf(w, "The references (haproxy, and `gonet`, the Go floor) run the same code in every round, so how far one of their figures moved between rounds is how far the machine moved. ")
	fmt.Fprintf(w, "The run is judged on haproxy's per-event figures (new tunnels, round trips, requests), the targets' reference, whose rounds agree within a few percent on a quiet machine; a spread over %.1f× there is flagged. ", steadyLimit)
	fmt.Fprintf(w, "A bulk copy's CPU per GB varies by 20-40%% between rounds even on a quiet machine, and the Go floor moves with the Go runtime's luck (as ferry does): both are shown, not judged.\n\n")
	fmt.Fprintf(w, "| reference figure | unit | rounds | smallest | largest | spread | judged |\n|---|---|---|---|---|---|---|\n")
	for _, s := range ss {
		flag, judged := ratio(s.ratio()), "no"
		if s.judged {
			judged = "yes"
		}
		if s.moved() {
			flag = "**" + flag + "**"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s |\n", s.what, s.unit, s.runs, num(s.min), num(s.max), flag, judged)
	}
	fmt.Fprintln(w)
}
