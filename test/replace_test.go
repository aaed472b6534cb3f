//go:build linux

package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// replaceConfig is a JSON-logging config with one listener on addr that
// runs the replace plugin, then log, with flush_after set to flushAfter.
// With target set the listener is a tcp listener forwarding there;
// otherwise it serves HTTP (CONNECT and plain). extra goes into the
// listener's table.
func replaceConfig(target, flushAfter, extra string) func(addr string) string {
	return func(addr string) string {
		listener := fmt.Sprintf("listen = %q\nprotocols = [\"http\"]", addr)
		if target != "" {
			listener = fmt.Sprintf("listen = %q\nprotocols = [\"tcp\"]\ntarget = %q", addr, target)
		}
		listener += "\n" + extra
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
flush_after = %q

[[plugin.rule]]
direction = "up"
regexp = 'User-Agent: [^\r\n]*'
replace = "User-Agent: ferry"

[[plugin.rule]]
direction = "down"
find = "Server: nginx"
replace = "Server: ferry"
`, listener, flushAfter)
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
			target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
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
				cfgTarget = target.Addr
			}
			// Long enough that a 50ms pause between two writes never
			// flushes on a loaded machine, short enough to wait for.
			f := startFerry(t, replaceConfig(cfgTarget, "1s", ""), nil)

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			dial := testkit.DialCONNECT
			if tt.tcp {
				dial = dialPlain
			}
			c, err := dial(ctx, f.addr, target.Addr)
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
			l := f.waitLine(t, "access", byTarget(target.Addr))
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

// TestReplaceEndOfStream: each side sends bytes whose end could begin a
// match, then half-closes at once. The held tail reaches the other side
// before the FIN, rewritten as the end of the stream, with the timer off
// and with a timer too long to be what released it.
func TestReplaceEndOfStream(t *testing.T) {
	t.Parallel()
	const (
		// The regexp match in progress at the end counts as it stands.
		upWant   = "GET / HTTP/1.1\r\nUser-Agent: ferry"
		downWant = "HTTP/1.1 200 OK\r\nServer: ferry\r\n\r\nready> Serv"
	)
	tests := []struct {
		name  string
		tcp   bool
		flush string
		proto string
	}{
		{"connect timer off", false, "0s", "connect"},
		{"connect long timer", false, "1h", "connect"},
		{"tcp listener timer off", true, "0s", "tcp"},
		{"tcp listener long timer", true, "1h", "tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			done := make(chan error, 1)
			target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
				deadlineAfter(c, 20*time.Second)
				got, err := io.ReadAll(c) // to the client's FIN
				if err == nil && string(got) != upWant {
					err = fmt.Errorf("got %q before the FIN, want %q", got, upWant)
				}
				if err == nil {
					err = writeInParts(c, "HTTP/1.1 200 OK\r\nServer: ng", "inx\r\n\r\nready> Serv")
				}
				if err == nil {
					err = c.CloseWrite()
				}
				done <- err
			})
			var cfgTarget string
			if tt.tcp {
				cfgTarget = target.Addr
			}
			f := startFerry(t, replaceConfig(cfgTarget, tt.flush, ""), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			dial := testkit.DialCONNECT
			if tt.tcp {
				dial = dialPlain
			}
			c, err := dial(ctx, f.addr, target.Addr)
			if err != nil {
				t.Fatalf("open tunnel: %v", err)
			}
			defer c.Close()
			deadlineAfter(c, 20*time.Second)
			if err := writeInParts(c, "GET / HTTP/1.1\r\nUser-Agent: cu", "rl/8.5"); err != nil {
				t.Fatalf("client write: %v", err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c) // to ferry's FIN
			if err != nil || string(got) != downWant {
				t.Errorf("client got %q (%v) before the FIN, want %q", got, err, downWant)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("target: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("target did not finish")
			}
			l := f.waitLine(t, "access", byTarget(target.Addr))
			if l.str("proto") != tt.proto {
				t.Errorf("access proto = %q, want %q", l.str("proto"), tt.proto)
			}
			if n, _ := l.num("up"); n != int64(len(upWant)) {
				t.Errorf("access up = %d, want %d", n, len(upWant))
			}
			if n, _ := l.num("down"); n != int64(len(downWant)) {
				t.Errorf("access down = %d, want %d", n, len(downWant))
			}
		})
	}
}

// TestReplacePlainHTTP: for plain HTTP proxying each request and each
// response is a stream of its own. With 1 KiB reads, matches that span
// two of them are found, and the tail a response body ends with (it could
// begin a match) is released when the response ends, on a connection the
// target keeps open: with the timer off, and with one set, which plain
// HTTP messages do not use (an hour: it cannot be what released it). The
// request's User-Agent is rewritten on its way out.
func TestReplacePlainHTTP(t *testing.T) {
	t.Parallel()
	const reps = 300
	body := strings.Repeat("Server: nginx ", reps) + "ready> Serv"
	wantBody := strings.Repeat("Server: ferry ", reps) + "ready> Serv"
	for _, flush := range []string{"0s", "1h"} {
		t.Run("flush_after "+flush, func(t *testing.T) {
			t.Parallel()
			heads := make(chan string, 1)
			target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
				deadlineAfter(c, 20*time.Second)
				br := bufio.NewReader(c)
				var head strings.Builder
				for {
					line, err := br.ReadString('\n')
					head.WriteString(line)
					if err != nil || line == "\r\n" {
						break
					}
				}
				heads <- head.String()
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				io.Copy(io.Discard, br) // keep the connection open until ferry closes it
			})
			f := startFerry(t, replaceConfig("", flush, `buffer_size = "1KiB"`), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := testkit.DialTCP(ctx, f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			deadlineAfter(c, 20*time.Second)
			req, err := http.NewRequest("GET", "http://"+target.Addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("User-Agent", "curl/8.5.0")
			if err := req.WriteProxy(c); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), req)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(got) != wantBody {
				t.Errorf("body: got %d bytes (%v), want %d bytes %q...%q", len(got), err, len(wantBody), wantBody[:28], wantBody[len(wantBody)-25:])
				if err == nil && len(got) == len(wantBody) {
					for i := range got {
						if got[i] != wantBody[i] {
							t.Errorf("first difference at byte %d: got %q, want %q", i, got[max(0, i-10):min(len(got), i+20)], wantBody[max(0, i-10):min(len(got), i+20)])
							break
						}
					}
				}
			}
			if head := <-heads; !strings.Contains(head, "\r\nUser-Agent: ferry\r\n") {
				t.Errorf("request head at the target: got %q, want User-Agent: ferry", head)
			}
			l := f.waitLine(t, "access", byTarget(target.Addr))
			if l.str("proto") != "http" {
				t.Errorf("access proto = %q, want http", l.str("proto"))
			}
		})
	}
}
