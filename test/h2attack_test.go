//go:build linux

package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"ferry/test/testkit"
)

// rawH2 is a hand-driven HTTP/2 client connection: the attack tests send
// frames no well-behaved client would.
type rawH2 struct {
	c   net.Conn
	fr  *http2.Framer
	buf bytes.Buffer
	enc *hpack.Encoder
	// wmu orders the frames of the writers.
	wmu sync.Mutex
}

// dialRawH2 connects, sends the preface and an empty SETTINGS frame, and
// leaves a 30s deadline on the connection: no read or write of a test
// waits longer.
func dialRawH2(t *testing.T, addr string) *rawH2 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := &rawH2{c: c, fr: http2.NewFramer(c, c)}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.fr.MaxHeaderListSize = 1 << 20
	r.enc = hpack.NewEncoder(&r.buf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return r
}

// block encodes a header block: the pseudo-fields of a CONNECT to target
// then fields, name and value in turn.
func (r *rawH2) block(target string, fields ...string) []byte {
	r.buf.Reset()
	r.enc.WriteField(hpack.HeaderField{Name: ":method", Value: "CONNECT"})
	r.enc.WriteField(hpack.HeaderField{Name: ":authority", Value: target})
	for i := 0; i+1 < len(fields); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(r.buf.Bytes())
}

// connect opens stream id as a CONNECT to target.
func (r *rawH2) connect(id uint32, target string) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(target), EndHeaders: true})
}

// outcome is what the server did with the streams and the connection.
type outcome struct {
	status  map[uint32]string        // :status of each answered stream
	reset   map[uint32]http2.ErrCode // RST_STREAM from the server
	goAway  *http2.ErrCode
	closed  bool // EOF or a reset: the server closed the connection
	pingAck bool // the server answered a PING
	timeout bool
}

// readUntil reads frames until done says so, the server closes the
// connection, or d passes; it acks SETTINGS and PINGs on the way.
func (r *rawH2) readUntil(d time.Duration, done func(*outcome) bool) *outcome {
	o := &outcome{status: map[uint32]string{}, reset: map[uint32]http2.ErrCode{}}
	r.c.SetReadDeadline(time.Now().Add(d))
	for !done(o) {
		f, err := r.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				o.timeout = true
			} else {
				o.closed = true
			}
			return o
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				r.wmu.Lock()
				r.fr.WriteSettingsAck()
				r.wmu.Unlock()
			}
		case *http2.PingFrame:
			o.pingAck = o.pingAck || f.IsAck()
			if !f.IsAck() {
				r.wmu.Lock()
				r.fr.WritePing(true, f.Data)
				r.wmu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			o.status[f.StreamID] = f.PseudoValue("status")
		case *http2.RSTStreamFrame:
			o.reset[f.StreamID] = f.ErrCode
		case *http2.GoAwayFrame:
			code := f.ErrCode
			o.goAway = &code
		}
	}
	return o
}

// writeBlock sends a header block as HEADERS and CONTINUATION frames of
// at most max bytes (16 KiB is the default SETTINGS_MAX_FRAME_SIZE; ferry
// reads frames up to 1 MiB).
func (r *rawH2) writeBlock(id uint32, block []byte, max int) error {
	first := block[:min(len(block), max)]
	err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(first) == len(block)})
	for rest := block[len(first):]; err == nil && len(rest) > 0; {
		n := min(len(rest), max)
		err = r.fr.WriteContinuation(id, n == len(rest), rest[:n])
		rest = rest[n:]
	}
	return err
}

// manyFields is n header fields whose values are size bytes.
func manyFields(n, size int) []string {
	out := make([]string, 0, 2*n)
	for i := range n {
		out = append(out, fmt.Sprintf("x-f%d", i), strings.Repeat("v", size))
	}
	return out
}

// h2Setup is a watched ferry with h2c on and listener keys.
func h2Setup(keys, defaults string) faultSetup {
	return faultSetup{listener: "h2c = true\n" + keys, defaults: defaults, debug: true}
}

// TestH2RapidReset sends CVE-2023-44487's pattern: thousands of CONNECT
// streams each reset at once, in one burst, then a PING. x/net's server
// runs at most max_streams_per_connection handlers, and ends the
// connection (GOAWAY ENHANCE_YOUR_CALM) when more than four times that
// wait; a reset stream's dial is abandoned. Either the server ends the
// connection or it has dealt with every stream when it answers the PING;
// then ferry settles back to its baseline and serves the next client.
func TestH2RapidReset(t *testing.T) {
	t.Parallel()
	w := startWatched(t, h2Setup("", ""))
	echo := testkit.EchoServer(t)
	r := dialRawH2(t, w.addr)
	const streams = 5000
	go func() {
		for i := range uint32(streams) {
			id := 2*i + 1
			r.wmu.Lock()
			err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(echo), EndHeaders: true})
			if err == nil {
				err = r.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
			r.wmu.Unlock()
			if err != nil {
				return // the server closed the connection
			}
		}
		r.wmu.Lock()
		r.fr.WritePing(false, [8]byte{'a', 'f', 't', 'e', 'r'})
		r.wmu.Unlock()
	}()
	o := r.readUntil(20*time.Second, func(o *outcome) bool { return o.goAway != nil || o.pingAck })
	switch {
	case o.timeout:
		t.Fatalf("no GOAWAY, no close and no PING answer within 20s of %d resets", streams)
	case o.goAway != nil:
		t.Logf("GOAWAY %v after %d answers", *o.goAway, len(o.status))
	default:
		t.Logf("every stream dealt with: %d answered before their reset came", len(o.status))
	}
	r.c.Close()
	w.checkSettled(t)
	cc := dialH2C(t, w.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	testkit.EchoCheck(t, mustH2Connect(t, ctx, cc, echo))
}

// TestH2StreamLimit: a client that opens more streams than
// SETTINGS_MAX_CONCURRENT_STREAMS has the extra ones refused with
// RST_STREAM while the others keep working.
func TestH2StreamLimit(t *testing.T) {
	t.Parallel()
	w := startWatched(t, h2Setup("max_streams_per_connection = 3", ""))
	echo := testkit.EchoServer(t)
	r := dialRawH2(t, w.addr)
	for _, id := range []uint32{1, 3, 5} {
		if err := r.connect(id, echo); err != nil {
			t.Fatal(err)
		}
	}
	o := r.readUntil(10*time.Second, func(o *outcome) bool { return len(o.status) == 3 })
	for _, id := range []uint32{1, 3, 5} {
		if o.status[id] != "200" {
			t.Fatalf("stream %d: got status %q, want 200 (%+v)", id, o.status[id], o)
		}
	}
	if err := r.connect(7, echo); err != nil {
		t.Fatal(err)
	}
	o = r.readUntil(10*time.Second, func(o *outcome) bool { return len(o.reset) > 0 || o.goAway != nil })
	// PROTOCOL_ERROR once the client has acknowledged the limit,
	// REFUSED_STREAM before (RFC 9113 section 5.1.2).
	if code, ok := o.reset[7]; !ok || (code != http2.ErrCodeProtocol && code != http2.ErrCodeRefusedStream) {
		t.Fatalf("stream 7 over the limit: got %+v, want RST_STREAM PROTOCOL_ERROR or REFUSED_STREAM", o)
	}
	r.c.Close()
	w.checkSettled(t)
}

// TestH2ClientStreamCap: max_client_streams counts one address's streams
// over all its connections; one over it is answered 429, and the count
// goes down as streams end.
func TestH2ClientStreamCap(t *testing.T) {
	t.Parallel()
	echo := testkit.EchoServer(t)
	f := startFerry(t, h2cConfig("max_client_streams = 3", nil, ""), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c1, c2 := dialH2C(t, f.addr), dialH2C(t, f.addr)
	open := []*h2Tunnel{mustH2Connect(t, ctx, c1, echo), mustH2Connect(t, ctx, c1, echo), mustH2Connect(t, ctx, c2, echo)}
	_, resp, err := h2Connect(ctx, c2, echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th stream: got %d, want 429", resp.StatusCode)
	}
	// The count goes down when the stream's handler has ended, just
	// after its access line: try until a stream opens.
	open[0].Close()
	var tun *h2Tunnel
	waitFor(t, func() bool {
		tun, resp, err = h2Connect(ctx, c2, echo, nil)
		return err == nil && tun != nil
	})
	testkit.EchoCheck(t, tun)
}

// TestH2HugeHeaders: a header block over [limits] max_header_bytes is
// answered 431; an endless CONTINUATION flood ends the connection
// before much of it is read (CVE-2023-45288).
func TestH2HugeHeaders(t *testing.T) {
	t.Parallel()
	w := startWatched(t, h2Setup("", ""))
	echo := testkit.EchoServer(t)
	for _, tc := range []struct {
		name     string
		fields   []string
		maxFrame int
		want431  bool
	}{
		// 2000 fields of 64 bytes (128 KiB, twice the limit) in one
		// frame: decoded, found too large, answered 431 (RFC 9113
		// section 10.5.1).
		{"many fields", manyFields(2000, 64), 1 << 20, true},
		// The same in 16 KiB frames: x/net stops decoding a block that
		// goes on past the limit and ends the connection (PROTOCOL_ERROR)
		// rather than read the rest.
		{"many fields in CONTINUATIONs", manyFields(2000, 64), 16 << 10, false},
		// One value of 100 KiB, longer than the whole limit: refused by
		// the decoder (COMPRESSION_ERROR, section 4.3).
		{"one huge field", []string{"x-big", strings.Repeat("a", 100<<10)}, 16 << 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRawH2(t, w.addr)
			if err := r.writeBlock(1, r.block(echo, tc.fields...), tc.maxFrame); err != nil {
				t.Fatal(err)
			}
			o := r.readUntil(10*time.Second, func(o *outcome) bool { return o.status[1] != "" })
			switch {
			case tc.want431 && o.status[1] != "431":
				t.Errorf("got %+v, want status 431", o)
			case !tc.want431 && (o.goAway == nil || !o.closed):
				t.Errorf("got %+v, want GOAWAY and a close", o)
			case o.goAway != nil:
				t.Logf("GOAWAY %v", *o.goAway)
			}
		})
	}
	t.Run("CONTINUATION flood", func(t *testing.T) {
		r := dialRawH2(t, w.addr)
		if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(echo)}); err != nil {
			t.Fatal(err)
		}
		junk := r.block(echo, "x-junk", strings.Repeat("b", 8<<10))
		sent := 0
		for ; sent < 64<<20; sent += len(junk) {
			if err := r.fr.WriteContinuation(1, false, junk); err != nil {
				break // closed by ferry: the expected end
			}
		}
		o := r.readUntil(10*time.Second, func(*outcome) bool { return false })
		if !o.closed {
			t.Errorf("after %d MiB of CONTINUATION: %+v, want the connection closed", sent>>20, o)
		}
		t.Logf("ferry closed the connection after %d KiB of CONTINUATION", sent>>10)
	})
	w.checkSettled(t)
}

// TestH2Timeouts: handshake_timeout bounds a connection until its first
// request (a bare preface, or part of one); idle_timeout closes a
// connection without streams (GOAWAY) and a tunnel without traffic.
func TestH2Timeouts(t *testing.T) {
	t.Parallel()
	w := startWatched(t, h2Setup("", `handshake_timeout = "1s"
idle_timeout = "2s"`))
	echo := testkit.EchoServer(t)
	t.Run("preface only", func(t *testing.T) {
		r := dialRawH2(t, w.addr)
		start := time.Now()
		o := r.readUntil(15*time.Second, func(*outcome) bool { return false })
		if !o.closed {
			t.Errorf("got %+v, want the connection closed", o)
		}
		t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("partial preface", func(t *testing.T) {
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "PRI * HTTP/2.0\r\n")
		if b := readAllWithin(t, c, 15*time.Second); len(b) != 0 {
			t.Errorf("got %q, want a silent close", b)
		}
	})
	t.Run("idle connection and tunnel", func(t *testing.T) {
		r := dialRawH2(t, w.addr)
		if err := r.connect(1, echo); err != nil {
			t.Fatal(err)
		}
		o := r.readUntil(15*time.Second, func(o *outcome) bool { return o.goAway != nil })
		if o.status[1] != "200" || o.goAway == nil {
			t.Errorf("got %+v, want a 200, then the idle tunnel ended and a GOAWAY", o)
		}
		w.waitAccess(t, echo, "idle timeout")
	})
	w.checkSettled(t)
}

// TestH2ManyConnections opens 200 h2c connections with a tunnel each, at
// once, then drops them all: ferry serves every one and gets back to its
// baseline of goroutines and descriptors.
func TestH2ManyConnections(t *testing.T) {
	t.Parallel()
	fs := h2Setup("", "")
	// All from one address at once: over [limits] max_client_handshakes
	// (64) they would be refused at accept.
	fs.tables = "[limits]\nmax_client_handshakes = 0\n"
	w := startWatched(t, fs)
	echo := testkit.EchoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 200
	var wg sync.WaitGroup
	conns := make([]*http2.ClientConn, n)
	tr := &http2.Transport{AllowHTTP: true}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", w.addr, 10*time.Second)
			if err != nil {
				t.Errorf("connection %d: %v", i, err)
				return
			}
			cc, err := tr.NewClientConn(c)
			if err != nil {
				c.Close()
				t.Errorf("connection %d: %v", i, err)
				return
			}
			conns[i] = cc
			tun, resp, err := h2Connect(ctx, cc, echo, nil)
			if err != nil || tun == nil {
				t.Errorf("connection %d: %v %v", i, resp, err)
				return
			}
			if err := echoOnce(tun); err != nil {
				t.Errorf("connection %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	for _, cc := range conns {
		if cc != nil {
			cc.Close()
		}
	}
	w.checkSettled(t)
}

// echoOnce sends a line through an echo tunnel and reads it back.
func echoOnce(c io.ReadWriter) error {
	msg := []byte("ping through ferry\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo mismatch")
	}
	return nil
}

// TestH2ClientNeverReads: a client opens tunnels to targets that send
// without end and never reads its connection. Once ferry's writes to it
// have made no progress for idle_timeout, the connection is closed, and
// everything the streams held is let go.
func TestH2ClientNeverReads(t *testing.T) {
	t.Parallel()
	w := startWatched(t, h2Setup("", `idle_timeout = "2s"`))
	var dialed atomic.Int32
	source := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		dialed.Add(1)
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 64<<10)
		for range 1 << 14 { // at most 1 GiB
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	r := dialRawH2(t, w.addr)
	// A large window, so that ferry's writes stall in the socket, not in
	// flow control.
	r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	r.fr.WriteWindowUpdate(0, 1<<31-1-65535)
	for _, id := range []uint32{1, 3, 5} {
		if err := r.connect(id, source.Addr); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return dialed.Load() == 3 })
	// Never read: wait until ferry has given up on the connection.
	closed := func() bool {
		u, err := w.usage()
		return err == nil && u.active == 0
	}
	deadline := time.Now().Add(30 * time.Second)
	for !closed() {
		if time.Now().After(deadline) {
			t.Fatal("ferry kept a connection that reads nothing for 30s (idle_timeout 2s)")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.c.Close()
	w.checkSettled(t)
}
