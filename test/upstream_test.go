//go:build linux

package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// End-to-end tests of upstreams: ferry reaching targets through the real
// parent proxies of peers_test.go, alone, chained (via), grouped
// (members) and picked by [[route]], and the client-visible errors when a
// parent refuses, hangs or rejects ferry's credentials. Which parent a
// request went through is proven by the parent's own log and by the
// access line's upstream and chain fields.

// upstreamConfig is the e2e listener (every proxy protocol, the log
// plugin, JSON log) with dial_timeout and tables: [[upstream]] and
// [[route]] tables.
func upstreamConfig(dialTimeout, tables string) func(addr string) string {
	return chainConfig([]string{"log"}, fmt.Sprintf(`[defaults]
dial_timeout = %q

%s

[[plugin]]
name = "log"
`, dialTimeout, tables))
}

// upstreamTable is an [[upstream]] table; extra are more of its lines
// (via, ca_file, health_check).
func upstreamTable(name, url string, extra ...string) string {
	return fmt.Sprintf("[[upstream]]\nname = %q\nurl = %q\n%s\n", name, url, strings.Join(extra, "\n"))
}

// groupTable is an [[upstream]] group of members.
func groupTable(name, strategy string, members ...string) string {
	return fmt.Sprintf("[[upstream]]\nname = %q\nmembers = [%s]\nstrategy = %q\n", name, quoteList(members), strategy)
}

// routeAll is a [[route]] without conditions: every request goes to
// upstream.
func routeAll(upstream string) string {
	return fmt.Sprintf("[[route]]\nupstream = %q\n", upstream)
}

// checkHops checks an access line's upstream (the name the route chose)
// and chain (the parents traversed, first hop first; "" wants none, as
// for direct).
func checkHops(t *testing.T, l logLine, upstream, chain string) {
	t.Helper()
	if got := l.str("upstream"); got != upstream {
		t.Errorf("access upstream = %q, want %q: %v", got, upstream, l)
	}
	got, has := l["chain"]
	if chain == "" && has {
		t.Errorf("access chain = %v, want none: %v", got, l)
	}
	if chain != "" && l.str("chain") != chain {
		t.Errorf("access chain = %v, want %q: %v", got, chain, l)
	}
}

// accessLines waits until ferry has logged n access lines for target and
// returns them.
func accessLines(t *testing.T, f *proc, target string, n int) []logLine {
	t.Helper()
	waitFor(t, func() bool { return len(f.lines("access", byTarget(target))) >= n })
	return f.lines("access", byTarget(target))
}

// echoVia opens a tunnel to target (an echo target) through ferry and
// checks that a line comes back.
func echoVia(t *testing.T, dial tunnelDialer, proxyAddr, target string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dial(ctx, proxyAddr, target)
	if err != nil {
		t.Fatalf("tunnel to %s through ferry: %v", target, err)
	}
	defer c.Close()
	if err := echo(c, "through the parent\n"); err != nil {
		t.Fatalf("tunnel to %s through ferry: %v", target, err)
	}
}

// getVia GETs url through ferry with curl: plain HTTP proxying when
// socks is false, SOCKS5 with the name left to ferry otherwise. It wants
// the target's body.
func getVia(t *testing.T, proxyAddr, url string, socks bool) {
	t.Helper()
	args := []string{"-x", "http://" + proxyAddr, url}
	if socks {
		args = []string{"--socks5-hostname", proxyAddr, url}
	}
	if body := curl(t, args...); body != testkit.TargetBody {
		t.Fatalf("curl %q: body %q, want %q", args, body, testkit.TargetBody)
	}
}

// askGET sends a plain proxy GET for target and returns the status.
func askGET(c net.Conn, target string) (string, error) {
	fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	return readStatus(c, http.MethodGet)
}

// TestUpstreamParents: each parent alone as the upstream: dante without
// and with username/password and microsocks (as socks5h) over SOCKS5,
// tinyproxy and squid (Basic credentials in the upstream URL) over
// CONNECT. Plain HTTP proxying (curl -x), SOCKS5 (curl --socks5-hostname,
// a Go client) and CONNECT clients all reach their targets through it:
// the parent's log names each target, and ferry's access lines name the
// upstream and the chain.
func TestUpstreamParents(t *testing.T) {
	t.Parallel()
	same := func(hostport string) string { return hostport }
	tests := []struct {
		name string
		// start runs the parent and returns the upstream URL and its log.
		start func(t *testing.T) (url, log string)
		// inLog is how the parent's log writes a target's host:port; nil:
		// it has no log.
		inLog func(hostport string) string
	}{
		{name: "dante", inLog: danteAddr, start: func(t *testing.T) (string, string) {
			addr, log := startDante(t, false)
			return "socks5://" + addr, log
		}},
		{name: "dante-auth", inLog: danteAddr, start: func(t *testing.T) (string, string) {
			addr, log := startDante(t, true)
			return "socks5://" + danteUser + ":" + dantePass + "@" + addr, log
		}},
		{name: "micro", start: func(t *testing.T) (string, string) {
			return "socks5h://" + startMicrosocks(t), ""
		}},
		{name: "tiny", inLog: same, start: func(t *testing.T) (string, string) {
			addr, log := startTinyproxy(t)
			return "http://" + addr, log
		}},
		{name: "squid", inLog: same, start: func(t *testing.T) (string, string) {
			addr, log := startSquid(t, "alice", "wonder", "")
			return "http://alice:wonder@" + addr, log
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			needCurl(t)
			url, log := tt.start(t)
			web := testkit.HTTPTarget(t)
			webAddr := web.Listener.Addr().String()
			connectEcho, socksEcho := newEchoTarget(t), newEchoTarget(t)
			f := startFerry(t, upstreamConfig("10s", upstreamTable(tt.name, url)+routeAll(tt.name)), nil)

			getVia(t, f.addr, "http://"+webAddr+"/", false)
			getVia(t, f.addr, "http://"+webAddr+"/", true)
			echoVia(t, testkit.DialCONNECT, f.addr, connectEcho.Addr)
			echoVia(t, testkit.DialSOCKS5, f.addr, socksEcho.Addr)

			for target, n := range map[string]int{webAddr: 2, connectEcho.Addr: 1, socksEcho.Addr: 1} {
				for _, l := range accessLines(t, f, target, n) {
					checkHops(t, l, tt.name, tt.name)
				}
				if tt.inLog != nil {
					waitLogged(t, log, tt.inLog(target))
				}
			}
		})
	}
}

// TestUpstreamHTTPS: squid's https_port as the upstream, CONNECT over TLS.
// With the test CA as ca_file, or with insecure_skip_verify, requests go
// through; with neither, the parent's certificate is not trusted and the
// client gets 502.
func TestUpstreamHTTPS(t *testing.T) {
	t.Parallel()
	needCurl(t)
	addr, caFile, log := startHTTPSParent(t, "alice", "wonder")
	url := "https://alice:wonder@" + addr
	tests := []struct {
		name  string
		extra string
		ok    bool
	}{
		{name: "ca_file", extra: fmt.Sprintf("ca_file = %q", caFile), ok: true},
		{name: "insecure_skip_verify", extra: "insecure_skip_verify = true", ok: true},
		{name: "system roots", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			web := testkit.HTTPTarget(t)
			webAddr := web.Listener.Addr().String()
			f := startFerry(t, upstreamConfig("10s", upstreamTable("tls", url, tt.extra)+routeAll("tls")), nil)
			if !tt.ok {
				if got := ask(t, f.addr, webAddr, askCONNECT); got != "502" {
					t.Errorf("CONNECT through a parent with an untrusted certificate: got %s, want 502", got)
				}
				l := accessLines(t, f, webAddr, 1)[0]
				if l.str("upstream") != "tls" || l.str("error") == "" {
					t.Errorf("access line: want upstream tls and an error: %v", l)
				}
				if logged(log, webAddr) {
					t.Errorf("squid's log names %s although the TLS handshake failed:\n%s", webAddr, readLog(log))
				}
				return
			}
			getVia(t, f.addr, "http://"+webAddr+"/", false)
			getVia(t, f.addr, "http://"+webAddr+"/", true)
			for _, l := range accessLines(t, f, webAddr, 2) {
				checkHops(t, l, "tls", "tls")
			}
			waitLogged(t, log, webAddr)
		})
	}
}

// chainSize is sent each way through the tinyproxy-dante chain.
const chainSize = 16 << 20

// exchange sends size bytes of the stream for seed over c while it reads
// size bytes from c, and returns both digests. It does not half-close:
// tinyproxy ends a tunnel at the first EOF from either side.
func exchange(c net.Conn, seed uint64, size int64) (sent, got digest, err error) {
	var rerr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		got, rerr = receive(io.LimitReader(c, size))
	}()
	sent, err = send(c, seed, size)
	<-done
	return sent, got, errors.Join(err, rerr)
}

// TestUpstreamChain: ferry -> tinyproxy -> dante -> target (dante's via is
// tinyproxy). 16 MiB go each way with equal SHA-256 at both ends, for a
// CONNECT and a SOCKS5 client; tinyproxy's log shows the tunnel to dante,
// dante's the target, and the access line's chain is "tiny>dante".
func TestUpstreamChain(t *testing.T) {
	t.Parallel()
	tinyAddr, tinyLog := startTinyproxy(t)
	danteProxy, danteLog := startDante(t, false)
	f := startFerry(t, upstreamConfig("10s",
		upstreamTable("tiny", "http://"+tinyAddr)+
			upstreamTable("dante", "socks5://"+danteProxy, `via = "tiny"`)+
			routeAll("dante")), nil)

	for i, dial := range []tunnelDialer{testkit.DialCONNECT, testkit.DialSOCKS5} {
		t.Run([]string{"connect", "socks5"}[i], func(t *testing.T) {
			t.Parallel()
			seedUp, seedDown := uint64(100+2*i), uint64(101+2*i)
			// The streams are deterministic: what each end must have sent
			// and received is known beforehand.
			wantUp, _ := send(io.Discard, seedUp, chainSize)
			wantDown, _ := send(io.Discard, seedDown, chainSize)
			ends := make(chan bulkEnd, 1)
			target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
				deadlineAfter(c, bulkTimeout)
				var e bulkEnd
				e.sent, e.got, e.err = exchange(c, seedDown, chainSize)
				ends <- e
			})
			ctx, cancel := context.WithTimeout(context.Background(), bulkTimeout)
			defer cancel()
			c, err := dial(ctx, f.addr, target.Addr)
			if err != nil {
				t.Fatalf("tunnel through the chain: %v", err)
			}
			deadlineAfter(c, bulkTimeout)
			sent, got, err := exchange(c, seedUp, chainSize)
			c.Close()
			if err != nil {
				t.Errorf("client: %v", err)
			}
			end := <-ends // the target's deadline bounds the wait
			if end.err != nil {
				t.Errorf("target: %v", end.err)
			}
			for _, d := range []struct {
				what      string
				got, want digest
			}{
				{"client sent", sent, wantUp},
				{"target received", end.got, wantUp},
				{"target sent", end.sent, wantDown},
				{"client received", got, wantDown},
			} {
				if d.got != d.want {
					t.Errorf("%s %v, want %v", d.what, d.got, d.want)
				}
			}

			l := accessLines(t, f, target.Addr, 1)[0]
			checkHops(t, l, "dante", "tiny>dante")
			for _, k := range []string{"up", "down"} {
				if n, _ := l.num(k); n != chainSize {
					t.Errorf("access %s = %v, want %d", k, l[k], chainSize)
				}
			}
			// dante reached the target; tinyproxy only dante.
			waitLogged(t, danteLog, danteAddr(target.Addr))
			waitLogged(t, tinyLog, danteProxy)
			if logged(tinyLog, target.Addr) {
				t.Errorf("tinyproxy's log names the target %s, want only dante:\n%s", target.Addr, readLog(tinyLog))
			}
		})
	}
}

// TestUpstreamGroups: a failover group whose first member is down serves
// every request through the second, with no client-visible error; a
// round-robin group of dante and microsocks spreads requests over both;
// random and least-connections groups serve through their members; a
// group whose members are all down fails fast with 502.
func TestUpstreamGroups(t *testing.T) {
	t.Parallel()
	t.Run("failover", func(t *testing.T) {
		t.Parallel()
		needCurl(t)
		web := testkit.HTTPTarget(t)
		webAddr := web.Listener.Addr().String()
		echoes := newEchoTarget(t)
		check := fmt.Sprintf(`health_check = { interval = "1s", target = %q, timeout = "1s" }`, webAddr)
		f := startFerry(t, upstreamConfig("10s",
			upstreamTable("dead", "socks5://"+testkit.ClosedAddr(t), check)+
				upstreamTable("micro", "socks5://"+startMicrosocks(t))+
				groupTable("pool", "failover", "dead", "micro")+
				routeAll("pool")), nil)

		for range 3 {
			getVia(t, f.addr, "http://"+webAddr+"/", false)
			echoVia(t, testkit.DialSOCKS5, f.addr, echoes.Addr)
		}
		for _, target := range []string{webAddr, echoes.Addr} {
			for _, l := range accessLines(t, f, target, 3) {
				checkHops(t, l, "pool", "micro")
			}
		}
	})

	t.Run("round-robin", func(t *testing.T) {
		t.Parallel()
		danteProxy, danteLog := startDante(t, false)
		echoes := newEchoTarget(t)
		f := startFerry(t, upstreamConfig("10s",
			upstreamTable("dante", "socks5://"+danteProxy)+
				upstreamTable("micro", "socks5://"+startMicrosocks(t))+
				groupTable("pool", "round-robin", "dante", "micro")+
				routeAll("pool")), nil)

		const n = 6
		for i := range n {
			dial := testkit.DialSOCKS5
			if i%3 == 2 {
				dial = testkit.DialCONNECT
			}
			echoVia(t, dial, f.addr, echoes.Addr)
		}
		served := map[string]int{}
		for _, l := range accessLines(t, f, echoes.Addr, n) {
			if l.str("upstream") != "pool" {
				t.Errorf("access upstream = %q, want pool: %v", l.str("upstream"), l)
			}
			served[l.str("chain")]++
		}
		if served["dante"] == 0 || served["micro"] == 0 || served["dante"]+served["micro"] != n {
			t.Errorf("%d requests served by (access chain): %v, want both dante and micro and nothing else", n, served)
		}
		waitLogged(t, danteLog, danteAddr(echoes.Addr))
	})

	for _, strategy := range []string{"random", "least-connections"} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			danteProxy, _ := startDante(t, false)
			echoes := newEchoTarget(t)
			f := startFerry(t, upstreamConfig("10s",
				upstreamTable("dante", "socks5://"+danteProxy)+
					upstreamTable("micro", "socks5://"+startMicrosocks(t))+
					groupTable("pool", strategy, "dante", "micro")+
					routeAll("pool")), nil)
			for range 4 {
				echoVia(t, testkit.DialSOCKS5, f.addr, echoes.Addr)
			}
			for _, l := range accessLines(t, f, echoes.Addr, 4) {
				if l.str("upstream") != "pool" || (l.str("chain") != "dante" && l.str("chain") != "micro") {
					t.Errorf("access line: want upstream pool and chain dante or micro: %v", l)
				}
			}
		})
	}

	t.Run("all down", func(t *testing.T) {
		t.Parallel()
		// A long dial_timeout: refused members must not wait for it.
		const timeout = 10 * time.Second
		f := startFerry(t, upstreamConfig(timeout.String(),
			upstreamTable("down1", "socks5://"+testkit.ClosedAddr(t))+
				upstreamTable("down2", "http://"+testkit.ClosedAddr(t))+
				groupTable("pool", "failover", "down1", "down2")+
				routeAll("pool")), nil)
		for _, a := range []struct {
			ask  refusal
			want []string
		}{
			{askCONNECT, []string{"502"}},
			{askGET, []string{"502"}},
			// Refused, unreachable, or (once the members are marked down
			// and none is tried) general failure.
			{askSOCKS5, []string{"REP 0x05", "REP 0x04", "REP 0x01"}},
		} {
			target := testkit.ClosedAddr(t)
			start := time.Now()
			got := ask(t, f.addr, target, a.ask)
			elapsed := time.Since(start)
			if !slices.Contains(a.want, got) {
				t.Errorf("all members down: got %s, want one of %v", got, a.want)
			}
			if elapsed >= timeout/2 {
				t.Errorf("all members down: the answer took %v, want well under dial_timeout %v (refused dials)", elapsed, timeout)
			}
			if l := accessLines(t, f, target, 1)[0]; l.str("upstream") != "pool" || l.str("error") == "" {
				t.Errorf("access line: want upstream pool and an error: %v", l)
			}
		}
	})
}

// TestUpstreamRoutes: ordered routes, first match wins. *.a.test goes
// through squid (whose hosts file maps www.a.test to 127.0.0.1),
// 127.0.0.2/32 and one port (with client and listener conditions)
// through dante, *.blocked.test and 127.0.0.3 are rejected, everything
// else goes direct. Each parent's log names exactly its targets, and
// ferry's access lines name the upstream.
func TestUpstreamRoutes(t *testing.T) {
	t.Parallel()
	needCurl(t)
	web := testkit.HTTPTarget(t) // 127.0.0.1: direct, and www.a.test through squid
	webAddr := web.Listener.Addr().String()
	_, webPort, _ := net.SplitHostPort(webAddr)
	named := net.JoinHostPort("www.a.test", webPort)

	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.2: %v", err)
	}
	web2 := httptest.NewUnstartedServer(web.Config.Handler)
	web2.Listener.Close()
	web2.Listener = ln
	web2.Start()
	t.Cleanup(web2.Close)
	web2Addr := ln.Addr().String()

	byPort := newEchoTarget(t) // 127.0.0.1, routed by its port
	_, echoPort, _ := net.SplitHostPort(byPort.Addr)

	squidAddr, squidLog := startSquid(t, "alice", "wonder", "127.0.0.1 www.a.test\n")
	danteProxy, danteLog := startDante(t, false)
	// The name reject comes before the CIDR routes so that no name is
	// looked up; www.a.test in it is shadowed by the first route.
	f := startFerry(t, upstreamConfig("10s",
		upstreamTable("squid", "http://alice:wonder@"+squidAddr)+
			upstreamTable("dante", "socks5://"+danteProxy)+
			fmt.Sprintf(`[[route]]
match = ["*.a.test"]
upstream = "squid"

[[route]]
match = ["*.blocked.test", "www.a.test"]
reject = true

[[route]]
match = ["127.0.0.3/32"]
reject = true

[[route]]
match = ["127.0.0.2/32"]
upstream = "dante"

[[route]]
port = [%q]
client = ["127.0.0.0/8"]
listener = ["e2e"]
upstream = "dante"
`, echoPort)), nil)

	getVia(t, f.addr, "http://"+named+"/", false)
	getVia(t, f.addr, "http://"+named+"/", true)
	getVia(t, f.addr, "http://"+web2Addr+"/", false)
	getVia(t, f.addr, "http://"+web2Addr+"/", true)
	getVia(t, f.addr, "http://"+webAddr+"/", false)
	getVia(t, f.addr, "http://"+webAddr+"/", true)
	echoVia(t, testkit.DialCONNECT, f.addr, byPort.Addr)

	for _, r := range []struct {
		target string
		ask    refusal
		want   string
	}{
		{"www.blocked.test:443", askCONNECT, "403"},
		{"www.blocked.test:80", askGET, "403"},
		{"127.0.0.3:9", askSOCKS5, "REP 0x02"},
		{"127.0.0.3:80", askGET, "403"},
	} {
		if got := ask(t, f.addr, r.target, r.ask); got != r.want {
			t.Errorf("rejected %s: got %s, want %s", r.target, got, r.want)
		}
		accessLines(t, f, r.target, 1)
	}

	for _, want := range []struct {
		target, upstream string
		n                int
	}{
		{named, "squid", 2},
		{web2Addr, "dante", 2},
		{webAddr, "direct", 2},
		{byPort.Addr, "dante", 1},
	} {
		chain := want.upstream
		if chain == "direct" {
			chain = ""
		}
		for _, l := range accessLines(t, f, want.target, want.n) {
			checkHops(t, l, want.upstream, chain)
		}
	}

	waitLogged(t, squidLog, named)
	waitLogged(t, danteLog, danteAddr(web2Addr))
	waitLogged(t, danteLog, danteAddr(byPort.Addr))
	for _, other := range []string{web2Addr, webAddr, byPort.Addr, "www.blocked.test", "127.0.0.3"} {
		if logged(squidLog, other) {
			t.Errorf("squid's log names %s, which is not routed to squid:\n%s", other, readLog(squidLog))
		}
	}
	for _, other := range []string{"www.a.test", danteAddr(webAddr), "www.blocked.test", "127.0.0.3"} {
		if logged(danteLog, other) {
			t.Errorf("dante's log names %s, which is not routed to dante:\n%s", other, readLog(danteLog))
		}
	}
}

// TestUpstreamErrors: how parent failures reach the client. A parent
// that rejects ferry's credentials (dante, squid): 502 / SOCKS5 0x01 and
// an "upstream auth failed" line naming the upstream; a parent that
// refuses connections: 502 / 0x05; a parent that never answers: 504 /
// 0x06 within dial_timeout. The access lines name the upstream.
func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	squidAddr, squidLog := startSquid(t, "alice", "wonder", "")
	silent := newSilentParent(t)
	const timeout = 2 * time.Second
	// Each upstream has its own range of target ports; nothing listens on
	// them, and no request gets that far.
	type errorCase struct {
		upstream, url string
		ports         int    // the first of ten target ports routed to it
		status        string // the answer to CONNECT and to a plain GET
		socks         string // the answer to SOCKS5
		authFailed    bool
	}
	tests := []errorCase{
		{"squid-badpass", "http://alice:wrong@" + squidAddr, 1010, "502", "REP 0x01", true},
		{"socks-down", "socks5://" + testkit.ClosedAddr(t), 1020, "502", "REP 0x05", false},
		{"http-down", "http://" + testkit.ClosedAddr(t), 1030, "502", "REP 0x05", false},
		{"socks-silent", "socks5://" + silent, 1040, "504", "REP 0x06", false},
		{"http-silent", "http://" + silent, 1050, "504", "REP 0x06", false},
	}
	if os.Geteuid() == 0 { // dante's passwords are system users'
		danteProxy, _ := startDante(t, true)
		tests = append(tests, errorCase{"dante-badpass", "socks5://" + danteUser + ":wrong@" + danteProxy, 1000, "502", "REP 0x01", true})
	} else {
		t.Log("not root: no dante with a wrong password (dante checks system users)")
	}
	var tables strings.Builder
	for _, tt := range tests {
		tables.WriteString(upstreamTable(tt.upstream, tt.url))
		fmt.Fprintf(&tables, "[[route]]\nport = [\"%d-%d\"]\nupstream = %q\n\n", tt.ports, tt.ports+9, tt.upstream)
	}
	f := startFerry(t, upstreamConfig(timeout.String(), tables.String()), nil)

	for _, tt := range tests {
		t.Run(tt.upstream, func(t *testing.T) {
			t.Parallel()
			for i, a := range []struct {
				ask  refusal
				want string
			}{{askCONNECT, tt.status}, {askGET, tt.status}, {askSOCKS5, tt.socks}} {
				target := fmt.Sprintf("127.0.0.1:%d", tt.ports+i)
				start := time.Now()
				got := ask(t, f.addr, target, a.ask)
				elapsed := time.Since(start)
				if got != a.want {
					t.Errorf("%s: got %s, want %s", target, got, a.want)
				}
				// A generous margin: this checks that dial_timeout bounds
				// the wait, not how fast ferry is.
				if limit := timeout + 3*time.Second; elapsed > limit {
					t.Errorf("%s: answered after %v, want within dial_timeout %v (+3s)", target, elapsed, timeout)
				}
				l := accessLines(t, f, target, 1)[0]
				if l.str("upstream") != tt.upstream || l.str("error") == "" {
					t.Errorf("access line: want upstream %s and an error: %v", tt.upstream, l)
				}
				if want, err := strconv.Atoi(a.want); err == nil {
					if status, _ := l.num("status"); status != int64(want) {
						t.Errorf("access status = %v, want %d: %v", l["status"], want, l)
					}
				}
			}
			if tt.authFailed {
				defer func() {
					if t.Failed() {
						t.Logf("ferry's log:\n%s", f.stderr.String())
					}
				}()
				waitFor(t, func() bool {
					for _, l := range f.logLines() {
						if strings.Contains(l.str("message"), "upstream auth failed") && l.str("upstream") == tt.upstream {
							return true
						}
					}
					return false
				})
			}
		})
	}
	// squid refused ferry's credentials: it logged 407s, no tunnel.
	t.Cleanup(func() {
		if log := readLog(squidLog); strings.Contains(log, "TCP_TUNNEL/200") || strings.Contains(log, "TCP_MISS/") {
			t.Errorf("squid let a request with the wrong password through:\n%s", log)
		}
	})
}

// TestUpstreamCLI: `ferry run --upstream URL` without a config file sends
// every request through that parent; repeated, the flags make a chain,
// first hop first.
func TestUpstreamCLI(t *testing.T) {
	t.Parallel()
	needCurl(t)
	t.Run("one", func(t *testing.T) {
		t.Parallel()
		danteProxy, danteLog := startDante(t, false)
		web := testkit.HTTPTarget(t)
		webAddr := web.Listener.Addr().String()
		f := startFerry(t, nil, func(addr string) []string {
			return []string{"--listen", addr, "--log-format", "json", "--upstream", "socks5://" + danteProxy}
		})
		getVia(t, f.addr, "http://"+webAddr+"/", false)
		getVia(t, f.addr, "http://"+webAddr+"/", true)
		for _, l := range accessLines(t, f, webAddr, 2) {
			if up := l.str("upstream"); up == "" || up == "direct" || l.str("chain") == "" {
				t.Errorf("access line: want an upstream other than direct and a chain: %v", l)
			}
		}
		waitLogged(t, danteLog, danteAddr(webAddr))
	})
	t.Run("chain", func(t *testing.T) {
		t.Parallel()
		tinyAddr, tinyLog := startTinyproxy(t)
		danteProxy, danteLog := startDante(t, false)
		echoes := newEchoTarget(t)
		f := startFerry(t, nil, func(addr string) []string {
			return []string{"--listen", addr, "--log-format", "json",
				"--upstream", "http://" + tinyAddr, "--upstream", "socks5://" + danteProxy}
		})
		echoVia(t, testkit.DialCONNECT, f.addr, echoes.Addr)
		l := accessLines(t, f, echoes.Addr, 1)[0]
		if hops := strings.Split(l.str("chain"), ">"); len(hops) != 2 {
			t.Errorf("access chain = %q, want two hops: %v", l.str("chain"), l)
		}
		waitLogged(t, tinyLog, danteProxy)
		waitLogged(t, danteLog, danteAddr(echoes.Addr))
	})
}
