package server

import (
	"bufio"
	"bytes"
	"cmp"
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
// from, or at once when next is nil) rest, in trickle pieces 100 ms
// apart if trickle is set. A rest of "" closes the connection after
// first.
type stagedPart struct {
	first, rest string
	trickle     int
}

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
			if next != nil {
				select {
				case <-next:
				case <-time.After(5 * time.Second):
					return
				}
			}
			for k := max(p.trickle, 1); len(p.rest) > 0; k-- {
				piece := p.rest[:len(p.rest)/k]
				if _, err := io.WriteString(c, piece); err != nil {
					return
				}
				p.rest = p.rest[len(piece):]
				if len(p.rest) > 0 {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
	}).Addr
}

// A Content-Length body no data hook reads goes from the upstream
// reader's buffer straight to the client (writeDirect): the head must
// not wait for a body that is slow to come, every byte must arrive as
// sent, the next response on the same connections must be intact, and a
// body cut short must not look complete.
func TestHTTPDirectBody(t *testing.T) {
	bigResp := func(i, size int) string {
		b := bytes.Repeat([]byte("0123456789abcdef"), size/16)
		b[0] = byte('A' + i)
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-N: %d\r\nContent-Length: %d\r\n\r\n%s", i, len(b), b)
	}
	tests := []struct {
		name string
		// split is where each response is cut into first and rest.
		split    func(resp string) int
		small    bool
		size     int // of a big body: 80 KiB if 0
		wantKeep bool
	}{
		// The head alone, then the body: the head must come first.
		{name: "head then body", split: func(r string) int { return strings.Index(r, "\r\n\r\n") + 4 }, wantKeep: true},
		// The head with some of the body, then the rest.
		{name: "head and part", split: func(r string) int { return strings.Index(r, "\r\n\r\n") + 1000 }, wantKeep: true},
		// A small body that fits behind its head.
		{name: "small", small: true, split: func(r string) int { return strings.Index(r, "\r\n\r\n") + 4 }, wantKeep: true},
		// Larger than buffer_size (128 KiB): the rest is spliced, and
		// must stop at the body's end.
		{name: "spliced", size: 3 << 20, split: func(r string) int { return strings.Index(r, "\r\n\r\n") + 4 }, wantKeep: true},
		{name: "spliced after a part", size: 1 << 20, split: func(r string) int { return strings.Index(r, "\r\n\r\n") + 50000 }, wantKeep: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := make(chan struct{})
			var resps []string
			var parts []stagedPart
			for i := range 2 {
				r := bigResp(i, cmp.Or(tt.size, 80<<10))
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

// A Content-Length body the origin cuts short, or stops sending for
// longer than idle_timeout, reaches the client as far as it came, and
// the client's connection then closes: keeping it would let the client
// read the next response as the rest of this one. Over buffer_size the
// rest of the body is spliced, which must end the same way.
func TestHTTPDirectBodyCut(t *testing.T) {
	tests := []struct {
		name       string
		size, sent int
		stall      bool // the origin stays, silent
		trickle    int  // the origin sends the rest slowly, in pieces
	}{
		{name: "read", size: 100000, sent: 40000},
		{name: "spliced", size: 1 << 20, sent: 600000},
		{name: "read, stalled", size: 100000, sent: 40000, stall: true},
		{name: "spliced, stalled", size: 1 << 20, sent: 600000, stall: true},
		// Slow but never silent for idle_timeout: the deadline rolls
		// with each piece, and the whole body arrives.
		{name: "read, trickled", size: 100000, sent: 100000, trickle: 8},
		{name: "spliced, trickled", size: 1 << 20, sent: 1 << 20, trickle: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Repeat("x", tt.sent)
			head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", tt.size)
			part := stagedPart{first: head + body}
			var next chan struct{}
			switch {
			case tt.stall:
				part.rest, next = "never sent", make(chan struct{})
			case tt.trickle > 0:
				part = stagedPart{first: head + body[:1000], rest: body[1000:], trickle: tt.trickle}
			}
			var conns atomic.Int32
			origin := stagedOrigin(t, next, &conns, part)
			if next != nil {
				t.Cleanup(func() { close(next) }) // before the origin's own
			}
			f := start(t, idleConfig(300*time.Millisecond))
			p := newProxyClient(t, f.addr)
			p.c.SetDeadline(time.Now().Add(4 * time.Second))
			fmt.Fprintf(p.c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
			if _, err := readTestHead(p); err != nil {
				t.Fatalf("head: %v", err)
			}
			got, err := io.ReadAll(p.br)
			if len(got) != tt.sent || isTimeout(err) {
				t.Fatalf("got %d body bytes (err %v), want the %d sent and then the end", len(got), err, tt.sent)
			}
			waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"message":"access"`) })
		})
	}
}
