//go:build linux

package test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/test/testkit"
)

// tinyReceiver gives a socket a small receive buffer, before it connects
// or on a listener (accepted connections inherit it), so that a side that
// does not read stalls its tunnel after a few KiB. Sending stays fast, so
// ferry receives large bursts and splices them through a pipe.
func tinyReceiver(rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<10)
	})
	return errors.Join(err, serr)
}

// fillStalled writes to c until a write makes no progress for half a
// second (every buffer on the way is full) or 8 MiB went, more than
// ferry's socket buffer (4 MiB at most by default) and a pipe (1 MiB)
// take, then half-closes; it returns the bytes written.
func fillStalled(c *net.TCPConn) int64 {
	buf := make([]byte, 64<<10)
	var n int64
	for n < 8<<20 {
		c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		m, err := c.Write(buf)
		n += int64(m)
		if err != nil {
			break
		}
	}
	c.SetWriteDeadline(time.Now().Add(time.Minute))
	c.CloseWrite()
	return n
}

// TestFDLimitStuckTunnels: ferry under an open-file limit of 120, with the
// default [limits] max_connections. Clients open CONNECT tunnels and push
// bytes each way until the tunnel stalls, as neither they nor the target
// read, so each tunnel
// holds the most descriptors one can: two sockets and a spliced pipe each
// way. ferry must refuse new connections (closed at once, as
// max_connections does) before any accept or dial runs out of
// descriptors: no "too many open files", no "accept failed", every
// admitted tunnel works. Once the tunnels finish, ferry is back to its
// baseline descriptors within the pipe pool's idle time, with no garbage
// collection forced.
func TestFDLimitStuckTunnels(t *testing.T) {
	t.Parallel()
	const (
		fileLimit = 120
		attempts  = 40 // more than the old budget of 30 connections
	)
	w := startWatched(t, faultSetup{defaults: `handshake_timeout = "30s"`})
	setFileLimit(t, w.pid, fileLimit)
	w.send(t, unix.SIGHUP)
	w.waitLine(t, "configuration reloaded", nil)
	basePipes := testkit.CountPipes(w.pid)

	// The target sends payload and reads nothing until released.
	release := make(chan struct{})
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return tinyReceiver(rc) }}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var twg sync.WaitGroup
	var mu sync.Mutex
	var targetSent, targetGot int64
	t.Cleanup(func() {
		ln.Close()
		twg.Wait()
	})
	// Run before the cleanup above (cleanups run last first), so that a
	// failed test does not leave the target waiting.
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	twg.Add(1)
	go func() {
		defer twg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			twg.Add(1)
			go func() {
				defer twg.Done()
				defer c.Close()
				deadlineAfter(c, 2*time.Minute)
				sent := make(chan int64, 1)
				go func() { sent <- fillStalled(c.(*net.TCPConn)) }()
				<-release
				n, _ := io.Copy(io.Discard, c)
				mu.Lock()
				targetSent += <-sent
				targetGot += n
				mu.Unlock()
			}()
		}
	}()
	target := ln.Addr().String()

	type tunnel struct {
		c          *testkit.BufConn
		sent, read chan int64
	}
	var tuns []tunnel
	defer func() {
		for _, tun := range tuns {
			tun.c.Close()
		}
	}()
	refused := 0
	for i := 0; i < attempts && refused < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		d := net.Dialer{Timeout: testkit.DialTimeout, Control: func(_, _ string, rc syscall.RawConn) error { return tinyReceiver(rc) }}
		nc, err := d.DialContext(ctx, "tcp", w.addr)
		cancel()
		if err != nil {
			t.Fatalf("dial ferry: %v", err)
		}
		c, err := testkit.ConnectOver(nc.(*net.TCPConn), target)
		if err != nil {
			// A refusal closes the connection at once; an answer means
			// ferry admitted the connection and then failed it.
			if strings.Contains(err.Error(), "got status") {
				t.Errorf("tunnel %d: %v; want it served or closed at once", i, err)
			}
			refused++
			t.Logf("tunnel %d refused: %v", i, err)
			continue
		}
		deadlineAfter(c, 2*time.Minute)
		tun := tunnel{c: c, sent: make(chan int64, 1), read: make(chan int64, 1)}
		tuns = append(tuns, tun)
		go func() { tun.sent <- fillStalled(c.TCPConn) }()
		go func() {
			<-release
			n, _ := io.Copy(io.Discard, c)
			tun.read <- n
		}()
		// Stalled both ways, the tunnel holds a pipe each way.
		want := basePipes + 4*len(tuns)
		deadline := time.Now().Add(10 * time.Second)
		for testkit.CountPipes(w.pid) < want {
			if time.Now().After(deadline) {
				t.Fatalf("tunnel %d: ferry holds %d pipe descriptors, want %d (a pipe each way per stalled tunnel); fds: %s",
					i, testkit.CountPipes(w.pid), want, w.fdKinds())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	peak := procFDs(t, w.pid)
	t.Logf("%d tunnels stalled, %d refused; ferry holds %d descriptors (baseline %d, limit %d): %s",
		len(tuns), refused, peak, w.base.fds, fileLimit, w.fdKinds())

	if refused == 0 {
		t.Fatalf("all %d tunnels admitted under an open-file limit of %d: no refusal", len(tuns), fileLimit)
	}
	line := w.waitLine(t, "connection refused: server at [limits] max_connections", nil)
	if n, _ := line.num("limit"); n != int64(len(tuns)) {
		t.Errorf("[limits] max_connections %d, but %d tunnels were admitted", n, len(tuns))
	}
	if peak >= fileLimit {
		t.Errorf("ferry holds %d descriptors, at its limit of %d", peak, fileLimit)
	}
	for _, bad := range []string{"too many open files", "accept failed", "dial failed"} {
		if strings.Contains(w.stderr.String(), bad) {
			t.Errorf("ferry logged %q: it ran out of descriptors before refusing", bad)
		}
	}

	// Released, every tunnel delivers what was pushed each way.
	releaseAll()
	var clientSent, clientGot int64
	for i, tun := range tuns {
		select {
		case n := <-tun.read:
			clientGot += n
			clientSent += <-tun.sent
		case <-time.After(time.Minute):
			t.Fatalf("tunnel %d: client still reading after a minute", i)
		}
		tun.c.Close()
	}
	waitFor(t, func() bool { return len(w.lines("access", byTarget(target))) == len(tuns) })
	ln.Close()
	twg.Wait()
	if targetGot != clientSent || clientGot != targetSent {
		t.Errorf("target got %d of the %d bytes clients sent; clients got %d of the %d the target sent",
			targetGot, clientSent, clientGot, targetSent)
	}
	t.Logf("%d MiB up and %d MiB down through the stalled tunnels", clientSent>>20, targetSent>>20)

	// Back to the baseline within the pipe pool's idle time (at most
	// 10 s), without a garbage collection to close pooled pipes.
	ended := time.Now()
	deadline := ended.Add(20 * time.Second)
	for {
		fds := procFDs(t, w.pid)
		if fds <= w.base.fds+fdSlack {
			t.Logf("back to %d descriptors (baseline %d) %v after the tunnels ended", fds, w.base.fds, time.Since(ended).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry holds %d descriptors 20s after the tunnels ended, baseline %d: %s", fds, w.base.fds, w.fdKinds())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
