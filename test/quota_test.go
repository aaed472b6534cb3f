//go:build linux

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"ferry/test/testkit"
)

// maxOrigin bounds what sizedOrigin sends for one request.
const maxOrigin = 64 << 20

// sizedOrigin answers GET /N with N bytes (at most maxOrigin), in 32 KiB
// writes.
func sizedOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil || n < 0 || n > maxOrigin {
			http.Error(w, "want /N, N up to 64 MiB", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		buf := make([]byte, 32<<10)
		for n > 0 {
			k, err := w.Write(buf[:min(n, len(buf))])
			if err != nil {
				return
			}
			n -= k
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// quotaConfig is a listener behind auth (users alice and bob), a quota
// of 10 MiB a day per user and the access log, with the embedded store in
// stateDir and the admin service on adminAddr.
func quotaConfig(stateDir, adminAddr string, endLive bool) func(addr string) string {
	return quotaConfigWith(fmt.Sprintf("dir = %q", stateDir), adminAddr, endLive)
}

// quotaConfigWith is quotaConfig with the keys of [state] given.
func quotaConfigWith(stateKeys, adminAddr string, endLive bool) func(addr string) string {
	return chainConfig([]string{"auth", "quota", "log"}, fmt.Sprintf(`[[plugin]]
name = "auth"
[plugin.users]
alice = "plain:alice-pw"
bob = "plain:bob-pw"

[[plugin]]
name = "quota"
timezone = "Europe/Berlin"
end_live = %v
[[plugin.limit]]
name = "daily"
per = "user"
bytes = "10MiB"
period = "day"

[[plugin]]
name = "log"

[state]
%s

[admin]
listen = %q
`, endLive, stateKeys, adminAddr))
}

// usageOf reads GET /usage and returns the bytes used by user of quota
// daily (-1 when it is not listed).
func usageOf(t *testing.T, adminAddr, user string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/usage")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var us []struct {
		Quota, Per, Subject string
		Used, Limit         int64
		PeriodEnd           time.Time `json:"period_end"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&us); err != nil {
		t.Fatalf("GET /usage: %v", err)
	}
	for _, u := range us {
		if u.Quota == "daily" && u.Per == "user" && u.Subject == user {
			if u.Limit != 10<<20 || u.PeriodEnd.Before(time.Now()) {
				t.Errorf("GET /usage: %+v, want limit 10 MiB and a period end ahead", u)
			}
			return u.Used
		}
	}
	return -1
}

// TestQuotaDownloads: alice, with 10 MiB a day, downloads 8 MiB twice
// (the second starts under the budget and, without end_live, completes);
// then she is refused in each protocol with the quota's message. The
// usage survives a reload and a restart with the embedded store; GET /usage shows it
// and DELETE /usage/alice gives the budget back.
func TestQuotaDownloads(t *testing.T) {
	t.Parallel()
	needCurl(t)
	origin := sizedOrigin(t)
	stateDir, adminAddr := t.TempDir(), freeAddr(t)
	f := startFerry(t, quotaConfig(stateDir, adminAddr, false), nil)
	url8 := origin.URL + "/" + strconv.Itoa(8<<20)
	for i := range 2 {
		out := curl(t, "-x", "http://alice:alice-pw@"+f.addr, "-o", "/dev/null", "-w", "%{size_download}", url8)
		if out != strconv.Itoa(8<<20) {
			t.Fatalf("download %d: got %s bytes, want %d", i, out, 8<<20)
		}
	}
	checkQuotaRefused(t, f.addr, origin.URL)
	if used := usageOf(t, adminAddr, "alice"); used < 16<<20 || used > 17<<20 {
		t.Errorf("GET /usage: alice used %d, want 16 MiB and the HTTP heads", used)
	}
	// A reload keeps the store (and the embedded file's lock) open.
	f.send(t, syscall.SIGHUP)
	f.waitLine(t, "configuration reloaded", nil)
	checkQuotaRefused(t, f.addr, origin.URL)

	if code := f.stop(t); code != 0 {
		t.Fatalf("ferry exited %d", code)
	}
	f = startFerry(t, quotaConfig(stateDir, adminAddr, false), nil)
	checkQuotaRefused(t, f.addr, origin.URL)
	if used := usageOf(t, adminAddr, "alice"); used < 16<<20 {
		t.Errorf("after a restart: alice used %d, want 16 MiB or more", used)
	}

	req, _ := http.NewRequest(http.MethodDelete, "http://"+adminAddr+"/usage/alice", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE /usage/alice: %s", resp.Status)
	}
	out := curl(t, "-x", "http://alice:alice-pw@"+f.addr, "-o", "/dev/null", "-w", "%{http_code}", origin.URL+"/10")
	if out != "200" {
		t.Errorf("after DELETE /usage/alice: status %s, want 200", out)
	}
}

// checkQuotaRefused: alice's next channel is refused with the quota's
// message: HTTP 403 for plain HTTP and CONNECT, SOCKS5 reply 0x02.
func checkQuotaRefused(t *testing.T, proxyAddr, originURL string) {
	t.Helper()
	res := curlMayFail(t, "-x", "http://alice:alice-pw@"+proxyAddr, "-w", "\n%{http_code}", originURL+"/10")
	if !strings.Contains(res.stdout, `quota "daily" of user:alice spent`) || !strings.HasSuffix(res.stdout, "403") {
		t.Errorf("plain HTTP: got %q (exit %d), want a 403 naming the quota", res.stdout, res.code)
	}
	if _, code := curlExit(t, "-p", "-x", "http://alice:alice-pw@"+proxyAddr, originURL+"/10"); code != curlConnectFailed {
		t.Errorf("CONNECT: curl exit %d, want %d (CONNECT refused)", code, curlConnectFailed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testkit.DialSOCKS5Auth(ctx, proxyAddr, strings.TrimPrefix(originURL, "http://"), "alice", "alice-pw")
	if err == nil {
		c.Close()
		t.Fatal("SOCKS5: admitted, want refused")
	}
	if !strings.Contains(err.Error(), "not allowed by ruleset") {
		t.Errorf("SOCKS5: %v, want reply 0x02 (not allowed by ruleset)", err)
	}
}

// TestQuotaEndLive: with end_live, a 20 MiB download ends once the
// user's 10 MiB are spent, through a CONNECT tunnel (bob) and as a plain
// HTTP response (alice): the chunk that crosses the budget is cut to what
// fits, so the body received is under 10 MiB (the budget counts the HTTP
// heads too) and no byte more, and the access line names the quota.
func TestQuotaEndLive(t *testing.T) {
	t.Parallel()
	needCurl(t)
	origin := sizedOrigin(t)
	f := startFerry(t, quotaConfig(t.TempDir(), freeAddr(t), true), nil)
	url20 := origin.URL + "/" + strconv.Itoa(20<<20)
	tests := []struct {
		user, proto string
		args        []string
	}{
		{user: "bob", proto: "connect", args: []string{"-p", "-x", "http://bob:bob-pw@" + f.addr}},
		{user: "alice", proto: "http", args: []string{"-x", "http://alice:alice-pw@" + f.addr}},
	}
	for _, tt := range tests {
		res := curlMayFail(t, append(tt.args, "-o", "/dev/null", "-w", "%{size_download}", url20)...)
		got, _ := strconv.Atoi(res.stdout)
		if res.code == 0 || got > 10<<20 || got < 9<<20 {
			t.Errorf("%s: curl exit %d after %d bytes, want a cut transfer of 9 to 10 MiB", tt.proto, res.code, got)
		}
		l := f.waitLine(t, "access", func(l logLine) bool { return l.str("user") == tt.user && l.str("proto") == tt.proto })
		if l.str("quota") != "daily" || l.str("reason") != "plugin closed" {
			t.Errorf("%s: access line %v, want quota=daily and reason plugin closed", tt.proto, l)
		}
		if down, _ := l.num("down"); down > 10<<20 {
			t.Errorf("%s: access line: down %d, more than the 10 MiB budget", tt.proto, down)
		}
	}
}

// TestQuotaRedis: two ferrys on one Redis share alice's budget: 5 MiB
// through each spends her 10 MiB, and both refuse her next channel.
// With fail_closed, a Redis that stops makes them refuse channels whose
// usage they cannot read; once it is back they admit them again without
// a restart.
func TestQuotaRedis(t *testing.T) {
	t.Parallel()
	needCurl(t)
	r := testkit.StartRedis(t)
	origin := sizedOrigin(t)
	keys := fmt.Sprintf("url = %q\non_error = \"fail_closed\"\nflush_interval = \"100ms\"", r.URL())
	admin1 := freeAddr(t)
	f1 := startFerry(t, quotaConfigWith(keys, admin1, false), nil)
	f2 := startFerry(t, quotaConfigWith(keys, freeAddr(t), false), nil)
	url5 := origin.URL + "/" + strconv.Itoa(5<<20)
	for _, f := range []*proc{f1, f2} {
		out := curl(t, "-x", "http://alice:alice-pw@"+f.addr, "-o", "/dev/null", "-w", "%{size_download}", url5)
		if out != strconv.Itoa(5<<20) {
			t.Fatalf("download through %s: %s bytes, want %d", f.addr, out, 5<<20)
		}
		time.Sleep(500 * time.Millisecond) // a few flush intervals
	}
	for _, f := range []*proc{f1, f2} {
		checkQuotaRefused(t, f.addr, origin.URL)
	}
	store := map[string]string{"store": "redis://" + r.Addr + "/0"}
	mfs := adminMetrics(t, admin1)
	if used := metricSum(mfs, "ferry_quota_used_bytes", map[string]string{"quota": "daily", "per": "user", "subject": "alice"}); used < 10<<20 {
		t.Errorf("ferry_quota_used_bytes of alice: %v, want 10 MiB or more", used)
	}
	if up := metricSum(mfs, "ferry_state_up", store); up != 1 {
		t.Errorf("ferry_state_up%v = %v, want 1", store, up)
	}

	r.Stop()
	res := curlMayFail(t, "-x", "http://bob:bob-pw@"+f1.addr, "-w", "\n%{http_code}", origin.URL+"/10")
	if !strings.Contains(res.stdout, "quota store unavailable") || !strings.HasSuffix(res.stdout, "403") {
		t.Errorf("Redis down, fail_closed: got %q, want 403 quota store unavailable", res.stdout)
	}
	f1.waitLine(t, "state store unreachable: counting in memory until it is back", nil)
	mfs = adminMetrics(t, admin1)
	if up, errs := metricSum(mfs, "ferry_state_up", store), metricSum(mfs, "ferry_state_errors_total", store); up != 0 || errs < 1 {
		t.Errorf("Redis down: ferry_state_up %v, ferry_state_errors_total %v; want 0 and at least 1", up, errs)
	}

	r.Start()
	admitted := false
	for i := 0; i < 50 && !admitted; i++ {
		time.Sleep(100 * time.Millisecond)
		out, _ := curlExit(t, "-x", "http://bob:bob-pw@"+f1.addr, "-o", "/dev/null", "-w", "%{http_code}", origin.URL+"/10")
		admitted = out == "200"
	}
	if !admitted {
		t.Fatal("Redis back: bob still refused after 5 s")
	}
	f1.waitLine(t, "state store reachable again", nil)
}

// adminMetrics reads and parses GET /metrics of the admin service at
// addr.
func adminMetrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}
