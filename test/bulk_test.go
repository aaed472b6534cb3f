//go:build linux

package test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/test/testkit"
)

const (
	// bulkSize is sent each way in the bulk tests.
	bulkSize = 64 << 20
	// bulkTimeout bounds one bulk transfer (not a speed requirement: 128
	// MiB on loopback takes well under a second without -race).
	bulkTimeout = 90 * time.Second
)

// bulkEnd is what the target of a bulk test received and sent.
type bulkEnd struct {
	got, sent digest
	err       error
}

// waitEnd waits for the target's end of a transfer and fails the test if
// the target reported an error.
func waitEnd(ctx context.Context, t *testing.T, ends <-chan bulkEnd) bulkEnd {
	t.Helper()
	select {
	case end := <-ends:
		if end.err != nil {
			t.Errorf("target: %v", end.err)
		}
		return end
	case <-ctx.Done():
		t.Fatal("target did not finish")
		return bulkEnd{}
	}
}

// newBulkTarget starts a target that sends size bytes of the stream for
// seed and reads what the client sends. With sequential, it reads to EOF
// first and only then answers, then closes; otherwise it reads and writes
// at once and half-closes after writing.
func newBulkTarget(t *testing.T, size int64, seed uint64, sequential bool) (*testkit.TCPTarget, <-chan bulkEnd) {
	ends := make(chan bulkEnd, 1)
	tt := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		deadlineAfter(c, bulkTimeout)
		var e bulkEnd
		if sequential {
			e.got, e.err = receive(c)
			if e.err == nil {
				e.sent, e.err = send(c, seed, size)
			}
		} else {
			var rerr error
			var wg sync.WaitGroup
			wg.Go(func() { e.got, rerr = receive(c) })
			e.sent, e.err = send(c, seed, size)
			if e.err == nil {
				e.err = c.CloseWrite()
			}
			wg.Wait()
			e.err = errors.Join(e.err, rerr)
		}
		select {
		case ends <- e:
		default: // a second connection: the test sees only the first
		}
	})
	return tt, ends
}

// hookedConfig is jsonConfig with the hexdump plugin after log: a plugin
// with data hooks moves the relay off the kernel splice path onto its
// user-space copy loop.
func hookedConfig(addr string) string {
	return strings.Replace(jsonConfig(addr, ""), `plugins = ["log"]`, `plugins = ["log", "dump"]`, 1) + `
[[plugin]]
name = "dump"
type = "hexdump"
max_bytes = "1KiB"
`
}

// tcpConfig is a tcp listener forwarding to target.
func tcpConfig(target string) func(addr string) string {
	return func(addr string) string {
		return fmt.Sprintf(`[log]
format = "json"

[[listener]]
name = "forward"
listen = %q
protocols = ["tcp"]
target = %q
plugins = ["log"]

[[plugin]]
name = "log"
`, addr, target)
	}
}

// dialPlain connects to a tcp listener: no handshake.
func dialPlain(ctx context.Context, proxyAddr, _ string) (*testkit.BufConn, error) {
	c, err := testkit.DialTCP(ctx, proxyAddr)
	if err != nil {
		return nil, err
	}
	return testkit.NewBufConn(c, nil), nil
}

// TestBulkIntegrity moves 64 MiB each way through a tunnel and compares
// SHA-256 digests both ways, and the byte counts of the access line.
func TestBulkIntegrity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		dial tunnelDialer
		// config makes ferry's config; nil: jsonConfig.
		config func(target string) func(addr string) string
		// halfClose: the client sends everything, half-closes, and only
		// then does the target answer, so the whole response travels
		// after the client's FIN.
		halfClose bool
		proto     string
	}{
		{name: "connect concurrent", dial: testkit.DialCONNECT, proto: "connect"},
		{name: "socks5 concurrent", dial: testkit.DialSOCKS5, proto: "socks5"},
		{name: "connect half-close", dial: testkit.DialCONNECT, halfClose: true, proto: "connect"},
		{name: "socks5 half-close", dial: testkit.DialSOCKS5, halfClose: true, proto: "socks5"},
		{name: "tcp listener half-close", dial: dialPlain, config: tcpConfig, halfClose: true, proto: "tcp"},
		{
			name: "connect hooked copy", dial: testkit.DialCONNECT, proto: "connect",
			config: func(string) func(string) string { return hookedConfig },
		},
		{
			name: "socks5 hooked copy half-close", dial: testkit.DialSOCKS5, halfClose: true, proto: "socks5",
			config: func(string) func(string) string { return hookedConfig },
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			seedUp, seedDown := uint64(2*i+1), uint64(2*i+2)
			target, ends := newBulkTarget(t, bulkSize, seedDown, tt.halfClose)
			config := withJSON("")
			if tt.config != nil {
				config = tt.config(target.Addr)
			}
			f := startFerry(t, config, nil)

			ctx, cancel := context.WithTimeout(context.Background(), bulkTimeout)
			defer cancel()
			c, err := tt.dial(ctx, f.addr, target.Addr)
			if err != nil {
				t.Fatalf("open tunnel: %v", err)
			}
			defer c.Close()
			deadlineAfter(c, bulkTimeout)

			var sent, got digest
			var werr, rerr error
			if tt.halfClose {
				sent, werr = send(c, seedUp, bulkSize)
				if werr == nil {
					werr = c.CloseWrite()
				}
				if werr == nil {
					got, rerr = receive(c)
				}
			} else {
				var wg sync.WaitGroup
				wg.Go(func() { got, rerr = receive(c) })
				sent, werr = send(c, seedUp, bulkSize)
				if werr == nil {
					werr = c.CloseWrite()
				}
				wg.Wait()
			}
			if werr != nil {
				t.Errorf("client send: %v", werr)
			}
			if rerr != nil {
				t.Errorf("client receive: %v", rerr)
			}

			end := waitEnd(ctx, t, ends)
			if sent.n != bulkSize || end.got != sent {
				t.Errorf("client to target: target got %v, client sent %v (want %d bytes)", end.got, sent, bulkSize)
			}
			if end.sent.n != bulkSize || got != end.sent {
				t.Errorf("target to client: client got %v, target sent %v (want %d bytes)", got, end.sent, bulkSize)
			}

			l := f.waitLine(t, "access", byTarget(target.Addr))
			checkAccess(t, l, tt.proto, target.Addr)
			if n, _ := l.num("up"); n != bulkSize {
				t.Errorf("access up = %d, want %d", n, bulkSize)
			}
			if n, _ := l.num("down"); n != bulkSize {
				t.Errorf("access down = %d, want %d", n, bulkSize)
			}
		})
	}
}
