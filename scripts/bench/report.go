package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
)

// runReport reads JSON result lines and writes BENCHMARKS.md to stdout
// (and, with -png, the chart).
func runReport(args []string) int {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	meta := fs.String("meta", "", `file of "key: value" lines describing the machine and the run, listed as they are`)
	png := fs.String("png", "", "write the chart to this PNG file")
	pngLink := fs.String("png-link", "", "how the Markdown links the chart (default: -png)")
	ferry := fs.String("ferry", "ferry", "the name of the proxy the others are compared with")
	idleTarget := fs.Int("idle-target", 9000, "idle tunnels the RSS and fd targets are stated for")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bench report [-meta FILE] [-png FILE] results.jsonl... > BENCHMARKS.md\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	rs := &results{ferry: *ferry, idleTarget: int64(*idleTarget), idx: map[string]*Result{}}
	for _, f := range fs.Args() {
		if err := rs.load(f); err != nil {
			fmt.Fprintf(os.Stderr, "bench report: %v\n", err)
			return 1
		}
	}
	metaLines, err := readMeta(*meta)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench report: %v\n", err)
		return 1
	}
	link := *pngLink
	if link == "" {
		link = *png
	}
	if *png != "" {
		if err := rs.chart(*png); err != nil {
			fmt.Fprintf(os.Stderr, "bench report: chart: %v\n", err)
			return 1
		}
	}
	w := bufio.NewWriter(os.Stdout)
	rs.markdown(w, metaLines, link)
	if err := w.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "bench report: %v\n", err)
		return 1
	}
	return 0
}

// readMeta reads the non-empty lines of a -meta file; none for "".
func readMeta(file string) ([]string, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// subj is one proxy setup measured: name, variant, protocol.
type subj struct{ name, variant, proto string }

func (s subj) key() string { return s.name + "|" + s.variant + "|" + s.proto }

func (s subj) label() string {
	n := s.name
	if s.variant != "" {
		n += "+" + s.variant
	}
	return n + " " + protoLabel(s.proto)
}

func protoLabel(p string) string {
	switch p {
	case "connect":
		return "CONNECT"
	case "socks5":
		return "SOCKS5"
	case "h2":
		return "HTTP/2 CONNECT"
	case "http":
		return "HTTP"
	case "reverse":
		return "mode http (reverse)"
	}
	return p
}

type results struct {
	ferry      string
	idleTarget int64
	all        []*Result
	subjects   []subj
	idx        map[string]*Result // subject key + mode (+ streams/dir) -> last result
	raw        []string
}

func (rs *results) load(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	seen := map[string]bool{}
	for _, s := range rs.subjects {
		seen[s.key()] = true
	}
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(text), &r); err != nil || r.Mode == "" {
			fmt.Fprintf(os.Stderr, "bench report: %s:%d: not a result, skipped\n", file, line)
			continue
		}
		rs.raw = append(rs.raw, text)
		rs.all = append(rs.all, &r)
		s := subj{r.Name, r.Variant, r.Proto}
		if !seen[s.key()] {
			seen[s.key()] = true
			rs.subjects = append(rs.subjects, s)
		}
		rs.idx[resultKey(s, r.Mode, r.Streams, r.Dir+objectKey(r.ObjectBytes))] = &r
	}
	return sc.Err()
}

func resultKey(s subj, mode string, streams int, dir string) string {
	return fmt.Sprintf("%s|%s|%d|%s", s.key(), mode, streams, dir)
}

// objectKey tells the http runs of one subject apart, by object size.
func objectKey(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("object %d", n)
}

func (rs *results) get(s subj, mode string) *Result { return rs.idx[resultKey(s, mode, 0, "")] }

// httpRun is the http run of s for objects of size bytes.
func (rs *results) httpRun(s subj, size int64) *Result {
	return rs.idx[resultKey(s, "http", 0, objectKey(size))]
}

// objects are the object sizes of the http runs, in order.
func (rs *results) objects() []int64 {
	var out []int64
	seen := map[int64]bool{}
	for _, r := range rs.all {
		if r.Mode == "http" && !seen[r.ObjectBytes] {
			seen[r.ObjectBytes] = true
			out = append(out, r.ObjectBytes)
		}
	}
	return out
}

// httpValue reads one figure of an http run; ok false when it did not
// run, served nothing or had errors.
func (rs *results) httpValue(s subj, size int64, f func(*Result) float64) (float64, bool) {
	r := rs.httpRun(s, size)
	if r == nil || r.Requests == 0 || r.Errors > 0 {
		return 0, false
	}
	return f(r), true
}

// httpFerry is the ferry setup the plain HTTP targets judge: without
// its access log when measured (the peers run with logging off), else
// with it.
func (rs *results) httpFerry() subj {
	if s := (subj{rs.ferry, "nolog", "http"}); rs.has(s) {
		return s
	}
	return rs.fast("http")
}

func (rs *results) tp(s subj, streams int, dir string) *Result {
	return rs.idx[resultKey(s, "throughput", streams, dir)]
}

// fast is ferry without a variant on proto.
func (rs *results) fast(proto string) subj { return subj{rs.ferry, "", proto} }

func (rs *results) has(s subj) bool {
	for _, x := range rs.subjects {
		if x == s {
			return true
		}
	}
	return false
}

// combos are the throughput runs the tables show, in order.
type combo struct {
	streams int
	dir     string
}

func (c combo) label() string {
	arrow := "↑"
	if c.dir == "down" {
		arrow = "↓"
	}
	if c.streams == 1 {
		return "1 stream " + arrow
	}
	return fmt.Sprintf("%d streams %s", c.streams, arrow)
}

func (rs *results) combos() []combo {
	var out []combo
	seen := map[combo]bool{}
	for _, r := range rs.all {
		if r.Mode != "throughput" {
			continue
		}
		c := combo{r.Streams, r.Dir}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// cpuPerGB of one throughput run; ok false when it did not run, moved
// nothing, or had no proxy pid.
func (rs *results) cpuPerGB(s subj, c combo) (float64, bool) {
	r := rs.tp(s, c.streams, c.dir)
	if r == nil || r.Bytes == 0 || r.Errors > 0 || r.CPUSecPerGB == 0 && r.CPUSec == 0 {
		return 0, false
	}
	return r.CPUSecPerGB, true
}

// aggCPUPerGB is CPU time over bytes of every throughput run of s with
// the given stream count (0: all).
func (rs *results) aggCPUPerGB(s subj, streams int) (float64, bool) {
	var cpu, bytes float64
	n := 0
	for _, c := range rs.combos() {
		if streams != 0 && c.streams != streams {
			continue
		}
		r := rs.tp(s, c.streams, c.dir)
		if r == nil || r.Bytes == 0 || r.Errors > 0 {
			return 0, false
		}
		cpu += r.CPUSec
		bytes += float64(r.Bytes)
		n++
	}
	if n == 0 || bytes == 0 {
		return 0, false
	}
	return cpu / (bytes / 1e9), true
}

func (rs *results) mbps(s subj, c combo) (float64, bool) {
	r := rs.tp(s, c.streams, c.dir)
	if r == nil || r.Bytes == 0 || r.Errors > 0 {
		return 0, false
	}
	return r.MBps, true
}

// value reads one figure of a single-run mode.
func (rs *results) value(s subj, mode string, f func(*Result) float64) (float64, bool) {
	r := rs.get(s, mode)
	if r == nil {
		return 0, false
	}
	switch mode {
	case "connrate":
		if r.Conns == 0 {
			return 0, false
		}
	case "pingpong":
		if r.Rounds == 0 {
			return 0, false
		}
	case "idle":
		if r.Tunnels == 0 {
			return 0, false
		}
	}
	return f(r), true
}
