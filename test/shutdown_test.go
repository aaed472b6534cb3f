//go:build linux

package test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"ferry/test/testkit"
)

const (
	// heldSize is what a held transfer sends before it waits for the test.
	heldSize = 1 << 20
	// pacedChunk and pacedChunks make the rest of a held transfer: 3 MiB
	// in 24 chunks 40ms apart, about a second.
	pacedChunk  = 128 << 10
	pacedChunks = 24
	pacedGap    = 40 * time.Millisecond
	heldTotal   = heldSize + pacedChunk*pacedChunks
	heldSeed    = 77
	// heldUpSeed is the stream of a client's held upload.
	heldUpSeed = 78
)

// newHeldTarget starts a target that sends heldSize bytes of the stream
// for heldSeed, waits until release is closed, then sends the rest in
// paced chunks and half-closes. It gives up waiting if the connection
// is closed under it (ferry cut the channel) or after a minute. It reads
// what the client sends meanwhile; unless got is nil, the digest of that
// goes to got once the client's side has ended.
func newHeldTarget(t *testing.T, release <-chan struct{}, got chan<- digest) *testkit.TCPTarget {
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		deadlineAfter(c, time.Minute)
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			d, _ := receive(c)
			if got != nil {
				got <- d
			}
		}()
		defer func() { c.Close(); <-readDone }()

		src := newStream(heldSeed, heldTotal)
		if _, err := io.CopyN(c, src, heldSize); err != nil {
			return
		}
		select {
		case <-release:
		case <-readDone:
			return
		case <-time.After(time.Minute):
			return
		}
		for range pacedChunks {
			if _, err := io.CopyN(c, src, pacedChunk); err != nil {
				return
			}
			time.Sleep(pacedGap) // throttles the transfer; not an assertion
		}
		c.CloseWrite()
		select {
		case <-readDone:
		case <-time.After(time.Minute):
		}
	})
}

// heldDigest is the digest of a whole held transfer of the stream for
// seed.
func heldDigest(t *testing.T, seed uint64) digest {
	d, err := receive(newStream(seed, heldTotal))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// heldClient reads a held transfer through a tunnel: it signals started
// once the first heldSize bytes are in, then reads to the end. With
// upload it sends a held transfer of its own the other way (the stream
// for heldUpSeed): heldSize bytes at once, the paced rest once the
// target's transfer goes on (the test released it), then it half-closes.
func heldClient(ctx context.Context, dial tunnelDialer, proxyAddr, target string, started chan<- struct{}, upload bool) (digest, error) {
	c, err := dial(ctx, proxyAddr, target)
	if err != nil {
		close(started)
		return digest{}, fmt.Errorf("open tunnel: %w", err)
	}
	defer c.Close()
	deadlineAfter(c, time.Minute)
	released := make(chan struct{})
	var werr error
	var wg sync.WaitGroup
	if upload {
		wg.Go(func() {
			src := newStream(heldUpSeed, heldTotal)
			if _, werr = io.CopyN(c, src, heldSize); werr != nil {
				return
			}
			<-released
			for range pacedChunks {
				if _, werr = io.CopyN(c, src, pacedChunk); werr != nil {
					return
				}
				time.Sleep(pacedGap) // throttles the transfer; not an assertion
			}
			werr = c.CloseWrite()
		})
	}
	h := sha256.New()
	n, err := io.CopyN(h, c, heldSize)
	close(started)
	if err != nil {
		close(released)
		wg.Wait()
		return finish(h, n), fmt.Errorf("read first %d bytes: %w", heldSize, err)
	}
	// The first byte past heldSize comes once the target was released.
	m, err := io.CopyN(h, c, 1)
	close(released)
	if err == nil {
		var k int64
		k, err = io.Copy(h, c)
		m += k
	}
	wg.Wait()
	if werr != nil {
		err = errors.Join(err, fmt.Errorf("upload: %w", werr))
	}
	return finish(h, n+m), err
}

// waitRefused dials addr until the connection is refused, for at most
// ten seconds, and fails the test otherwise.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return
		case errors.Is(err, syscall.ECONNRESET):
			// The handshake completed in the backlog of a listener that
			// closed before accepting it: not served either. Go on until
			// the port refuses outright.
		case err != nil:
			t.Fatalf("dial %s after SIGTERM: %v, want connection refused", addr, err)
		default:
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections 10s after SIGTERM", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestShutdownDrains sends SIGTERM while four transfers are running both
// ways: the listener refuses new connections at once, the transfers
// complete byte-identical both ways (SHA-256) within drain_timeout, and
// ferry exits 0.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	const n = 4
	uploads := make(chan digest, n)
	target := newHeldTarget(t, release, uploads)
	f := startFerry(t, withJSON(`drain_timeout = "10s"`), nil)
	// Registered last, so it runs first: a failing test does not leave
	// ferry waiting out its drain for transfers the target still holds.
	t.Cleanup(releaseAll)
	want, wantUp := heldDigest(t, heldSeed), heldDigest(t, heldUpSeed)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		d   digest
		err error
	}
	results := make([]result, n)
	started := make([]chan struct{}, n)
	var wg sync.WaitGroup
	for i := range n {
		started[i] = make(chan struct{})
		dial := testkit.DialCONNECT
		if i%2 == 1 {
			dial = testkit.DialSOCKS5
		}
		wg.Go(func() {
			d, err := heldClient(ctx, dial, f.addr, target.Addr, started[i], true)
			results[i] = result{d, err}
		})
	}
	for i := range n {
		select {
		case <-started[i]:
		case <-time.After(time.Minute):
			t.Fatalf("transfer %d did not start within a minute", i)
		}
	}

	f.signal(t)
	waitRefused(t, f.addr)
	// The transfers are held by the target: ferry must still be running,
	// draining them.
	select {
	case <-f.done:
		t.Fatalf("ferry exited (%v) before its channels drained", f.waitErr)
	default:
	}
	releaseAll()
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			t.Errorf("transfer %d: %v", i, r.err)
		}
		if r.d != want {
			t.Errorf("transfer %d: got %v, want %v", i, r.d, want)
		}
	}
	for i := range n {
		select {
		case got := <-uploads:
			if got != wantUp {
				t.Errorf("upload %d: target got %v, want %v", i, got, wantUp)
			}
		case <-ctx.Done():
			t.Fatalf("target got %d of %d uploads", i, n)
		}
	}
	if code := f.wait(t); code != 0 {
		t.Errorf("ferry exited %d, want 0", code)
	}
	stopped := f.waitLine(t, "ferry stopped", nil)
	if forced, _ := stopped.num("forced"); forced != 0 {
		t.Errorf("ferry stopped: forced = %d, want 0: %v", forced, stopped)
	}
	if drained, _ := stopped.num("drained"); drained < n {
		t.Errorf("ferry stopped: drained = %d, want >= %d: %v", drained, n, stopped)
	}
	access := f.lines("access", byTarget(target.Addr))
	if len(access) != n {
		t.Fatalf("got %d access lines for %s, want %d", len(access), target.Addr, n)
	}
	for _, l := range access {
		for _, k := range []string{"up", "down"} {
			if got, _ := l.num(k); got != heldTotal {
				t.Errorf("access %s = %d, want %d: %v", k, got, heldTotal, l)
			}
		}
		if r := l.str("reason"); r == "shutdown" {
			t.Errorf("access reason = %q for a drained channel: %v", r, l)
		}
	}
}

// TestShutdownForced sends SIGTERM while a transfer is held longer than
// the drain allows: ferry cuts it when drain_timeout is up, or at once on
// a second signal, and still exits 0.
func TestShutdownForced(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		drain string
		// second sends a second SIGTERM once the drain has begun.
		second bool
		// minTook is the least time the shutdown can take.
		minTook time.Duration
	}{
		{name: "drain timeout", drain: "500ms", minTook: 500 * time.Millisecond},
		{name: "second signal", drain: "1m", second: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{}) // never closed: the transfer outlives the drain
			target := newHeldTarget(t, release, nil)
			f := startFerry(t, withJSON(fmt.Sprintf("drain_timeout = %q", tt.drain)), nil)

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			started := make(chan struct{})
			type result struct {
				d   digest
				err error
			}
			done := make(chan result, 1)
			go func() {
				d, err := heldClient(ctx, testkit.DialCONNECT, f.addr, target.Addr, started, false)
				done <- result{d, err}
			}()
			select {
			case <-started:
			case <-time.After(time.Minute):
				t.Fatal("transfer did not start within a minute")
			}

			f.signal(t)
			if tt.second {
				f.waitLine(t, "shutting down: no new connections, draining", nil)
				f.send(t, syscall.SIGTERM)
			}
			if code := f.wait(t); code != 0 {
				t.Errorf("ferry exited %d, want 0", code)
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(time.Minute):
				t.Fatal("client still reading a minute after ferry exited")
			}
			if r.d.n >= heldTotal {
				t.Errorf("client got all %d bytes; want the transfer cut", r.d.n)
			}
			if errors.Is(r.err, os.ErrDeadlineExceeded) {
				t.Errorf("client read ended by its own deadline, not by ferry: %v", r.err)
			}

			stopped := f.waitLine(t, "ferry stopped", nil)
			if forced, _ := stopped.num("forced"); forced != 1 {
				t.Errorf("ferry stopped: forced = %d, want 1: %v", forced, stopped)
			}
			// The upper bound is loose: it only catches a drain that
			// ignores its end.
			if took, ok := stopped.dur("took"); !ok || took < tt.minTook || took > 10*time.Second {
				t.Errorf("ferry stopped: took = %v, want between %v and 10s", stopped["took"], tt.minTook)
			}
			l := f.waitLine(t, "access", byTarget(target.Addr))
			if got, want := l.str("reason"), "shutdown"; got != want {
				t.Errorf("access reason = %q, want %q: %v", got, want, l)
			}
		})
	}
}
