package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
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
	idleTargets := fs.String("idle-targets", "3000,9000", "idle tunnel counts the RSS and fd targets are stated for")
	setups := fs.String("setups", "", "directory of the proxies' setups, one file each: a label line, a command line, the configuration (bench.sh writes it)")
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
	sizes, err := parseCounts(*idleTargets)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench report: -idle-targets: %v\n", err)
		return 2
	}
	rs := newResults(*ferry, sizes...)
	for _, f := range fs.Args() {
		if err := rs.load(f); err != nil {
			fmt.Fprintf(os.Stderr, "bench report: %v\n", err)
			return 1
		}
	}
	metaLines, err := readMeta(*meta)
	if err == nil && *setups != "" {
		rs.setups, err = readSetups(*setups)
	}
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
	// Said on the terminal too: whoever ran the script decides whether
	// to keep the report.
	if s := rs.steadiness(); strings.HasPrefix(s, "**") {
		fmt.Fprintf(os.Stderr, "bench report: %s\n", strings.ReplaceAll(s, "**", ""))
	}
	return 0
}

// parseCounts reads a list of positive counts: "3000,9000".
func parseCounts(list string) ([]int64, error) {
	var out []int64
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive counts", f)
		}
		out = append(out, n)
	}
	return out, nil
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
	ferry    string
	idleAt   []int64 // idle sizes the RSS and fd targets are stated for
	all      []*Result
	subjects []subj
	idx      map[string][]*Result // subject key + mode (+ streams/dir/size) -> its runs, in order read
	raw      []string
	setups   []setup // how each proxy ran (-setups)
}

func newResults(ferry string, idleAt ...int64) *results {
	return &results{ferry: ferry, idleAt: idleAt, idx: map[string][]*Result{}}
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
		k := runKeyOf(&r).String()
		rs.idx[k] = append(rs.idx[k], &r)
	}
	slices.SortStableFunc(rs.subjects, func(a, b subj) int { return rs.rank(a) - rs.rank(b) })
	return sc.Err()
}

// ferryOrder and peerOrder are the order the report lists setups in,
// whatever order bench.sh ran them in (it runs the setups a ratio
// compares one after the other).
var (
	ferryOrder = []string{
		"|connect", "|socks5", "|tcp", "nolog|connect", "nolog|socks5", "nolog|tcp", "|h2",
		"hook|connect", "hook|socks5", "hook|tcp", "|http", "nolog|http", "quota|connect",
		"quota-redis|connect", "tls|connect", "tls|socks5", "tls|h2",
	}
	peerOrder = []string{"haproxy", "tinyproxy", "squid", "dante", "microsocks", "gost", "glider", "gonet"}
)

// rank places s in the report: ferry's setups first, then the peers;
// one not listed goes after the others of its kind.
func (rs *results) rank(s subj) int {
	if s.name == rs.ferry {
		if i := slices.Index(ferryOrder, s.variant+"|"+s.proto); i >= 0 {
			return i
		}
		return len(ferryOrder)
	}
	if i := slices.Index(peerOrder, s.name); i >= 0 {
		return 100 + i
	}
	return 100 + len(peerOrder)
}

// runKey names the runs of one measurement: a subject's mode, and for
// throughput the streams and direction, for http the object size, for
// idle the tunnels asked for.
type runKey struct {
	s       subj
	mode    string
	streams int
	extra   string
}

// runKeyOf is the key r is filed under.
func runKeyOf(r *Result) runKey {
	return runKey{subj{r.Name, r.Variant, r.Proto}, r.Mode, r.Streams, r.Dir + objectKey(r.ObjectBytes) + idleKey(r) + postKey(r.PostBytes)}
}

func (k runKey) String() string {
	return fmt.Sprintf("%s|%s|%d|%s", k.s.key(), k.mode, k.streams, k.extra)
}

// objectKey tells the http runs of one subject apart, by object size.
func objectKey(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("object %d", n)
}

// postKey keeps POST runs (bench -post) apart from the GET runs of
// the same object size.
func postKey(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" post %d", n)
}

// idleSize is the number of tunnels an idle run stands for: those asked
// for (or, in results from before -n was recorded, those opened).
func idleSize(r *Result) int64 {
	if r.Asked > 0 {
		return r.Asked
	}
	return r.Tunnels
}

func idleKey(r *Result) string {
	if r.Mode != "idle" {
		return ""
	}
	return fmt.Sprintf("open %d", idleSize(r))
}

// usable tells whether a run counts: it did its work, without errors
// where errors would bias the figure.
func usable(r *Result) bool {
	switch r.Mode {
	case "throughput":
		return r.Bytes > 0 && r.Errors == 0
	case "connrate":
		return r.Conns > 0
	case "pingpong":
		return r.Rounds > 0
	case "idle":
		return r.Tunnels > 0
	case "http":
		return r.Requests > 0 && r.Errors == 0
	case "mitm":
		// A few failed requests (mitmdump's, under load) leave the rate
		// of the rest meaningful; the table counts them.
		return r.Requests > 0 && r.ProxyCPU > 0
	}
	return true
}

// runs are the usable runs of k.
func (rs *results) runs(k runKey) []*Result {
	var out []*Result
	for _, r := range rs.idx[k.String()] {
		if usable(r) {
			out = append(out, r)
		}
	}
	return out
}

// last is the last run of k, usable or not; nil if none.
func (rs *results) last(k runKey) *Result {
	all := rs.idx[k.String()]
	if len(all) == 0 {
		return nil
	}
	return all[len(all)-1]
}

// med is the median of f over the usable runs of k.
func (rs *results) med(k runKey, f func(*Result) float64) (float64, bool) {
	rr := rs.runs(k)
	if len(rr) == 0 {
		return 0, false
	}
	vs := make([]float64, len(rr))
	for i, r := range rr {
		vs[i] = f(r)
	}
	return median(vs), true
}

// worst is the worst of f over the usable runs of k: the largest, or
// the smallest when higher is better.
func (rs *results) worst(k runKey, f func(*Result) float64, higherBetter bool) (float64, bool) {
	rr := rs.runs(k)
	if len(rr) == 0 {
		return 0, false
	}
	w := f(rr[0])
	for _, r := range rr[1:] {
		v := f(r)
		if higherBetter && v < w || !higherBetter && v > w {
			w = v
		}
	}
	return w, true
}

// repeats is how many usable runs k has.
func (rs *results) repeats(k runKey) int { return len(rs.runs(k)) }

// median of vs (the mean of the middle two for an even count); vs is
// sorted in place.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	m := len(vs) / 2
	if len(vs)%2 == 1 {
		return vs[m]
	}
	return (vs[m-1] + vs[m]) / 2
}

// pairedRatios are f of a's runs over f of b's, run by run, pairing the
// runs of the same round (Repeat): a ratio never mixes rounds.
func (rs *results) pairedRatios(a, b runKey, f func(*Result) float64) []float64 {
	byRound := map[int]*Result{}
	for _, r := range rs.runs(b) {
		byRound[max(r.Repeat, 1)] = r
	}
	var out []float64
	for _, r := range rs.runs(a) {
		if rb := byRound[max(r.Repeat, 1)]; rb != nil && f(rb) != 0 {
			out = append(out, f(r)/f(rb))
		}
	}
	return out
}

// modeKey is the runs of s in a mode without sizes (connrate, pingpong,
// udp).
func (rs *results) modeKey(s subj, mode string) runKey { return runKey{s: s, mode: mode} }

// httpKey is the http runs of s for objects of size bytes.
func httpKey(s subj, size int64) runKey { return runKey{s: s, mode: "http", extra: objectKey(size)} }

// idleRuns is the idle runs of s at n tunnels.
func idleRuns(s subj, n int64) runKey {
	return runKey{s: s, mode: "idle", extra: fmt.Sprintf("open %d", n)}
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

// idleSizes are the sizes of the idle runs, smallest first.
func (rs *results) idleSizes() []int64 {
	var out []int64
	for _, r := range rs.all {
		if r.Mode == "idle" && !slices.Contains(out, idleSize(r)) {
			out = append(out, idleSize(r))
		}
	}
	slices.Sort(out)
	return out
}

// httpValue reads the median of one figure of the http runs; ok false
// when none ran, served anything and had no errors.
func (rs *results) httpValue(s subj, size int64, f func(*Result) float64) (float64, bool) {
	return rs.med(httpKey(s, size), f)
}

func tpKey(s subj, c combo) runKey {
	return runKey{s: s, mode: "throughput", streams: c.streams, extra: c.dir}
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

func perGB(r *Result) float64 { return r.CPUSecPerGB }

// hasCPU tells whether every run of k has a CPU figure (a proxy pid).
func (rs *results) hasCPU(k runKey) bool {
	for _, r := range rs.runs(k) {
		if r.CPUSecPerGB == 0 && r.CPUSec == 0 {
			return false
		}
	}
	return true
}

// cpuPerGB of one throughput combination, the median of its runs; ok
// false when it did not run, moved nothing, or had no proxy pid.
func (rs *results) cpuPerGB(s subj, c combo) (float64, bool) {
	if !rs.hasCPU(tpKey(s, c)) {
		return 0, false
	}
	return rs.med(tpKey(s, c), perGB)
}

// cpuPerGBWorst is the worst (largest) of those runs.
func (rs *results) cpuPerGBWorst(s subj, c combo) (float64, bool) {
	if !rs.hasCPU(tpKey(s, c)) {
		return 0, false
	}
	return rs.worst(tpKey(s, c), perGB, false)
}

// aggCPUPerGB is CPU time over bytes of every usable throughput run of
// s with the given stream count (0: all), repeats included; each
// combination must have one.
func (rs *results) aggCPUPerGB(s subj, streams int) (float64, bool) {
	var cpu, bytes float64
	n := 0
	for _, c := range rs.combos() {
		if streams != 0 && c.streams != streams {
			continue
		}
		rr := rs.runs(tpKey(s, c))
		if len(rr) == 0 {
			return 0, false
		}
		for _, r := range rr {
			cpu += r.CPUSec
			bytes += float64(r.Bytes)
		}
		n++
	}
	if n == 0 || bytes == 0 {
		return 0, false
	}
	return cpu / (bytes / 1e9), true
}

func (rs *results) mbps(s subj, c combo) (float64, bool) {
	return rs.med(tpKey(s, c), func(r *Result) float64 { return r.MBps })
}

// value reads the median of one figure of a mode without sizes.
func (rs *results) value(s subj, mode string, f func(*Result) float64) (float64, bool) {
	return rs.med(rs.modeKey(s, mode), f)
}
