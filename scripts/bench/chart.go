package main

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	ferryColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	peerColor  = color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}
	seriesA    = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	seriesB    = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
)

// series is one set of bars of a panel.
type series struct {
	name string
	get  func(subj) (float64, bool)
}

// panel draws horizontal bars, one group per subject that has a figure
// in any series. With one series, ferry's bars are blue and the others
// grey; with two, each series has its colour and a legend.
func (rs *results) panel(title, xlabel string, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.X.Min = 0
	rows := rs.panelRows(ss)
	if len(rows) == 0 {
		p.Title.Text += " (no data)"
		p.NominalY("")
		return p, nil
	}
	// Top to bottom in the order measured: the Y axis counts upward.
	labels := make([]string, len(rows))
	for i, s := range rows {
		labels[len(rows)-1-i] = s.label()
	}
	width := vg.Points(min(18, 220/float64(len(rows))))
	barW := width / vg.Length(len(ss))
	maxV := 0.0
	for k, se := range ss {
		vals := make(plotter.Values, len(rows))
		isFerry := make([]bool, len(rows))
		for i, s := range rows {
			v, _ := se.get(s)
			vals[len(rows)-1-i] = v
			isFerry[len(rows)-1-i] = s.name == rs.ferry
			maxV = max(maxV, v)
		}
		// The first series on top (the Y axis counts upward).
		offset := width/2 - barW/2 - barW*vg.Length(k)
		if len(ss) == 1 {
			if err := addFerryBars(p, vals, isFerry, barW); err != nil {
				return nil, err
			}
		} else if err := addSeriesBars(p, se.name, k, vals, barW, offset); err != nil {
			return nil, err
		}
		if err := addBarFigures(p, vals, offset); err != nil {
			return nil, err
		}
	}
	p.X.Max = maxV * 1.25
	p.NominalY(labels...)
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Y.Tick.Label.Font.Size = vg.Points(9)
	return p, nil
}

// panelRows are the subjects with a figure in any of ss, in the order
// measured.
func (rs *results) panelRows(ss []series) []subj {
	var rows []subj
	for _, s := range rs.subjects {
		for _, se := range ss {
			if _, ok := se.get(s); ok {
				rows = append(rows, s)
				break
			}
		}
	}
	return rows
}

// addFerryBars draws the bars of a panel of one series: ferry's in
// colour, the rest grey.
func addFerryBars(p *plot.Plot, vals plotter.Values, isFerry []bool, barW vg.Length) error {
	fv, pv := make(plotter.Values, len(vals)), make(plotter.Values, len(vals))
	for i, v := range vals {
		if isFerry[i] {
			fv[i] = v
		} else {
			pv[i] = v
		}
	}
	for _, part := range []struct {
		v plotter.Values
		c color.Color
	}{{fv, ferryColor}, {pv, peerColor}} {
		b, err := plotter.NewBarChart(part.v, barW)
		if err != nil {
			return err
		}
		b.Horizontal, b.Color, b.LineStyle.Width = true, part.c, 0
		p.Add(b)
	}
	return nil
}

// addSeriesBars draws the bars of series k of several, in its colour,
// with a legend entry.
func addSeriesBars(p *plot.Plot, name string, k int, vals plotter.Values, barW, offset vg.Length) error {
	b, err := plotter.NewBarChart(vals, barW)
	if err != nil {
		return err
	}
	b.Horizontal, b.Offset, b.LineStyle.Width = true, offset, 0
	b.Color = []color.Color{seriesA, seriesB, ferryColor, peerColor}[k%4]
	p.Add(b)
	p.Legend.Add(name, b)
	return nil
}

// addBarFigures writes the figure at the end of each bar.
func addBarFigures(p *plot.Plot, vals plotter.Values, offset vg.Length) error {
	xys := make(plotter.XYs, len(vals))
	txt := make([]string, len(vals))
	for i, v := range vals {
		xys[i].X, xys[i].Y = v, float64(i)
		if v > 0 {
			txt[i] = num(v)
		}
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: txt})
	if err != nil {
		return err
	}
	l.Offset = vg.Point{X: vg.Points(3), Y: offset - vg.Points(4)}
	for i := range l.TextStyle {
		l.TextStyle[i].Font.Size = vg.Points(8)
	}
	p.Add(l)
	return nil
}

// httpSeries is one series per object size of the http runs.
func (rs *results) httpSeries(f func(*Result) float64) []series {
	var ss []series
	for _, size := range rs.objects() {
		ss = append(ss, series{sizeString(size) + " objects", func(s subj) (float64, bool) { return rs.httpValue(s, size, f) }})
	}
	if len(ss) == 0 {
		ss = append(ss, series{"none", func(subj) (float64, bool) { return 0, false }})
	}
	return ss
}

// idleSeries is one series per number of idle tunnels held.
func (rs *results) idleSeries(f func(*Result) float64) []series {
	var ss []series
	for _, n := range rs.idleSizes() {
		ss = append(ss, series{fmt.Sprintf("%d open", n), func(s subj) (float64, bool) { return rs.med(idleRuns(s, n), f) }})
	}
	if len(ss) == 0 {
		ss = append(ss, series{"none", func(subj) (float64, bool) { return 0, false }})
	}
	return ss
}

// chart draws the main figures, four rows of two panels, to a PNG.
func (rs *results) chart(file string) error {
	get := func(mode string, f func(*Result) float64) func(subj) (float64, bool) {
		return func(s subj) (float64, bool) { return rs.value(s, mode, f) }
	}
	specs := []struct {
		title, x string
		ss       []series
	}{
		{"Relay CPU per GB carried (lower is better)", "proxy CPU-s per 10^9 bytes, both directions", []series{
			{"1 stream", func(s subj) (float64, bool) { return rs.aggCPUPerGB(s, 1) }},
			{"8 streams", func(s subj) (float64, bool) { return rs.aggCPUPerGB(s, 8) }},
		}},
		{"New tunnels per second (higher is better)", "tunnels/s: handshake + 16-byte echo + close", []series{
			{"tunnels/s", get("connrate", func(r *Result) float64 { return r.ConnsPerSec })},
		}},
		{"CPU per new tunnel (lower is better)", "proxy CPU-us per tunnel", []series{
			{"CPU-us", get("connrate", func(r *Result) float64 { return r.CPUUsPerConn })},
		}},
		{"Ping-pong latency, 64 bytes (lower is better)", "round trip, us", []series{
			{"p50", get("pingpong", func(r *Result) float64 { return r.P50Us })},
			{"p99", get("pingpong", func(r *Result) float64 { return r.P99Us })},
		}},
		{"CPU per round trip (lower is better)", "proxy CPU-us per 64-byte round trip", []series{
			{"CPU-us", get("pingpong", func(r *Result) float64 { return r.CPUUsPerRound })},
		}},
		{"Memory per idle tunnel (lower is better)", "KiB RSS per tunnel", rs.idleSeries(func(r *Result) float64 { return r.RSSKiBPerTunnel })},
		{"Plain HTTP CPU per request (lower is better)", "proxy CPU-us per keep-alive GET", rs.httpSeries(func(r *Result) float64 { return r.CPUUsPerReq })},
		{"Plain HTTP requests per second (higher is better)", "requests/s, keep-alive GETs", rs.httpSeries(func(r *Result) float64 { return r.ReqsPerSec })},
	}
	const rows, cols = 4, 2
	plots := make([][]*plot.Plot, rows)
	for i, sp := range specs {
		p, err := rs.panel(sp.title, sp.x, sp.ss)
		if err != nil {
			return fmt.Errorf("%s: %w", sp.title, err)
		}
		plots[i/cols] = append(plots[i/cols], p)
	}
	img := vgimg.New(14*vg.Inch, 17*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{
		Rows: rows, Cols: cols,
		PadX: vg.Millimeter * 8, PadY: vg.Millimeter * 8,
		PadTop: vg.Millimeter * 4, PadBottom: vg.Millimeter * 4,
		PadLeft: vg.Millimeter * 4, PadRight: vg.Millimeter * 6,
	}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots {
		for i := range plots[j] {
			plots[j][i].Draw(canvases[j][i])
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
