//go:build linux

package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"ferry/test/testkit"
)

// TestAdminEndToEnd: ferry with [admin] serves /metrics that count curl's
// traffic, lists a live tunnel on /channels and closes it on DELETE.
func TestAdminEndToEnd(t *testing.T) {
	t.Parallel()
	needCurl(t)
	target := testkit.HTTPTarget(t)
	echo := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.Copy(c, c)
	})
	adminAddr := freeAddr(t)
	const token = "e2e-token"
	f := startFerry(t, func(addr string) string {
		return jsonConfig(addr, "") + fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = %q\n", adminAddr, token)
	}, nil)

	get := func(method, path string, auth bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("GET", "/healthz", false); code != 200 {
		t.Fatalf("/healthz: got %d, want 200", code)
	}
	if code, _ := get("GET", "/metrics", false); code != 401 {
		t.Fatalf("/metrics without token: got %d, want 401", code)
	}
	if code, _ := get("GET", "/readyz", true); code != 200 {
		t.Fatalf("/readyz: got %d, want 200", code)
	}

	for _, args := range [][]string{
		{"-x", "http://" + f.addr, target.URL + "/"},
		{"--socks5", f.addr, target.URL + "/"},
	} {
		if got := curl(t, args...); got != testkit.TargetBody {
			t.Fatalf("curl %q: got %q, want %q", args, got, testkit.TargetBody)
		}
	}

	// A live CONNECT tunnel, listed and then closed through the API.
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", echo.Addr, echo.Addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: got %v %v, want 200", resp, err)
	}
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: got %q %v, want ping", buf, err)
	}
	var chans []struct {
		ID, Target, Protocol string
	}
	code, body := get("GET", "/channels", true)
	if code != 200 {
		t.Fatalf("/channels: got %d, want 200", code)
	}
	if err := json.Unmarshal([]byte(body), &chans); err != nil || len(chans) != 1 || chans[0].Target != echo.Addr || chans[0].Protocol != "connect" {
		t.Fatalf("/channels: got %s (%v), want one connect channel to %s", body, err, echo.Addr)
	}
	if code, _ := get("DELETE", "/channels/"+chans[0].ID, true); code != 200 {
		t.Fatalf("DELETE /channels/%s: got %d, want 200", chans[0].ID, code)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("closed tunnel: read a byte, want EOF")
	}
	f.waitLine(t, "access", func(l logLine) bool { return l.str("reason") == "closed by admin" })

	code, body = get("GET", "/metrics", true)
	if code != 200 {
		t.Fatalf("/metrics: got %d, want 200", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	sample := func(name string, labels map[string]string) float64 {
		for _, m := range mfs[name].GetMetric() {
			ok := true
			for _, lp := range m.GetLabel() {
				if v, want := labels[lp.GetName()]; want && v != lp.GetValue() {
					ok = false
				}
			}
			if ok && m.Counter != nil {
				return m.Counter.GetValue()
			}
		}
		return -1
	}
	if got := sample("ferry_connections_accepted_total", map[string]string{"listener": "e2e"}); got != 3 {
		t.Errorf("ferry_connections_accepted_total: got %v, want 3", got)
	}
	if got := sample("ferry_channels_closed_total", map[string]string{"reason": "completed"}); got != 1 {
		t.Errorf("ferry_channels_closed_total{reason=completed}: got %v, want 1 (the plain HTTP request)", got)
	}
	if got := sample("ferry_channels_closed_total", map[string]string{"reason": "closed_by_admin"}); got != 1 {
		t.Errorf("ferry_channels_closed_total{reason=closed_by_admin}: got %v, want 1", got)
	}
	if got := sample("ferry_handshakes_total", map[string]string{"protocol": "socks5", "outcome": "ok"}); got != 1 {
		t.Errorf("ferry_handshakes_total{socks5,ok}: got %v, want 1", got)
	}
	if got := sample("ferry_bytes_total", map[string]string{"direction": "down"}); got < float64(2*len(testkit.TargetBody)+4) {
		t.Errorf("ferry_bytes_total{down}: got %v, want at least %d", got, 2*len(testkit.TargetBody)+4)
	}
	if _, ok := mfs["go_goroutines"]; !ok {
		t.Error("go_goroutines: missing from /metrics")
	}
}
