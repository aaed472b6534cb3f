//go:build linux

package test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"ferry/test/testkit"
)

// No data loss: a large transfer each way at once through CONNECT, SOCKS5
// (spliced and through the hooked copy) and a two-hop chain (ferry ->
// dante -> dante -> target), in writes of random sizes and ended by half-closes,
// with SHA-256 at both ends. Graceful shutdown's share, transfers that
// finish during the drain, is TestShutdownDrains.

const (
	// lossSize goes each way; lossShortSize under -short.
	lossSize      = 1 << 30
	lossShortSize = 64 << 20
	// lossTimeout bounds one transfer. It only catches a hang: 1 GiB
	// each way takes some 10-30 s under the race detector on 2 cores.
	lossTimeout = 5 * time.Minute
	// maxWrite is the largest write; sizes are log-uniform from 1 B, so
	// small writes are as common as large ones.
	maxWrite = 256 << 10
)

// sendRandom writes n bytes of the stream for seed to w in writes whose
// sizes (1 B to maxWrite) a PRNG seeded with seed draws, and returns the
// digest of what it wrote.
func sendRandom(w io.Writer, seed uint64, n int64) (digest, error) {
	src := newStream(seed, n)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	buf := make([]byte, maxWrite)
	h := sha256.New()
	var sent int64
	for sent < n {
		// 2^k with k uniform in 0..18, then uniform up to it.
		k := min(int64(1+rng.IntN(1<<rng.IntN(19))), n-sent)
		io.ReadFull(src, buf[:k])
		m, err := w.Write(buf[:k])
		h.Write(buf[:m])
		sent += int64(m)
		if err != nil {
			return finish(h, sent), err
		}
	}
	return finish(h, sent), nil
}

// halfDuplex sends n bytes of the stream for seed over c in random-size
// writes and half-closes, while it reads c to EOF; it returns what it
// sent and what it got.
func halfDuplex(c interface {
	io.ReadWriter
	CloseWrite() error
}, seed uint64, n int64) (sent, got digest, err error) {
	var rerr error
	var wg sync.WaitGroup
	wg.Go(func() { got, rerr = receive(c) })
	sent, err = sendRandom(c, seed, n)
	if err == nil {
		err = c.CloseWrite()
	}
	wg.Wait()
	return sent, got, errors.Join(err, rerr)
}

// TestNoDataLoss moves 1 GiB each way at once (64 MiB with -short)
// through a CONNECT tunnel, a SOCKS5 tunnel (spliced, and through the
// user-space copy of a listener with data hooks) and a CONNECT tunnel
// that ferry opens through two dante parents, in writes of 1 B to 256 KiB; each end
// half-closes once it has sent everything. What each end sent must be
// what the other received (SHA-256 and length), and the access line must
// count every byte. The cases run in parallel.
func TestNoDataLoss(t *testing.T) {
	t.Parallel()
	size := int64(lossSize)
	if testing.Short() {
		size = lossShortSize
	}
	tests := []struct {
		name string
		dial tunnelDialer
		// config makes ferry's config; nil: jsonConfig.
		config func(t *testing.T) func(addr string) string
		// upstream and chain are the access line's; "" for direct.
		upstream, chain string
		hooked          bool
	}{
		{name: "connect", dial: testkit.DialCONNECT},
		{name: "socks5", dial: testkit.DialSOCKS5},
		// The hexdump plugin's data hooks move the relay from the kernel's
		// splice to its user-space copy loop.
		{name: "socks5 hooked", dial: testkit.DialSOCKS5, hooked: true, config: func(*testing.T) func(string) string {
			return chainConfig([]string{"log", "dump"}, "[[plugin]]\nname = \"log\"\n\n[[plugin]]\nname = \"dump\"\ntype = \"hexdump\"\nmax_bytes = \"16B\"\n")
		}},
		// Two dante parents, the second reached through the first: dante
		// passes half-closes on (tinyproxy, microsocks and squid close
		// both ways at the first EOF, so they cannot carry this test).
		{name: "connect via two hops", dial: testkit.DialCONNECT, upstream: "d2", chain: "d1>d2", config: func(t *testing.T) func(string) string {
			d1, _ := startDante(t, false)
			d2, _ := startDante(t, false)
			return upstreamConfig("10s", upstreamTable("d1", "socks5://"+d1)+
				upstreamTable("d2", "socks5://"+d2, `via = "d1"`)+routeAll("d2"))
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			seedUp, seedDown := uint64(1000+2*i), uint64(1001+2*i)
			ends := make(chan bulkEnd, 1)
			target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
				deadlineAfter(c, lossTimeout)
				var e bulkEnd
				e.sent, e.got, e.err = halfDuplex(c, seedDown, size)
				select {
				case ends <- e:
				default: // a second connection: the test sees only the first
				}
			})
			config := withJSON("")
			if tt.config != nil {
				config = tt.config(t)
			}
			f := startFerry(t, config, nil)

			ctx, cancel := context.WithTimeout(context.Background(), lossTimeout)
			defer cancel()
			c, err := tt.dial(ctx, f.addr, target.Addr)
			if err != nil {
				t.Fatalf("open tunnel: %v", err)
			}
			defer c.Close()
			deadlineAfter(c, lossTimeout)
			start := time.Now()
			sent, got, err := halfDuplex(c, seedUp, size)
			if err != nil {
				t.Errorf("client: %v", err)
			}
			end := waitEnd(ctx, t, ends)
			t.Logf("%d MiB each way in %v", size>>20, time.Since(start).Round(time.Millisecond))
			if sent.n != size || end.got != sent {
				t.Errorf("client to target: target got %v, client sent %v (want %d bytes)", end.got, sent, size)
			}
			if end.sent.n != size || got != end.sent {
				t.Errorf("target to client: client got %v, target sent %v (want %d bytes)", got, end.sent, size)
			}

			l := f.waitLine(t, "access", byTarget(target.Addr))
			for _, k := range []string{"up", "down"} {
				if n, _ := l.num(k); n != size {
					t.Errorf("access %s = %d, want %d", k, n, size)
				}
			}
			if r := l.str("reason"); r != "client closed" && r != "upstream closed" {
				t.Errorf("access reason = %q, want an orderly close by either side: %v", r, l)
			}
			if tt.chain != "" {
				checkHops(t, l, tt.upstream, tt.chain)
			}
			if tt.hooked && !hexdumped(f) {
				t.Error("no hexdump line: the transfer did not go through the hooked copy")
			}
		})
	}
}

// hexdumped reports whether the hexdump plugin logged a chunk.
func hexdumped(f *proc) bool {
	for _, l := range f.logLines() {
		if l.str("plugin") == "dump" {
			return true
		}
	}
	return false
}
