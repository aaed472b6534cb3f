package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"ferry/plugins"
	"ferry/server"
)

// usageTimeout bounds the store reads of one /usage request or scrape.
const usageTimeout = 5 * time.Second

// usage answers GET /usage: every subject's usage of every budget, as
// JSON. A store that failed answers 503 when nothing could be read.
func (a *Admin) usage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), usageTimeout)
	defer cancel()
	us, err := a.srv.Usage(ctx)
	if err != nil {
		a.log.Warn().Err(err).Msg("GET /usage")
		if len(us) == 0 {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	if us == nil {
		us = []plugins.Usage{}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(us)
}

// resetUsage answers DELETE /usage/{user}: it forgets the user's usage of
// every budget. ?per=group or ?per=client resets a group's or a client
// address's instead.
func (a *Admin) resetUsage(w http.ResponseWriter, r *http.Request) {
	per := r.URL.Query().Get("per")
	switch per {
	case "":
		per = "user"
	case "user", "group", "client":
	default:
		http.Error(w, `per: want "user", "group" or "client"`, http.StatusBadRequest)
		return
	}
	name := r.PathValue("user")
	ctx, cancel := context.WithTimeout(r.Context(), usageTimeout)
	defer cancel()
	n, err := a.srv.ResetUsage(ctx, per+":"+name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	a.log.Info().Str("per", per).Str("subject", name).Int("counters", n).Str("remote", r.RemoteAddr).
		Msg("usage reset by admin")
	fmt.Fprintf(w, "reset %d counters\n", n)
}

// topSubjects is how many users, and client addresses, of each budget
// ferry_quota_used_bytes names; the others are summed under the subject
// "_other". Groups, which the operator defines, are all named.
const topSubjects = 20

// usageCollector reports usage per budget at scrape time.
type usageCollector struct{ srv *server.Server }

var (
	quotaUsedDesc = prometheus.NewDesc("ferry_quota_used_bytes",
		"Bytes used of a quota in its current period: every group, the top 20 users and client addresses of each quota, the rest summed as subject \"_other\".",
		[]string{"plugin", "quota", "per", "subject"}, nil)
	stateUpDesc = prometheus.NewDesc("ferry_state_up",
		"1 while the [state] store answers, 0 while it fails (quotas apply on_error).", []string{"store"}, nil)
	stateErrorsDesc = prometheus.NewDesc("ferry_state_errors_total",
		"Failed calls to the [state] store since it was opened.", []string{"store"}, nil)
)

func (c usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- quotaUsedDesc
	ch <- stateUpDesc
	ch <- stateErrorsDesc
}

func (c usageCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.srv.StateStores() {
		up := 0.0
		if s.Healthy {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(stateUpDesc, prometheus.GaugeValue, up, s.Location)
		ch <- prometheus.MustNewConstMetric(stateErrorsDesc, prometheus.CounterValue, float64(s.Errors), s.Location)
	}
	ctx, cancel := context.WithTimeout(context.Background(), usageTimeout)
	defer cancel()
	us, _ := c.srv.Usage(ctx)
	for _, u := range boundUsage(us, topSubjects) {
		ch <- prometheus.MustNewConstMetric(quotaUsedDesc, prometheus.GaugeValue, float64(u.Used), u.Plugin, u.Quota, u.Per, u.Subject)
	}
}

// boundUsage keeps every group's usage and the top n users and clients of
// each budget, and sums the rest of each (budget, per) as "_other".
func boundUsage(us []plugins.Usage, n int) []plugins.Usage {
	sort.SliceStable(us, func(i, j int) bool { return us[i].Used > us[j].Used })
	type scope struct{ plugin, quota, per string }
	seen := map[scope]int{}
	others := map[scope]int64{}
	var out []plugins.Usage
	for _, u := range us {
		k := scope{u.Plugin, u.Quota, u.Per}
		if u.Per != "group" && seen[k] >= n {
			others[k] += u.Used
			continue
		}
		seen[k]++
		out = append(out, u)
	}
	for k, used := range others {
		out = append(out, plugins.Usage{Plugin: k.plugin, Quota: k.quota, Per: k.per, Subject: "_other", Used: used})
	}
	return out
}
