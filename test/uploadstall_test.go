//go:build linux

package test

import (
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// stallHarness sends a POST with Content-Length 1000 through the proxy
// (absolute-form) and writes `sent` bytes of its body, ending it only
// when that is all of it. It reports the answer's status as Body, as
// soon as the answer's head is in: Node's client reads an answer while
// its request is still open, as a full-duplex client does.
const stallHarness = `
const http = require('http');
const [proxyHost, proxyPort, url, sent, limitMs] = process.argv.slice(1);
const report = (how, body) => {
  console.log(JSON.stringify({how, body, sent: +sent}));
  process.exit(0);
};
setTimeout(() => report('open', ''), +limitMs);
const host = new URL(url).host;
const req = http.request({host: proxyHost, port: +proxyPort, method: 'POST', agent: false,
  path: url, headers: {Host: host, 'Content-Length': '1000'}});
req.on('error', (e) => report('error: ' + e.message, ''));
req.on('response', (res) => report('answered', String(res.statusCode)));
req.write('x'.repeat(+sent));
if (+sent === 1000) req.end();
`

// TestUploadStallBlame: real clients upload through ferry to nginx,
// which reads a request body whole before it passes the request on
// (proxy_pass, with nginx's request buffering). When Node's body stops
// after 100 of its 1,000 bytes, Node is told 408 once idle_timeout
// passes; when curl sends the whole body and nginx's own upstream never
// answers, curl is told 504. Both access lines say idle timeout. In the
// first case ferry's read of the body and its wait for the answer run
// out at about the same time: where the body's sender waits decides,
// not which wait runs out first.
func TestUploadStallBlame(t *testing.T) {
	t.Parallel()
	needCurl(t)
	silent := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		io.Copy(io.Discard, c) // until nginx gives up on it
	}).Addr
	origin := startNginx(t, `location /up {
        proxy_pass http://`+silent+`;
        proxy_read_timeout 5s;
    }`)
	f := startFerry(t, withJSON(`idle_timeout = "1s"`), nil)
	host, port, _ := net.SplitHostPort(f.addr)
	check := func(t *testing.T, path string, status int64) {
		t.Helper()
		l := f.waitLine(t, "access", func(l logLine) bool { return strings.HasSuffix(l.str("url"), path) })
		if got, _ := l.num("status"); got != status || l.str("reason") != "idle timeout" {
			t.Fatalf("access line: status %v, reason %q; want %d, idle timeout: %v", l["status"], l.str("reason"), status, l)
		}
	}
	t.Run("client stalls", func(t *testing.T) {
		url := "http://" + origin + "/up/stall"
		r := runNode(t, stallHarness, host, port, url, "100", "10000")
		if r.How != "answered" || r.Body != "408" {
			t.Fatalf("node: %+v, want a 408", r)
		}
		check(t, "/up/stall", 408)
	})
	t.Run("origin silent", func(t *testing.T) {
		res := curlMayFail(t, "-x", "http://"+f.addr, "--data-binary", strings.Repeat("x", 1000),
			"-o", "/dev/null", "-w", "%{http_code}", "http://"+origin+"/up/silent")
		if res.stdout != strconv.Itoa(504) {
			t.Fatalf("curl got %q (exit %d, %s), want 504", res.stdout, res.code, res.stderr)
		}
		check(t, "/up/silent", 504)
	})
}
