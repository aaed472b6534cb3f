//go:build linux

package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"ferry/test/testkit"
)

// pluginConfig is the e2e listener with the log plugin and then the
// plugin table given, whose name is "limit".
func pluginConfig(table string) func(addr string) string {
	return chainConfig([]string{"log", "limit"}, "[[plugin]]\nname = \"log\"\n\n[[plugin]]\nname = \"limit\"\n"+table+"\n")
}

// newEchoTarget starts a target that echoes what it reads until EOF.
func newEchoTarget(t *testing.T) *testkit.TCPTarget {
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		deadlineAfter(c, time.Minute)
		io.Copy(c, c)
	})
}

// echo checks that a tunnel works: a line sent comes back.
func echo(c *testkit.BufConn, line string) error {
	deadlineAfter(c, 10*time.Second)
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(line))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if string(got) != line {
		return fmt.Errorf("echo: got %q, want %q", got, line)
	}
	return nil
}

// refusal asks for target over a new connection to ferry in one protocol
// and returns the answer, to compare with a want string.
type refusal func(c net.Conn, target string) (string, error)

func askCONNECT(c net.Conn, target string) (string, error) {
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	return readStatus(c, http.MethodConnect)
}

func askSOCKS5(c net.Conn, target string) (string, error) {
	rep, err := testkit.SOCKS5Request(c, target)
	return fmt.Sprintf("REP %#02x", rep), err
}

// ask opens a connection to ferry and returns what ask got.
func ask(t *testing.T, proxyAddr, target string, ask refusal) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, testkit.DialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadlineAfter(c, 20*time.Second)
	got, err := ask(c, target)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	return got
}

// TestConnlimit: with per_client = 2, two open tunnels work, a third is
// refused (403 for CONNECT, REP 0x02 for SOCKS5) with a warning, and once
// one tunnel has closed a new one opens.
func TestConnlimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		dial    tunnelDialer
		ask     refusal
		want    string
		proto   string
		wantErr string // the access line's error for the refusal
	}{
		{name: "connect", dial: testkit.DialCONNECT, ask: askCONNECT, want: "403", proto: "connect"},
		{name: "socks5", dial: testkit.DialSOCKS5, ask: askSOCKS5, want: "REP 0x02", proto: "socks5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			target := newEchoTarget(t)
			f := startFerry(t, pluginConfig("type = \"connlimit\"\nper_client = 2"), nil)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			var open []*testkit.BufConn
			for i := range 2 {
				c, err := tt.dial(ctx, f.addr, target.Addr)
				if err != nil {
					t.Fatalf("tunnel %d: %v", i+1, err)
				}
				defer c.Close()
				if err := echo(c, fmt.Sprintf("tunnel %d\n", i+1)); err != nil {
					t.Fatalf("tunnel %d: %v", i+1, err)
				}
				open = append(open, c)
			}

			if got := ask(t, f.addr, target.Addr, tt.ask); got != tt.want {
				t.Errorf("third tunnel: got %s, want %s", got, tt.want)
			}
			refused := f.waitLine(t, "access", func(l logLine) bool { return l.str("reason") == "rejected" })
			if got := refused.str("proto"); got != tt.proto {
				t.Errorf("refused access line: proto %q, want %q", got, tt.proto)
			}
			warn := f.waitLine(t, "connection limit reached", nil)
			if warn.str("level") != "warn" || warn.str("client") != "127.0.0.1" || warn.str("plugin") != "limit" {
				t.Errorf("warning line: got %v, want level warn, client 127.0.0.1, plugin limit", warn)
			}
			// The open tunnels still work.
			for i, c := range open {
				if err := echo(c, "still here\n"); err != nil {
					t.Errorf("tunnel %d after the refusal: %v", i+1, err)
				}
			}

			// Close the first; its access line is written after connlimit's
			// OnClose (closers run in reverse order), so the count is down.
			open[0].Close()
			f.waitLine(t, "access", func(l logLine) bool { return l.str("reason") != "rejected" })
			c, err := tt.dial(ctx, f.addr, target.Addr)
			if err != nil {
				t.Fatalf("tunnel after closing one: %v", err)
			}
			defer c.Close()
			if err := echo(c, "new tunnel\n"); err != nil {
				t.Errorf("tunnel after closing one: %v", err)
			}
		})
	}
}
