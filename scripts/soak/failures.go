package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"ferry/scripts/internal/load"
)

// failure runs the i-th failure scenario: each of them, in turn.
func (d *driver) failure(i int) {
	scenarios := []func(int){
		d.refusedTunnel,
		d.refusedHTTP,
		d.refusedTCP,
		d.targetReset,
		d.targetCut,
		d.clientResetHandshake,
		d.clientStallHandshake,
		d.clientGarbage,
		d.clientAbortDownload,
		d.clientAbortUpload,
	}
	k := i % len(scenarios)
	scenarios[k](i / len(scenarios))
}

// refusedTunnel asks for a tunnel to a closed port: CONNECT must answer
// 502, SOCKS5 reply 5 (connection refused).
func (d *driver) refusedTunnel(i int) {
	p := d.proxied[i%len(d.proxied)]
	name := "refused " + p.name
	c, err := dial(p, d.closed, d.opDeadline())
	if err == nil {
		c.Close()
		d.record(name, unexpected, errors.New("tunnel to a closed port opened"))
		return
	}
	var r *load.Refusal
	want := 502
	if p.proto == "socks5" {
		want = 5
	}
	if errors.As(err, &r) && r.Code == want {
		d.record(name, expected, nil)
		return
	}
	d.record(name, unexpected, fmt.Errorf("want code %d: %w", want, err))
}

// refusedHTTP sends a plain http:// request for a closed port: 502.
func (d *driver) refusedHTTP(i int) {
	p := d.proxied[i%len(d.proxied)]
	name := "refused http"
	if p.addr == d.cfg.hook {
		name += "+hook"
	}
	c, err := net.DialTimeout("tcp", p.addr, d.cfg.opTimeout)
	if err != nil {
		d.record(name, unexpected, err)
		return
	}
	defer c.Close()
	c.SetDeadline(d.opDeadline())
	if _, err := fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", d.closed, d.closed); err != nil {
		d.record(name, unexpected, err)
		return
	}
	head, _, err := load.ReadHead(c)
	if err != nil {
		d.record(name, unexpected, fmt.Errorf("response: %w", err))
		return
	}
	if code := load.StatusCode(head); code != 502 {
		d.record(name, unexpected, fmt.Errorf("status %d, want 502", code))
		return
	}
	load.WaitClose(c, d.opDeadline())
	d.record(name, expected, nil)
}

// refusedTCP connects to a tcp listener whose target is a closed port:
// ferry must close the client without a byte.
func (d *driver) refusedTCP(i int) {
	if d.dead == nil {
		d.refusedTunnel(i)
		return
	}
	name := "refused " + d.dead.name
	c, err := dial(*d.dead, d.target, d.opDeadline())
	if err != nil {
		d.record(name, unexpected, err)
		return
	}
	defer c.Close()
	d.expectClose(name, c, "bytes from a closed target")
}

// expectClose records whether c ends without a byte: any byte is what
// bytes says, unexpected.
func (d *driver) expectClose(name string, c net.Conn, bytes string) {
	var buf [64]byte
	n, err := c.Read(buf[:])
	switch {
	case n > 0:
		d.record(name, unexpected, errors.New(bytes))
	case isClose(err):
		d.record(name, expected, nil)
	default:
		d.record(name, unexpected, fmt.Errorf("want a close: %w", err))
	}
}

// targetReset opens a tunnel to a target that resets every connection:
// ferry may refuse the tunnel or open it and pass the close on, but no
// byte may come and the client must not hang.
func (d *driver) targetReset(i int) {
	p := d.proxied[i%len(d.proxied)]
	name := "target-reset " + p.name
	c, err := dial(p, d.resetAddr, d.opDeadline())
	if err != nil {
		var r *load.Refusal
		if errors.As(err, &r) {
			d.record(name, expected, nil)
		} else {
			d.record(name, unexpected, err)
		}
		return
	}
	defer c.Close()
	d.expectClose(name, c, "bytes from a target that resets")
}

// targetCut asks the target for some data after which it resets: the
// client gets at most that data, then a close.
func (d *driver) targetCut(i int) {
	p := d.all[i%len(d.all)]
	name := "target-cut " + p.name
	c, err := dial(p, d.target, d.opDeadline())
	if err != nil {
		d.record(name, unexpected, err)
		return
	}
	defer c.Close()
	n := int64(64<<10 + rand.IntN(1<<20))
	h := make([]byte, 9)
	h[0] = 'R'
	binary.BigEndian.PutUint64(h[1:], uint64(n))
	if _, err := c.Write(h); err != nil {
		d.record(name, unexpected, err)
		return
	}
	got, err := readPattern(c, n+1)
	switch {
	case got > n:
		d.record(name, unexpected, fmt.Errorf("%d bytes, want at most %d", got, n))
	case isClose(err):
		d.record(name, expected, nil)
	default:
		d.record(name, unexpected, fmt.Errorf("after %d of %d bytes, want a close: %w", got, n, err))
	}
}

// handshakePrefix is the start of a tunnel request that stops before
// its end, in a few shapes.
func (d *driver) handshakePrefix(p path, i int) []byte {
	t := d.target.String()
	if p.proto == "socks5" {
		req := load.SOCKS5Request(1, d.target)
		switch i % 4 {
		case 0:
			return []byte{5}
		case 1:
			return []byte{5, 2, 0} // two methods announced, one sent
		case 2:
			return append([]byte{5, 1, 0}, req[:5]...) // greeting and half a request
		default:
			return append([]byte{5, 1, 0}, req[:len(req)-1]...)
		}
	}
	full := "CONNECT " + t + " HTTP/1.1\r\nHost: " + t + "\r\n\r\n"
	switch i % 4 {
	case 0:
		return []byte("C")
	case 1:
		return []byte("CONNECT " + t[:len(t)/2])
	case 2:
		return []byte("CONNECT " + t + " HTTP/1.1\r\n")
	default:
		return []byte(full[:len(full)-1])
	}
}

// clientResetHandshake starts a handshake and resets the connection:
// before a byte, in the middle, or with the whole request sent, while
// ferry dials.
func (d *driver) clientResetHandshake(i int) {
	p := d.proxied[i%len(d.proxied)]
	name := "client-reset-handshake " + p.name
	c, err := net.DialTimeout("tcp", p.addr, d.cfg.opTimeout)
	if err != nil {
		d.record(name, unexpected, err)
		return
	}
	c.SetDeadline(d.opDeadline())
	var msg []byte
	switch k := (i / len(d.proxied)) % 6; {
	case k == 4: // nothing at all
	case k == 5 && p.proto == "socks5":
		msg = append([]byte{5, 1, 0}, load.SOCKS5Request(1, d.target)...)
	case k == 5:
		t := d.target.String()
		msg = []byte("CONNECT " + t + " HTTP/1.1\r\nHost: " + t + "\r\n\r\n")
	default:
		msg = d.handshakePrefix(p, k)
	}
	if len(msg) > 0 {
		if _, err := c.Write(msg); err != nil {
			load.Reset(c)
			d.record(name, unexpected, err)
			return
		}
	}
	time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
	load.Reset(c)
	d.record(name, expected, nil)
}

// clientStallHandshake starts a handshake and stops: ferry must close
// the connection at handshake_timeout.
func (d *driver) clientStallHandshake(i int) {
	p := d.proxied[i%len(d.proxied)]
	name := "client-stall-handshake " + p.name
	start := time.Now()
	c, err := net.DialTimeout("tcp", p.addr, d.cfg.opTimeout)
	if err != nil {
		d.record(name, unexpected, err)
		return
	}
	defer c.Close()
	limit := start.Add(d.cfg.handshakeTimeout + 5*time.Second)
	if _, err := c.Write(d.handshakePrefix(p, i/len(d.proxied))); err != nil {
		d.record(name, unexpected, err)
		return
	}
	err = load.WaitClose(c, limit) // a SOCKS5 method reply may come first
	took := time.Since(start)
	switch {
	case isTimeout(err):
		d.record(name, unexpected, fmt.Errorf("still open after %v (handshake_timeout %v)", took.Round(time.Second), d.cfg.handshakeTimeout))
	case !isClose(err):
		d.record(name, unexpected, fmt.Errorf("want a close: %w", err))
	case took < d.cfg.handshakeTimeout-500*time.Millisecond:
		d.record(name, unexpected, fmt.Errorf("closed after %v, before handshake_timeout %v", took.Round(time.Millisecond), d.cfg.handshakeTimeout))
	default:
		d.record(name, expected, nil)
	}
}

// clientGarbage sends requests ferry must refuse: an HTTP error
// status or a SOCKS5 error, then a close; or just a close.
func (d *driver) clientGarbage(i int) {
	p := d.proxied[i%len(d.proxied)]
	k := (i / len(d.proxied)) % 3
	name := "client-garbage " + p.name
	var msg []byte
	if p.proto == "socks5" {
		switch k {
		case 0:
			msg = []byte{5, 1, 2} // username/password only: ferry has no auth here
		case 1:
			msg = append([]byte{5, 1, 0}, load.SOCKS5Request(2, d.target)...) // BIND
		default:
			msg = []byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0} // a TLS record: no protocol ferry speaks
		}
	} else {
		switch k {
		case 0:
			msg = []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") // origin form: ferry is not a web server
		case 1:
			msg = []byte("CONNECT no-port HTTP/1.1\r\nHost: no-port\r\n\r\n")
		default:
			msg = []byte("NOT HTTP AT ALL\r\n\r\n")
		}
	}
	c, err := net.DialTimeout("tcp", p.addr, d.cfg.opTimeout)
	if err != nil {
		d.record(name, unexpected, err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d.cfg.handshakeTimeout + 5*time.Second))
	if _, err := c.Write(msg); err != nil {
		d.record(name, unexpected, err)
		return
	}
	got, err := io.ReadAll(io.LimitReader(c, 64<<10))
	code := load.StatusCode(got)
	switch {
	case err != nil && !isClose(err):
		d.record(name, unexpected, fmt.Errorf("want an answer and a close: %w", err))
	case len(got) == 0, code >= 400 && code < 500:
		d.record(name, expected, nil)
	case string(got) == "\x05\xff": // no acceptable method
		d.record(name, expected, nil)
	case len(got) >= 4 && string(got[:4]) == "\x05\x00\x05\x07": // method reply, then "command not supported"
		d.record(name, expected, nil)
	default:
		d.record(name, unexpected, fmt.Errorf("answer %q", got[:min(len(got), 64)]))
	}
}

// clientAbortDownload starts a long download and goes away part way,
// with a reset or a plain close.
func (d *driver) clientAbortDownload(i int) {
	p := d.all[i%len(d.all)]
	name := "client-abort-download " + p.name
	c, err := dial(p, d.target, d.opDeadline())
	if err != nil {
		d.record(name, unexpected, err)
		return
	}
	h := make([]byte, 9)
	h[0] = 'D'
	binary.BigEndian.PutUint64(h[1:], 64<<20)
	if _, err := c.Write(h); err != nil {
		c.Close()
		d.record(name, unexpected, err)
		return
	}
	k := int64(256<<10 + rand.IntN(4<<20))
	if got, err := readPattern(c, k); err != nil {
		c.Close()
		d.record(name, unexpected, fmt.Errorf("after %d bytes: %w", got, err))
		return
	}
	if i%2 == 0 {
		load.Reset(c)
	} else {
		c.Close()
	}
	d.record(name, expected, nil)
}

// clientAbortUpload starts a long upload and goes away part way.
func (d *driver) clientAbortUpload(i int) {
	p := d.all[i%len(d.all)]
	name := "client-abort-upload " + p.name
	c, err := dial(p, d.target, d.opDeadline())
	if err != nil {
		d.record(name, unexpected, err)
		return
	}
	h := make([]byte, 9)
	h[0] = 'U'
	binary.BigEndian.PutUint64(h[1:], 64<<20)
	k := int64(256<<10 + rand.IntN(4<<20))
	if _, err := c.Write(h); err == nil {
		err = writePattern(c, k)
	}
	if err != nil {
		c.Close()
		d.record(name, unexpected, err)
		return
	}
	if i%2 == 0 {
		load.Reset(c)
	} else {
		c.Close()
	}
	d.record(name, expected, nil)
}
