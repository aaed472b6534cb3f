//go:build linux

package test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"ferry/test/testkit"
)

// TestRatelimitDownload sends 8 MiB through a channel limited to 1 MiB/s
// down: it arrives intact and takes about 7 s (the first MiB is the
// bucket's burst). The window is wide: a loaded machine may be slower,
// never much faster.
func TestRatelimitDownload(t *testing.T) {
	t.Parallel()
	const size = 8 << 20
	f := startFerry(t, pluginConfig("type = \"ratelimit\"\nchannel = { down = \"1MiB\" }"), nil)
	target, elapsed := download(t, size, func(ctx context.Context, target string) (*testkit.BufConn, error) {
		return testkit.DialCONNECT(ctx, f.addr, target)
	})
	t.Logf("8 MiB at 1 MiB/s down took %v", elapsed)
	if elapsed < 5*time.Second || elapsed > 20*time.Second {
		t.Errorf("download took %v, want about 7s (between 5s and 20s)", elapsed)
	}
	l := f.waitLine(t, "access", byTarget(target))
	if n, _ := l.num("down"); n != size {
		t.Errorf("access down = %d, want %d", n, size)
	}
}

// download receives size bytes from a new bulk target through the tunnel
// dial opens to it, uploading nothing, and checks them; it returns the
// target's address and how long the bytes took, within a minute.
func download(t *testing.T, size int64, dial func(ctx context.Context, target string) (*testkit.BufConn, error)) (string, time.Duration) {
	t.Helper()
	const timeout = time.Minute
	target, ends := newBulkTarget(t, size, 8, false)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := dial(ctx, target.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadlineAfter(c, timeout)
	start := time.Now()
	if err := c.CloseWrite(); err != nil { // nothing to upload
		t.Fatal(err)
	}
	got, err := receive(c)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if end := waitEnd(ctx, t, ends); got.n != size || got != end.sent {
		t.Errorf("client got %v, target sent %v (want %d bytes)", got, end.sent, size)
	}
	return target.Addr, elapsed
}

// TestRatelimitCloseEndsWait: a client that goes away in the middle of a
// throttled download ends its channel at once, although the chunk ferry
// is holding back (a 32 KiB read, of which the 1 KiB burst is allowed at
// once) would take half a minute at 1 KiB/s. Through a CONNECT tunnel the
// channel's context wakes the wait; for plain HTTP, whose request context
// ends only with the exchange, the failed write after the piece in
// progress (1 KiB, a second at most) does.
func TestRatelimitCloseEndsWait(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		plainHTTP bool
		// within bounds the time from the reset to the access line; it
		// includes scheduling slack on a loaded machine.
		within time.Duration
	}{
		{name: "connect", within: 2 * time.Second},
		{name: "plain http", plainHTTP: true, within: 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// A tunnel's target sends at once; a plain HTTP target reads
			// the request, then answers with a header and the body.
			target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
				deadlineAfter(c, time.Minute)
				if tt.plainHTTP {
					c.Read(make([]byte, 4096))
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 1<<20)
				}
				send(c, 9, 1<<20)
			})
			f := startFerry(t, pluginConfig("type = \"ratelimit\"\nchannel = { down = \"1KiB\" }"), nil)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var c *net.TCPConn
			if tt.plainHTTP {
				var err error
				if c, err = testkit.DialTCP(ctx, f.addr); err != nil {
					t.Fatal(err)
				}
				if _, err := fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", target.Addr, target.Addr); err != nil {
					t.Fatal(err)
				}
			} else {
				bc, err := testkit.DialCONNECT(ctx, f.addr, target.Addr)
				if err != nil {
					t.Fatal(err)
				}
				c = bc.TCPConn
			}
			defer c.Close()
			time.Sleep(1500 * time.Millisecond) // the target has sent; ferry holds a chunk back
			c.SetLinger(0)                      // reset, as a killed client would
			c.Close()
			closed := time.Now()
			l := f.waitLine(t, "access", byTarget(target.Addr))
			elapsed := time.Since(closed)
			t.Logf("channel ended %v after the client went away (reason %q, %d bytes down)", elapsed, l.str("reason"), int64(l["down"].(float64)))
			if elapsed > tt.within {
				t.Errorf("channel ended %v after the client went away, want within %v", elapsed, tt.within)
			}
		})
	}
}

// TestRatelimitNewConnections: with one new connection per minute per
// client, the second is refused: 403 for CONNECT, REP 0x02 for SOCKS5.
func TestRatelimitNewConnections(t *testing.T) {
	t.Parallel()
	target := newEchoTarget(t)
	f := startFerry(t, pluginConfig("type = \"ratelimit\"\nnew_connections = { per_client = 1, interval = \"1m\" }"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := testkit.DialSOCKS5(ctx, f.addr, target.Addr)
	if err != nil {
		t.Fatalf("first tunnel: %v", err)
	}
	defer c.Close()
	if err := echo(c, "first\n"); err != nil {
		t.Fatalf("first tunnel: %v", err)
	}
	tests := []struct {
		name string
		ask  refusal
		want string
	}{
		{"connect", askCONNECT, "403"},
		{"socks5", askSOCKS5, "REP 0x02"},
	}
	for _, tt := range tests {
		if got := ask(t, f.addr, target.Addr, tt.ask); got != tt.want {
			t.Errorf("%s after the first: got %s, want %s", tt.name, got, tt.want)
		}
	}
	w := f.waitLine(t, "new connection rate exceeded", nil)
	if w.str("level") != "warn" || w.str("client") != "127.0.0.1" {
		t.Errorf("warning line: got %v, want level warn and client 127.0.0.1", w)
	}
}
