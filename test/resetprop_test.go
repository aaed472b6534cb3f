//go:build linux

package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/test/testkit"
)

// TestResetPropagation (issue 14, point 8): when one side of an exchange
// resets its connection (SO_LINGER 0), ferry resets the other side too,
// rather than closing it with a FIN that makes a cut-off stream look
// complete; the access line's reason says who reset. It covers a plain
// HTTP close-delimited response, CONNECT and SOCKS5 tunnels and a tcp
// listener, each on the spliced path (no data plugin) and the hooked one
// (hexdump moves the bytes through user space), in both directions.
func TestResetPropagation(t *testing.T) {
	t.Parallel()
	for _, cp := range copyPaths {
		for _, upstream := range []bool{true, false} {
			name := cp.name + "/client reset"
			if upstream {
				name = cp.name + "/upstream reset"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				resetCase(t, cp.hooked, upstream)
			})
		}
	}
}

// resetCase runs one copy path and direction through every protocol: one
// target, one ferry with the e2e listener and a tcp listener to that
// target, the protocols one after the other so the access lines can be
// told apart by their proto.
func resetCase(t *testing.T, hooked, upstreamResets bool) {
	// The client reads (upstream resets) or sends (client resets) a
	// first part larger than any buffer ferry may hold back, so that the
	// other side sees bytes before the reset whatever ferry's buffering.
	const first, enough = 1 << 20, 16 << 10
	protos := []string{"http", "connect", "socks5", "tcp"}
	// Each protocol's exchange asks for its own path, so the target
	// knows which subtest a connection belongs to.
	type exchange struct {
		release chan struct{} // the client has the first part (upstream resets)
		got     chan struct{} // the target has the client's first bytes (client resets)
		end     chan error    // how the target's read ended (client resets)
	}
	exchanges := map[string]*exchange{}
	for _, p := range protos {
		exchanges["/"+p] = &exchange{make(chan struct{}, 1), make(chan struct{}, 1), make(chan error, 1)}
	}
	target := newOrigin(t, func(c *net.TCPConn, br *bufio.Reader) {
		head, err := readHead(br)
		if err != nil {
			return
		}
		start, _ := headLines(head)
		_, path, _ := strings.Cut(start, " ")
		path, _, _ = strings.Cut(path, " ")
		path = path[strings.LastIndex(path, "/"):]
		x := exchanges[path]
		if x == nil {
			return
		}
		if upstreamResets {
			// A close-delimited response, cut by a reset once the client
			// has its first part; more is on its way when it comes.
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
			if _, err := c.Write(bytesOf('a', first)); err != nil {
				return
			}
			select {
			case <-x.release:
			case <-time.After(20 * time.Second):
			}
			c.Write(bytesOf('b', 64<<10))
			resetClose(c)
			return
		}
		if _, err := io.ReadFull(br, make([]byte, enough)); err != nil {
			x.end <- fmt.Errorf("read the first part of the body: %w", err)
			return
		}
		x.got <- struct{}{}
		_, err = io.Copy(io.Discard, br)
		x.end <- err
	})

	chain := `["log"]`
	if hooked {
		chain = `["log", "dump"]`
	}
	tcpAddr := freeAddr(t)
	w := startWatched(t, faultSetup{hooked: hooked, tables: fmt.Sprintf(`
[[listener]]
name = "fixed"
listen = %q
protocols = ["tcp"]
target = %q
plugins = %s
`, tcpAddr, target.Addr, chain)})

	// The request: a GET for the upstream reset; for the client reset a
	// POST with a long body of which the client sends the first part.
	// Plain HTTP sends it in absolute form to ferry, the tunnels as it is.
	request := func(form, path string) string {
		if upstreamResets {
			return fmt.Sprintf("GET %s%s HTTP/1.1\r\nHost: %s\r\n\r\n", form, path, target.Addr)
		}
		return fmt.Sprintf("POST %s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", form, path, target.Addr, 64<<20, bytesOf('c', first))
	}
	dialHTTP := func(ctx context.Context, proxyAddr, _ string) (*testkit.BufConn, error) {
		return dialPlain(ctx, proxyAddr, "")
	}
	for _, p := range []struct {
		proto, form, addr string
		dial              tunnelDialer
	}{
		{"http", "http://" + target.Addr, w.addr, dialHTTP},
		{"connect", "", w.addr, testkit.DialCONNECT},
		{"socks5", "", w.addr, testkit.DialSOCKS5},
		{"tcp", "", tcpAddr, dialPlain},
	} {
		t.Run(p.proto, func(t *testing.T) {
			x := exchanges["/"+p.proto]
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := p.dial(ctx, p.addr, target.Addr)
			if err != nil {
				t.Fatalf("open %s to the target: %v", p.proto, err)
			}
			defer c.Close()
			deadlineAfter(c, 20*time.Second)
			// The client's reset must come after its first part is sent,
			// so the write runs beside the wait for the target.
			werr := make(chan error, 1)
			go func() {
				_, err := io.WriteString(c, request(p.form, "/"+p.proto))
				werr <- err
			}()

			want := "upstream reset"
			if upstreamResets {
				if err := <-werr; err != nil {
					t.Fatalf("write request: %v", err)
				}
				head, err := readHead(c.Reader())
				if err != nil || !strings.HasPrefix(head, "HTTP/1.1 200 ") {
					t.Fatalf("response head: %q, %v", head, err)
				}
				if _, err := io.ReadFull(c, make([]byte, enough)); err != nil {
					t.Fatalf("read the first part of the body: %v", err)
				}
				x.release <- struct{}{}
				n, err := io.Copy(io.Discard, c)
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("client's read after the target's reset: %d more bytes, then %v; want a reset (ECONNRESET), not a clean end", n, errOrEOF(err))
				}
			} else {
				want = "client reset"
				select {
				case <-x.got:
				case err := <-x.end:
					t.Fatalf("target: %v", err)
				case <-time.After(20 * time.Second):
					t.Fatal("the target did not get the client's first bytes within 20s")
				}
				resetClose(c.TCPConn)
				<-werr
				select {
				case err := <-x.end:
					if !errors.Is(err, syscall.ECONNRESET) {
						t.Errorf("target's read after the client's reset: %v; want a reset (ECONNRESET), not a clean end", errOrEOF(err))
					}
				case <-time.After(20 * time.Second):
					t.Fatal("the target's read did not end within 20s of the client's reset")
				}
			}
			l := w.waitLine(t, "access", func(l logLine) bool { return l.str("proto") == p.proto })
			if got := l.str("reason"); got != want {
				t.Errorf("access reason: got %q, want %q: %v", got, want, l)
			}
		})
	}
}

// errOrEOF names a nil read error (io.Copy's clean end) as EOF.
func errOrEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}
