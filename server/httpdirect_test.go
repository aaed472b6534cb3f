package server

import (
	"bufio"
	"bytes"
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

// stagedOrigin answers each request on a connection with the next of
// parts' responses, in two pieces: first, then (after next is received
// from) rest. A rest of "" closes the connection after first.
type stagedPart struct{ first, rest string }

func stagedOrigin(t *testing.T, next <-chan struct{}, conns *atomic.Int32, parts ...stagedPart) string {
	t.Helper()
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		conns.Add(1)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for _, p := range parts {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			req.Body.Close()
			if _, err := io.WriteString(c, p.first); err != nil || p.rest == "" {
				return
			}
			select {
			case <-next:
			case <-time.After(5 * time.Second):
				return
			}
			io.WriteString(c, p.rest)
		}
	}).Addr
}

// A Content-Length body no data hook reads goes from the upstream
// reader's buffer straight to the client (writeDirect): the head must
// not wait for a body that is slow to come, every byte must arrive as
// sent, the next response on the same connections must be intact, and a
// body cut short must not look complete.
func TestHTTPDirectBody(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 80<<10/16) // 80 KiB
	bigResp := func(i int) string {
		b := append([]byte(nil), big...)
		b[0] = byte('A' + i)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-N: %d\r\nContent-Length: %d\r\n\r\n%s", i, len(b), b)
	}
	tests := []struct {
		name string
		// split is where each response is cut into first and rest.
		split    func(resp string) int
		small    bool
		wantKeep bool
	}{
		// The head alone, then the body: the head must come first.
		{name: "head then body", split: func(r string) int { return strings.Index(r, "\r\n\r\n") + 4 }, wantKeep: true},
		// The head with some of the body, then the rest.
		{name: "head and part", split: func(r string) int { return strings.Index(r, "\r\n\r\n") + 1000 }, wantKeep: true},
		// A small body that fits behind its head.
		{name: "small", small: true, split: func(r string) int { return strings.Index(r, "\r\n\r\n") + 4 }, wantKeep: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := make(chan struct{})
			var resps []string
			var parts []stagedPart
			for i := range 2 {
				r := bigResp(i)
				if tt.small {
					r = fmt.Sprintf("HTTP/1.1 200 OK\r\nX-N: %d\r\nContent-Length: 5\r\n\r\nsmal%d", i, i)
				}
				resps = append(resps, r)
				parts = append(parts, stagedPart{first: r[:tt.split(r)], rest: r[tt.split(r):]})
			}
			var conns atomic.Int32
			origin := stagedOrigin(t, next, &conns, parts...)
			f := start(t, basicConfig)
			p := newProxyClient(t, f.addr)
			p.c.SetDeadline(time.Now().Add(10 * time.Second))
			for i, r := range resps {
				fmt.Fprintf(p.c, "GET http://%s/%d HTTP/1.1\r\nHost: %s\r\n\r\n", origin, i, origin)
				head, err := readTestHead(p)
				if err != nil {
					t.Fatalf("response %d head: %v (origin still holds the rest)", i, err)
				}
				if !strings.Contains(head, fmt.Sprintf("X-N: %d\r\n", i)) {
					t.Fatalf("response %d: head %q", i, head)
				}
				next <- struct{}{}
				body := r[strings.Index(r, "\r\n\r\n")+4:]
				got := make([]byte, len(body))
				if _, err := io.ReadFull(p.br, got); err != nil {
					t.Fatalf("response %d body: %v", i, err)
				}
				if string(got) != body {
					t.Fatalf("response %d: body differs from what the origin sent", i)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("origin saw %d connections, want 1 (kept alive)", n)
			}
			// One access line per request, each counting what the
			// client got.
			waitFor(t, func() bool { return strings.Count(f.logs.String(), `"message":"access"`) == 2 })
		})
	}
}

// A Content-Length body the origin cuts short reaches the client as far
// as it came, and the client's connection then closes: keeping it
// would let the client read the next response as the rest of this one.
func TestHTTPDirectBodyCut(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 40000)
	var conns atomic.Int32
	origin := stagedOrigin(t, nil, &conns, stagedPart{first: resp})
	f := start(t, basicConfig)
	p := newProxyClient(t, f.addr)
	p.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(p.c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
	if _, err := readTestHead(p); err != nil {
		t.Fatalf("head: %v", err)
	}
	got, err := io.ReadAll(p.br)
	if len(got) != 40000 || isTimeout(err) {
		t.Fatalf("got %d body bytes (err %v), want the 40000 sent and then the end", len(got), err)
	}
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"message":"access"`) })
}
