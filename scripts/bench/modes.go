package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// throughput moves b.cfg.bytes through streams tunnels at once in one
// direction, and reports the proxy's CPU time per 10^9 bytes. The tunnels
// are opened before the measurement starts.
func (b *bench) throughput(streams int, dir string) *Result {
	r := &Result{Streams: streams, Dir: dir}
	per := max(1, b.cfg.bytes/int64(streams))
	conns := make([]net.Conn, 0, streams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range streams {
		c, err := b.d.dial()
		if err != nil {
			r.fail(fmt.Errorf("open tunnel: %w", err))
			return r
		}
		conns = append(conns, c)
	}
	time.Sleep(b.cfg.settle)
	m := b.start()
	deadline := time.Now().Add(b.cfg.timeout)
	moved := make([]int64, streams)
	errs := make([]error, streams)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = moveStream(c, dir, per, deadline, &moved[i])
		}()
	}
	wg.Wait()
	elapsed := time.Since(m.t)
	b.stop(m, elapsed, r)
	for i := range streams {
		r.Bytes += moved[i]
		if errs[i] != nil {
			if isTimeout(errs[i]) {
				r.Truncated = true
			} else {
				r.fail(errs[i])
			}
		}
	}
	if r.Seconds > 0 {
		r.MBps = float64(r.Bytes) / 1e6 / r.Seconds
	}
	if r.Bytes > 0 && b.cfg.pid > 0 {
		r.CPUSecPerGB = r.CPUSec / (float64(r.Bytes) / 1e9)
	}
	return r
}

// moveStream carries per bytes through one tunnel in direction dir
// (up: sent to the target, down: read from it), counting them in moved.
func moveStream(c net.Conn, dir string, per int64, deadline time.Time, moved *int64) error {
	c.SetDeadline(deadline)
	var h [9]byte
	h[0] = 'U'
	if dir == "down" {
		h[0] = 'D'
	}
	binary.BigEndian.PutUint64(h[1:], uint64(per))
	if _, err := c.Write(h[:]); err != nil {
		return err
	}
	if dir == "up" {
		return sendStream(c, per, moved)
	}
	return receiveStream(c, per, moved)
}

// sendStream writes per bytes to the target and waits for its
// acknowledgement.
func sendStream(c net.Conn, per int64, moved *int64) error {
	for *moved < per {
		n, err := c.Write(zeros[:min(int64(len(zeros)), per-*moved)])
		*moved += int64(n)
		if err != nil {
			return err
		}
	}
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 'K' {
		return fmt.Errorf("no acknowledgement from the target: %v", err)
	}
	return nil
}

// receiveStream reads per bytes from the target.
func receiveStream(c net.Conn, per int64, moved *int64) error {
	buf := make([]byte, chunk)
	for *moved < per {
		n, err := c.Read(buf[:min(int64(len(buf)), per-*moved)])
		*moved += int64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

// connrate opens tunnels as fast as cfg.conc clients can, each: connect,
// handshake, echo cfg.echoBytes through the tunnel, close (the target
// closes first, the client when the close has come through: see target).
// It runs for cfg.duration or cfg.count tunnels, whichever comes first.
func (b *bench) connrate() *Result {
	r := &Result{Concurrency: b.cfg.conc}
	time.Sleep(b.cfg.settle)
	m := b.start()
	lr := b.drive(m, b.cfg.conc, func(int) func(time.Time) error {
		msg := make([]byte, b.cfg.echoBytes)
		got := make([]byte, b.cfg.echoBytes)
		return func(time.Time) error { return b.echoTunnel(msg, got) }
	})
	time.Sleep(b.cfg.settle) // the proxy finishes closing the last tunnels
	b.stop(m, lr.elapsed, r)
	r.Conns = lr.done
	r.Errors = lr.errs
	if lr.firstErr != nil {
		r.FirstError = lr.firstErr.Error()
	}
	r.ConnP50Us, r.ConnP99Us = percentile(lr.lats, 0.5), percentile(lr.lats, 0.99)
	if r.Seconds > 0 {
		r.ConnsPerSec = float64(r.Conns) / r.Seconds
	}
	if r.Conns > 0 && b.cfg.pid > 0 {
		r.CPUUsPerConn = r.CPUSec * 1e6 / float64(r.Conns)
	}
	return r
}

// echoTunnel opens a tunnel, sends msg, reads it back, and closes the
// tunnel: after the target's close came through (-wait-close), or at
// once.
func (b *bench) echoTunnel(msg, got []byte) error {
	c, err := b.openEcho(msg, got, b.cfg.waitClose)
	if c != nil {
		return c.Close()
	}
	return err
}

func (b *bench) openEcho(msg, got []byte, closeIt bool) (net.Conn, error) {
	c, err := b.d.dial()
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(b.cfg.dialTO))
	if _, err := c.Write(msg); err != nil {
		c.Close()
		return nil, fmt.Errorf("echo write: %w", err)
	}
	if _, err := io.ReadFull(c, got); err != nil {
		c.Close()
		return nil, fmt.Errorf("echo read: %w", err)
	}
	if closeIt {
		// Wait for the target's close to come through the proxy, so that
		// the client is not the side that closes first.
		var one [1]byte
		if n, err := c.Read(one[:]); n > 0 || err != io.EOF {
			c.Close()
			if err == nil {
				err = errors.New("bytes after the echo")
			}
			return nil, fmt.Errorf("waiting for the close: %w", err)
		}
		return nil, c.Close()
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// pingpong sends cfg.msg bytes and waits for their echo, cfg.rounds
// times through one tunnel.
func (b *bench) pingpong() *Result {
	r := &Result{MsgBytes: b.cfg.msg}
	c, err := b.d.dial()
	if err != nil {
		r.fail(fmt.Errorf("open tunnel: %w", err))
		return r
	}
	defer c.Close()
	msg, got := make([]byte, b.cfg.msg), make([]byte, b.cfg.msg)
	round := func() error {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err := io.ReadFull(c, got)
		return err
	}
	c.SetDeadline(time.Now().Add(b.cfg.timeout))
	for range b.cfg.warmup {
		if err := round(); err != nil {
			r.fail(fmt.Errorf("warm-up: %w", err))
			return r
		}
	}
	time.Sleep(b.cfg.settle)
	m := b.start()
	deadline := m.t.Add(b.cfg.timeout)
	c.SetDeadline(deadline)
	lats := make([]time.Duration, 0, min(b.cfg.rounds, 1<<24))
	var sum time.Duration
	for i := int64(0); i < b.cfg.rounds && i < 1<<24; i++ {
		t0 := time.Now()
		if err := round(); err != nil {
			if isTimeout(err) {
				r.Truncated = true
			} else {
				r.fail(err)
			}
			break
		}
		d := time.Since(t0)
		lats = append(lats, d)
		sum += d
	}
	elapsed := time.Since(m.t)
	b.stop(m, elapsed, r)
	r.Rounds = int64(len(lats))
	if r.Rounds > 0 {
		r.MeanUs = float64(sum) / 1e3 / float64(r.Rounds)
		if b.cfg.pid > 0 {
			r.CPUUsPerRound = r.CPUSec * 1e6 / float64(r.Rounds)
		}
	}
	sortDurations(lats)
	r.P50Us, r.P99Us = percentile(lats, 0.5), percentile(lats, 0.99)
	return r
}

// idle opens cfg.n tunnels (each echoes cfg.echoBytes once, so the path
// to the target is up and has carried data), holds them idle for
// cfg.hold, and reads the proxy's RSS and fd count against those it had
// before: the cost of one idle tunnel.
func (b *bench) idle() *Result {
	n := b.cfg.n
	r := &Result{Asked: int64(n)}
	// This process holds both ends: n client sockets and n target sockets.
	if lim, err := raiseNoFile(uint64(2*n + 256)); err != nil {
		fmt.Fprintf(os.Stderr, "bench: RLIMIT_NOFILE %d: %v\n", lim, err)
	}
	time.Sleep(b.cfg.settle)
	base, err := sample(b.cfg.pid, b.cfg.cgroup, true)
	if err != nil {
		r.fail(err)
		return r
	}
	m := b.start()
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	opened, errCount, firstErr := b.openIdle(conns, m.t.Add(b.cfg.timeout))
	openElapsed := time.Since(m.t)
	r.Errors, r.Tunnels = errCount, opened
	if firstErr != nil {
		r.FirstError = firstErr.Error()
	}
	if r.Tunnels < int64(n) && r.Errors == 0 {
		r.Truncated = true // -timeout while opening
	}
	r.OpenSeconds = openElapsed.Seconds()
	time.Sleep(b.cfg.settle)
	opening, _ := sample(b.cfg.pid, b.cfg.cgroup, false)
	if r.Tunnels > 0 && b.cfg.pid > 0 {
		r.CPUUsPerOpenConn = cpuSeconds(m.p, opening) * 1e6 / float64(r.Tunnels)
	}
	// The hold: every tunnel idle.
	h := b.start()
	time.Sleep(b.cfg.hold)
	held, err := sample(b.cfg.pid, b.cfg.cgroup, true)
	if err != nil {
		r.fail(err)
		return r
	}
	b.stop(h, time.Since(h.t), r)
	r.HoldSeconds = r.Seconds
	r.IdleCPUms = r.CPUSec * 1e3
	r.RSSBaseKiB, r.RSSKiB = base.rssKiB, held.rssKiB
	r.FDsBase, r.FDs = base.fds, held.fds
	if r.Tunnels > 0 && b.cfg.pid > 0 {
		t := float64(r.Tunnels)
		r.RSSKiBPerTunnel = float64(held.rssKiB-base.rssKiB) / t
		r.PSSKiBPerTunnel = float64(held.pssKiB-base.pssKiB) / t
		r.FDsPerTunnel = float64(held.fds-base.fds) / t
	}
	b.closeIdle(conns)
	b.waitFDs(base)
	return r
}

// openIdle fills conns with tunnels that have echoed once, from
// cfg.openConc openers, until all are open, openDeadline passes or too
// many failed; it returns how many opened and failed, and the first
// failure.
func (b *bench) openIdle(conns []net.Conn, openDeadline time.Time) (opened, errs int64, first error) {
	n := len(conns)
	var next, openedN, errCount atomic.Int64
	var stop atomic.Bool
	var mu sync.Mutex
	var firstErr error
	maxErrs := int64(max(50, n/50))
	var wg sync.WaitGroup
	for range b.cfg.openConc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, got := make([]byte, b.cfg.echoBytes), make([]byte, b.cfg.echoBytes)
			for !stop.Load() && time.Now().Before(openDeadline) {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				c, err := b.openEcho(msg, got, false)
				if err != nil {
					if errCount.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					if errCount.Load() >= maxErrs {
						stop.Store(true)
					}
					time.Sleep(time.Millisecond)
					continue
				}
				conns[i] = c
				openedN.Add(1)
			}
		}()
	}
	wg.Wait()
	return openedN.Load(), errCount.Load(), firstErr
}

// closeIdle closes the idle tunnels, target side first (see target),
// gives the closes a bounded time to come through to the clients
// (unless -wait-close=false), then closes the clients.
func (b *bench) closeIdle(conns []net.Conn) {
	b.tg.CloseConns()
	end := time.Now().Add(10 * time.Second)
	var one [1]byte
	for _, c := range conns {
		if c != nil && b.cfg.waitClose && time.Now().Before(end) {
			c.SetReadDeadline(end)
			c.Read(one[:])
		}
	}
	for i, c := range conns {
		if c != nil {
			c.Close()
			conns[i] = nil
		}
	}
}

// waitFDs gives the proxy a bounded time to let go of the closed
// tunnels before the next measurement: done when it is back to its fd
// count, or the count has not moved for a second (forking proxies keep
// children and their fds).
func (b *bench) waitFDs(base procSample) {
	if b.cfg.pid > 0 {
		end := time.Now().Add(15 * time.Second)
		last, same := int64(-1), 0
		for time.Now().Before(end) {
			s, err := sample(b.cfg.pid, b.cfg.cgroup, true)
			if err != nil || s.fds <= base.fds+16 {
				break
			}
			if s.fds == last {
				if same++; same >= 10 {
					break
				}
			} else {
				last, same = s.fds, 0
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// driven is what drive measured.
type driven struct {
	done, errs int64
	firstErr   error
	lats       []time.Duration // of the operations that succeeded, sorted
	elapsed    time.Duration   // from the meter's start to the last worker's end
}

// drive runs workers goroutines, each calling the operation newOp(w)
// returns in a closed loop until cfg.duration after m started, or until
// cfg.count operations have been issued when it is set. A failed
// operation is counted and retried after a millisecond (no hot loop
// against a refusing proxy); latencies are kept up to 2^20 a worker.
func (b *bench) drive(m meter, workers int, newOp func(w int) func(deadline time.Time) error) driven {
	deadline := m.t.Add(b.cfg.duration)
	var issued, done, errCount atomic.Int64
	var mu sync.Mutex
	var firstErr error
	lats := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op := newOp(w)
			for time.Now().Before(deadline) {
				if b.cfg.count > 0 && issued.Add(1) > b.cfg.count {
					return
				}
				t0 := time.Now()
				if err := op(deadline); err != nil {
					if errCount.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					time.Sleep(time.Millisecond)
					continue
				}
				done.Add(1)
				if len(lats[w]) < 1<<20 {
					lats[w] = append(lats[w], time.Since(t0))
				}
			}
		}()
	}
	wg.Wait()
	d := driven{done: done.Load(), errs: errCount.Load(), firstErr: firstErr, elapsed: time.Since(m.t)}
	for _, l := range lats {
		d.lats = append(d.lats, l...)
	}
	sortDurations(d.lats)
	return d
}
