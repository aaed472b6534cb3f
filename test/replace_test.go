package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// replaceConfig is a JSON-logging config with one listener on addr that
// runs the replace plugin, then log. With target set the listener is a
// tcp listener forwarding there; otherwise it serves HTTP (CONNECT).
func replaceConfig(target string) func(addr string) string {
	return func(addr string) string {
		listener := fmt.Sprintf("listen = %q\nprotocols = [\"http\"]", addr)
		if target != "" {
			listener = fmt.Sprintf("listen = %q\nprotocols = [\"tcp\"]\ntarget = %q", addr, target)
		}
		return fmt.Sprintf(`[log]
format = "json"

[[listener]]
name = "rewrite"
%s
plugins = ["log", "rewrite"]

[[plugin]]
name = "log"

[[plugin]]
name = "rewrite"
type = "replace"
# Long enough that a 50ms pause between two writes never flushes on a
# loaded machine, short enough to wait for in a test.
flush_after = "1s"

[[plugin.rule]]
direction = "up"
regexp = 'User-Agent: [^\r\n]*'
replace = "User-Agent: ferry"

[[plugin.rule]]
direction = "down"
find = "Server: nginx"
replace = "Server: ferry"
`, listener)
	}
}

// readExactly reads until it has len(want) bytes and checks them; it
// fails at once when the bytes so far cannot become want.
func readExactly(r io.Reader, want string) error {
	var got []byte
	buf := make([]byte, 256)
	for len(got) < len(want) {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if !strings.HasPrefix(want, string(got)) {
			return fmt.Errorf("got %q, want %q", got, want)
		}
		if err != nil {
			return fmt.Errorf("after %q: %w", got, err)
		}
	}
	return nil
}

// writeInParts writes each part, pausing between them so that ferry reads
// them separately.
func writeInParts(c net.Conn, parts ...string) error {
	for i, p := range parts {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := io.WriteString(c, p); err != nil {
			return err
		}
	}
	return nil
}

// TestReplacePlugin: patterns split across two writes are replaced both
// ways, and a tail that could begin a match (a prompt) is delivered after
// flush_after.
func TestReplacePlugin(t *testing.T) {
	t.Parallel()
	const (
		upWant = "GET / HTTP/1.1\r\nUser-Agent: ferry\r\nHost: x\r\n\r\n"
		// Held: it could begin a User-Agent line.
		upTail   = "bye User-Ag"
		downWant = "HTTP/1.1 200 OK\r\nServer: ferry\r\n\r\n"
		// Held: it could begin "Server: nginx".
		downTail = "ready> Serv"
	)
	tests := []struct {
		name  string
		tcp   bool
		proto string
	}{
		{"connect", false, "connect"},
		{"tcp listener", true, "tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			done := make(chan error, 1)
			target := newTCPTarget(t, func(c *net.TCPConn) {
				deadlineAfter(c, 20*time.Second)
				err := readExactly(c, upWant)
				if err == nil {
					err = writeInParts(c, "HTTP/1.1 200 OK\r\nServer: ng", "inx\r\n\r\n"+downTail)
				}
				if err == nil {
					err = readExactly(c, upTail)
				}
				done <- err
			})
			var cfgTarget string
			if tt.tcp {
				cfgTarget = target.addr
			}
			f := startFerry(t, replaceConfig(cfgTarget), nil)

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			dial := dialCONNECT
			if tt.tcp {
				dial = dialPlain
			}
			c, err := dial(ctx, f.addr, target.addr)
			if err != nil {
				t.Fatalf("open tunnel: %v", err)
			}
			defer c.Close()
			deadlineAfter(c, 20*time.Second)

			start := time.Now()
			if err := writeInParts(c, "GET / HTTP/1.1\r\nUser-Ag", "ent: curl/8.5.0\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatalf("client write: %v", err)
			}
			if err := readExactly(c, downWant+downTail); err != nil {
				t.Fatalf("client read: %v", err)
			}
			if d := time.Since(start); d < time.Second {
				t.Errorf("the held prompt tail came after %v, want it held for flush_after (1s)", d)
			}
			if _, err := io.WriteString(c, upTail); err != nil {
				t.Fatalf("client write: %v", err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("target: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("target did not finish")
			}
			c.Close()

			// Bytes the plugin sends itself count like the relay's own.
			l := f.waitLine(t, "access", byTarget(target.addr))
			if l.str("proto") != tt.proto {
				t.Errorf("access proto = %q, want %q", l.str("proto"), tt.proto)
			}
			if n, _ := l.num("up"); n != int64(len(upWant+upTail)) {
				t.Errorf("access up = %d, want %d", n, len(upWant+upTail))
			}
			if n, _ := l.num("down"); n != int64(len(downWant+downTail)) {
				t.Errorf("access down = %d, want %d", n, len(downWant+downTail))
			}
		})
	}
}
