package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ferry/test/testkit"
)

// closingOrigin answers each connection's first request with a framed,
// keep-alive-looking response and then closes it without saying so, as an
// origin whose idle timeout fires at once would. It counts connections
// opened and closed.
func closingOrigin(t *testing.T) (addr string, conns, closed *atomic.Int64) {
	t.Helper()
	conns, closed = &atomic.Int64{}, &atomic.Int64{}
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		defer closed.Add(1)
		defer c.Close()
		n := conns.Add(1)
		c.SetDeadline(time.Now().Add(time.Minute))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		msg := fmt.Sprintf("conn %d %s %s", n, req.Method, body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
	}).Addr, conns, closed
}

// TestHTTPReuseAfterSilentClose: requests sent right after the origin
// silently closed the kept-alive connection still get through: a GET,
// which may skip the look at a just-used connection, is sent again on a
// new one; a POST with a body, which could not be sent twice, is never
// put on a connection ferry has not looked at.
func TestHTTPReuseAfterSilentClose(t *testing.T) {
	origin, conns, closed := closingOrigin(t)
	f := start(t, basicConfig)
	c := dial(t, f.addr)
	br := bufio.NewReader(c)
	for i, r := range []struct{ method, body string }{{"GET", ""}, {"GET", ""}, {"POST", "data"}, {"POST", "more"}, {"GET", ""}} {
		// Each request goes after the origin has closed the connection
		// of the one before: otherwise ferry's look at it could come
		// before the close, which no look can see, and a POST would
		// fail for the origin's timing rather than for ferry's choice.
		for deadline := time.Now().Add(5 * time.Second); closed.Load() != conns.Load(); {
			if time.Now().After(deadline) {
				t.Fatalf("request %d: the origin closed %d of %d connections", i, closed.Load(), conns.Load())
			}
			time.Sleep(time.Millisecond)
		}
		fmt.Fprintf(c, "%s http://%s/ HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", r.method, origin, origin, len(r.body), r.body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasSuffix(string(got), r.method+" "+r.body) {
			t.Fatalf("request %d (%s): %d %q", i, r.method, resp.StatusCode, got)
		}
	}
	if n := conns.Load(); n != 5 {
		t.Errorf("origin connections %d, want one per request", n)
	}
}
