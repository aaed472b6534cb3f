package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"ferry/scripts/internal/load"
)

// Result is one measurement, written as one JSON line with -json. Fields
// a mode does not measure are left out (and read back as 0).
type Result struct {
	Time    string `json:"time"`
	Name    string `json:"name"`              // the proxy: ferry, haproxy, ...
	Variant string `json:"variant,omitempty"` // e.g. "hook": ferry with a no-op data plugin
	Proto   string `json:"proto"`             // connect | socks5 | tcp | http | reverse
	Mode    string `json:"mode"`              // throughput | connrate | pingpong | idle | http | udp | mitm
	Process string `json:"process,omitempty"` // command name of -pid
	Procs   int    `json:"procs,omitempty"`   // processes in the measured tree
	Repeat  int    `json:"repeat,omitempty"`  // which of bench.sh's rounds (REPEATS) it belongs to; 0 or 1: the first

	Seconds    float64 `json:"seconds"`               // wall time of the measured part
	CPUSec     float64 `json:"cpu_s,omitempty"`       // proxy CPU time (utime+stime) in the measured part
	CPUFrom    string  `json:"cpu_from,omitempty"`    // "cgroup" when CPUSec is the cgroup's, exact; else /proc's clock ticks
	ProxyCPU   float64 `json:"proxy_cpu_pct"`         // CPUSec / Seconds, in percent
	ToolCPU    float64 `json:"tool_cpu_pct"`          // this tool's CPU / Seconds, in percent (100 = its core is saturated)
	Errors     int64   `json:"errors,omitempty"`      // failed tunnels or transfers
	Truncated  bool    `json:"truncated,omitempty"`   // stopped by -timeout before the planned amount
	FirstError string  `json:"first_error,omitempty"` // the first failure, for the human

	// throughput
	Streams     int     `json:"streams,omitempty"`
	Dir         string  `json:"dir,omitempty"` // up: client to target; down: target to client
	Bytes       int64   `json:"bytes,omitempty"`
	MBps        float64 `json:"mb_per_s,omitempty"` // 10^6 bytes per second, all streams together
	CPUSecPerGB float64 `json:"cpu_s_per_gb,omitempty"`

	// connrate
	Concurrency  int     `json:"concurrency,omitempty"`
	Conns        int64   `json:"conns,omitempty"`
	ConnsPerSec  float64 `json:"conns_per_s,omitempty"`
	CPUUsPerConn float64 `json:"cpu_us_per_conn,omitempty"`
	ConnP50Us    float64 `json:"conn_p50_us,omitempty"` // handshake + echo + close, per tunnel
	ConnP99Us    float64 `json:"conn_p99_us,omitempty"`

	// pingpong
	Rounds        int64   `json:"rounds,omitempty"`
	MsgBytes      int     `json:"msg_bytes,omitempty"`
	P50Us         float64 `json:"p50_us,omitempty"`
	P99Us         float64 `json:"p99_us,omitempty"`
	MeanUs        float64 `json:"mean_us,omitempty"`
	CPUUsPerRound float64 `json:"cpu_us_per_round,omitempty"`

	// idle
	Asked            int64   `json:"asked,omitempty"` // tunnels asked for (-n): the size the run stands for
	Tunnels          int64   `json:"tunnels,omitempty"`
	OpenSeconds      float64 `json:"open_s,omitempty"`
	RSSBaseKiB       int64   `json:"rss_base_kib,omitempty"`
	RSSKiB           int64   `json:"rss_kib,omitempty"`
	RSSKiBPerTunnel  float64 `json:"rss_kib_per_tunnel,omitempty"`
	PSSKiBPerTunnel  float64 `json:"pss_kib_per_tunnel,omitempty"`
	FDsBase          int64   `json:"fds_base,omitempty"`
	FDs              int64   `json:"fds,omitempty"`
	FDsPerTunnel     float64 `json:"fds_per_tunnel,omitempty"`
	IdleCPUms        float64 `json:"idle_cpu_ms,omitempty"` // proxy CPU during the hold, all tunnels idle
	HoldSeconds      float64 `json:"hold_s,omitempty"`
	CPUUsPerOpenConn float64 `json:"cpu_us_per_open,omitempty"` // proxy CPU while opening, per tunnel

	// http and mitm (Concurrency: connections, or h2 workers; Bytes, MBps: response bodies)
	ObjectBytes int64   `json:"object_bytes,omitempty"`
	PostBytes   int64   `json:"post_bytes,omitempty"` // http: each request a POST with a body of this size
	Requests    int64   `json:"requests,omitempty"`
	ReqsPerSec  float64 `json:"reqs_per_s,omitempty"`
	CPUUsPerReq float64 `json:"cpu_us_per_req,omitempty"`
	ReqP50Us    float64 `json:"req_p50_us,omitempty"` // request written to response read, per request
	ReqP99Us    float64 `json:"req_p99_us,omitempty"`
	Reopened    int64   `json:"reopened,omitempty"` // connections opened again in the run (the proxy closed them, or errors)

	// udp (Concurrency: datagrams in flight; Bytes, MBps: payload, both ways)
	Datagrams     int64   `json:"datagrams,omitempty"` // relayed by the proxy, each way counted
	DgramsPerSec  float64 `json:"datagrams_per_s,omitempty"`
	CPUUsPerDgram float64 `json:"cpu_us_per_datagram,omitempty"`
	Lost          int64   `json:"lost,omitempty"` // sent and never echoed
}

// subject names what was measured: proxy, variant and protocol.
func (r *Result) subject() string {
	s := r.Name
	if r.Variant != "" {
		s += "+" + r.Variant
	}
	return s + " " + r.Proto
}

// human is the result in one or two lines for people.
func (r *Result) human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-22s %-10s ", r.subject(), r.Mode)
	switch r.Mode {
	case "throughput":
		fmt.Fprintf(&b, "%d stream(s) %-4s %8.1f MB/s  proxy %6.3f CPU-s/GB", r.Streams, r.Dir, r.MBps, r.CPUSecPerGB)
		fmt.Fprintf(&b, "  (%s in %.2fs)", sizeString(r.Bytes), r.Seconds)
	case "connrate":
		fmt.Fprintf(&b, "c=%d %8.0f tunnels/s  proxy %6.1f CPU-us/tunnel  p50 %.0fus p99 %.0fus  (%d in %.1fs)",
			r.Concurrency, r.ConnsPerSec, r.CPUUsPerConn, r.ConnP50Us, r.ConnP99Us, r.Conns, r.Seconds)
	case "pingpong":
		fmt.Fprintf(&b, "%dB p50 %.1fus p99 %.1fus mean %.1fus  proxy %.2f CPU-us/round trip  (%d rounds)",
			r.MsgBytes, r.P50Us, r.P99Us, r.MeanUs, r.CPUUsPerRound, r.Rounds)
	case "http", "mitm":
		if r.PostBytes > 0 {
			fmt.Fprintf(&b, "POST %s, ", sizeString(r.PostBytes))
		}
		fmt.Fprintf(&b, "%s c=%d %8.0f req/s  proxy %6.1f CPU-us/req  p50 %.0fus p99 %.0fus  (%d in %.1fs, %d reopened)",
			sizeString(r.ObjectBytes), r.Concurrency, r.ReqsPerSec, r.CPUUsPerReq, r.ReqP50Us, r.ReqP99Us, r.Requests, r.Seconds, r.Reopened)
	case "udp":
		fmt.Fprintf(&b, "w=%d %8.0f datagrams/s  proxy %6.2f CPU-us/datagram  %.1f MB/s  (%d in %.1fs, %d lost)",
			r.Concurrency, r.DgramsPerSec, r.CPUUsPerDgram, r.MBps, r.Datagrams, r.Seconds, r.Lost)
	case "idle":
		fmt.Fprintf(&b, "%d tunnels: %.2f KiB RSS/tunnel (PSS %.2f)  %.2f fds/tunnel  idle CPU %.0f ms in %.1fs  open %.1fs",
			r.Tunnels, r.RSSKiBPerTunnel, r.PSSKiBPerTunnel, r.FDsPerTunnel, r.IdleCPUms, r.HoldSeconds, r.OpenSeconds)
	}
	fmt.Fprintf(&b, "  [proxy CPU %.0f%%, tool CPU %.0f%%]", r.ProxyCPU, r.ToolCPU)
	if r.Errors > 0 {
		fmt.Fprintf(&b, "\n    %d errors, first: %s", r.Errors, r.FirstError)
	}
	if r.Truncated {
		b.WriteString("\n    stopped by -timeout before the planned amount")
	}
	return b.String()
}

func (r *Result) stamp() { r.Time = time.Now().UTC().Format(time.RFC3339) }

func writeJSON(w io.Writer, r *Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// parseSize reads "1GiB", "512MiB", "64KiB", "1GB", "100MB", "4096".
var parseSize = load.ParseSize

func sizeString(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// percentile of sorted durations, q in [0,1], in microseconds.
func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	// nearest rank: the smallest value with at least q of the samples at or below it
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(len(sorted)-1, i))
	return float64(sorted[i]) / 1e3
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}
