package main

import (
	"fmt"
	"io"
	"math"
)

func num(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func ratio(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

// column of a metric table.
type column struct {
	head string
	get  func(subj) (float64, bool)
}

// countColumns are shown without decimals.
var countColumns = map[string]bool{"tunnels": true, "processes": true, "tunnels/s": true, "idle CPU ms during hold": true, "requests/s": true, "reopened": true, "datagrams/s": true, "lost": true}

// table writes one metric: a row per subject that has a figure, its
// figures, then ferry's figure (same metric, ratioBy) divided by the
// row's, for each of ferry's protocols.
func (rs *results) table(w io.Writer, title, note string, cols []column, ratioBy func(subj) (float64, bool)) {
	var rows []subj
	for _, s := range rs.subjects {
		for _, c := range cols {
			if _, ok := c.get(s); ok {
				rows = append(rows, s)
				break
			}
		}
	}
	fmt.Fprintf(w, "### %s\n\n", title)
	if note != "" {
		fmt.Fprintf(w, "%s\n\n", note)
	}
	if len(rows) == 0 {
		fmt.Fprintf(w, "No data.\n\n")
		return
	}
	// ferry's columns: without its access log where measured, as the
	// peers run, else with it.
	var ferries []subj
	for _, p := range []string{"connect", "socks5", "tcp", "http"} {
		for _, f := range []subj{{rs.ferry, "nolog", p}, rs.fast(p)} {
			if _, ok := ratioBy(f); ok {
				ferries = append(ferries, f)
				break
			}
		}
	}
	fmt.Fprintf(w, "| proxy |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c.head)
	}
	for _, f := range ferries {
		fmt.Fprintf(w, " %s ÷ this |", f.label())
	}
	fmt.Fprintf(w, "\n|---|")
	for range len(cols) + len(ferries) {
		fmt.Fprintf(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, s := range rows {
		label := s.label()
		if s.name == rs.ferry {
			label = "**" + label + "**"
		}
		fmt.Fprintf(w, "| %s |", label)
		for _, c := range cols {
			if v, ok := c.get(s); ok && countColumns[c.head] {
				fmt.Fprintf(w, " %.0f |", v)
			} else if ok {
				fmt.Fprintf(w, " %s |", num(v))
			} else {
				fmt.Fprintf(w, " — |")
			}
		}
		mine, ok := ratioBy(s)
		for _, f := range ferries {
			fv, _ := ratioBy(f)
			if !ok || mine == 0 || f == s {
				fmt.Fprintf(w, " — |")
				continue
			}
			fmt.Fprintf(w, " %s |", ratio(fv/mine))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}
