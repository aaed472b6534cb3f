package server

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ferry/relay"
	"ferry/test/testkit"

	"golang.org/x/net/http2"
)

// hashOrigin answers each request with the SHA-256 of its body, in hex,
// keeping the connection for the next. A body that ends short, or a
// connection that goes quiet for 10 s, is sent to short (if not nil) as
// the error, and the connection closes.
func hashOrigin(t *testing.T, conns *atomic.Int32, short chan<- error) string {
	t.Helper()
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			h := sha256.New()
			if _, err := io.Copy(h, req.Body); err != nil {
				if short != nil {
					short <- err
				}
				return
			}
			sum := hex.EncodeToString(h.Sum(nil))
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(sum), sum)
		}
	}).Addr
}

// idleConfig is basicConfig with an idle_timeout of idle.
func idleConfig(idle time.Duration) string {
	return strings.Replace(basicConfig, "[defaults]\n", fmt.Sprintf("[defaults]\nidle_timeout = %q\n", idle), 1)
}

// upload writes a POST of a size-byte pattern body to w (see
// sendPieces).
func upload(w io.Writer, origin string, size int64, pieces int) error {
	if _, err := fmt.Fprintf(w, "POST http://%s/up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", origin, origin, size); err != nil {
		return err
	}
	return sendPieces(w, size, pieces)
}

// uploadAll sends an upload of each size to w, all in one write when
// oneWrite (under 8 KiB), else as upload writes them.
func uploadAll(w io.Writer, origin string, pieces int, oneWrite bool, sizes ...int64) error {
	var bw *bufio.Writer
	if oneWrite {
		bw = bufio.NewWriterSize(w, 8<<10)
		w = bw
	}
	for _, size := range sizes {
		if err := upload(w, origin, size, pieces); err != nil {
			return err
		}
	}
	if bw != nil {
		return bw.Flush()
	}
	return nil
}

// sendPieces writes a size-byte pattern to w, in pieces pieces 100 ms
// apart when pieces > 1.
func sendPieces(w io.Writer, size int64, pieces int) error {
	body := &pattern{n: size}
	for k := max(pieces, 1); k > 0; k-- {
		if _, err := io.CopyN(w, body, (size-body.off)/int64(k)); err != nil {
			return err
		}
		if k > 1 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// A Content-Length request body that no data hook reads reaches the
// origin byte for byte, sent with its head when ferry read it whole with
// the head, copied under buffer_size and spliced over it, and the
// connections carry the next request: the splice stops at the body's
// end, leaving a pipelined request in the client's socket, and a body
// read with the head leaves the next request in ferry's buffer.
func TestHTTPUploadBody(t *testing.T) {
	tests := []struct {
		name      string
		size      int64
		pieces    int  // the client sends each body in pieces, 100 ms apart
		pipelined bool // both requests go before either answer is read
		oneWrite  bool // each request, or both when pipelined, in one write
	}{
		{name: "with its head", size: 1000, oneWrite: true},
		{name: "with its head, pipelined", size: 1000, pipelined: true, oneWrite: true},
		{name: "copied", size: 100000},
		{name: "spliced", size: 3 << 20},
		{name: "spliced, pipelined", size: 1 << 20, pipelined: true},
		// Slow but never silent for idle_timeout: the deadline rolls.
		{name: "copied, slow client", size: 100000, pieces: 10},
		{name: "spliced, slow client", size: 1 << 20, pieces: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			origin := hashOrigin(t, &conns, nil)
			f := start(t, idleConfig(300*time.Millisecond))
			p := newProxyClient(t, f.addr)
			p.c.SetDeadline(time.Now().Add(10 * time.Second))
			sizes := []int64{tt.size, tt.size + 1} // two different bodies
			sent := make(chan error, 1)
			if tt.pipelined {
				go func() { sent <- uploadAll(p.c, origin, 1, tt.oneWrite, sizes...) }()
			}
			for i, size := range sizes {
				if !tt.pipelined {
					if err := uploadAll(p.c, origin, tt.pieces, tt.oneWrite, size); err != nil {
						t.Fatalf("request %d: %v\n%s", i, err, f.logs.String())
					}
				}
				resp, err := http.ReadResponse(p.br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				got, err := io.ReadAll(resp.Body)
				want := patternSum(size)
				if err != nil || string(got) != hex.EncodeToString(want[:]) {
					t.Fatalf("response %d: origin's hash %q (%v), want the body's %x", i, got, err, want)
				}
			}
			if tt.pipelined {
				if err := <-sent; err != nil {
					t.Fatalf("sending: %v", err)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("origin saw %d connections, want 1 (kept alive)", n)
			}
			waitFor(t, func() bool { return strings.Count(f.logs.String(), `"message":"access"`) == 2 })
			// The second request began where the first body ended.
			if n := strings.Count(f.logs.String(), `"method":"POST"`); n != 2 {
				t.Errorf("%d access lines say POST, want 2: %s", n, f.logs.String())
			}
			// Each line's up counts the head sent and the whole body.
			for i, m := range regexp.MustCompile(`"up":(\d+)`).FindAllStringSubmatch(f.logs.String(), -1) {
				if up, _ := strconv.ParseInt(m[1], 10, 64); up < sizes[i] || up > sizes[i]+200 {
					t.Errorf("access line %d: up %d, want the body's %d and its head", i, up, sizes[i])
				}
			}
		})
	}
}

// A request body the client cuts short or stops sending for longer than
// idle_timeout never looks complete to the origin: its connection is
// closed, not left waiting for the rest, and so is the client's. One the
// origin answers before reading ends at once, the rest unsent.
func TestHTTPUploadBodyCut(t *testing.T) {
	tests := []struct {
		name       string
		size, sent int64
		stall      bool // the client stays, silent
	}{
		{name: "copied", size: 100000, sent: 40000},
		{name: "spliced", size: 1 << 20, sent: 600000},
		{name: "copied, stalled", size: 100000, sent: 40000, stall: true},
		{name: "spliced, stalled", size: 1 << 20, sent: 600000, stall: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			short := make(chan error, 1)
			origin := hashOrigin(t, &conns, short)
			f := start(t, idleConfig(300*time.Millisecond))
			p := newProxyClient(t, f.addr)
			p.c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(p.c, "POST http://%s/up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", origin, origin, tt.size)
			if _, err := io.CopyN(p.c, &pattern{n: tt.size}, tt.sent); err != nil {
				t.Fatal(err)
			}
			if !tt.stall {
				p.c.(*net.TCPConn).CloseWrite()
			}
			select {
			case err := <-short:
				// A reset or an early EOF: either way, not a whole body.
				t.Logf("origin's read of the body: %v", err)
			case <-time.After(4 * time.Second):
				t.Fatal("the origin still waits for the rest of the body")
			}
			if _, err := io.ReadAll(p.br); isTimeout(err) {
				t.Fatal("the client's connection stays open")
			}
			waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"message":"access"`) })
		})
	}
}

// An origin that answers a large upload without reading it ends the
// splice: the client gets the answer and then the close, promptly,
// though the origin's socket never drains.
func TestHTTPUploadEarlyAnswer(t *testing.T) {
	origin := earlyOrigin(t)
	f := start(t, basicConfig)
	checkEarlyAnswer(t, f.addr, origin)
}

// An HTTP/2 client's upload, forwarded as HTTP/1.1, is not cut at
// idle_timeout while its body keeps coming: the wait for the origin's
// answer rolls with the body's bytes.
func TestHTTPUploadH2SlowBody(t *testing.T) {
	var conns atomic.Int32
	origin := hashOrigin(t, &conns, nil)
	cfg := idleConfig(300 * time.Millisecond)
	f := start(t, strings.Replace(cfg, `plugins = ["log"]`, "plugins = [\"log\"]\nh2c = true", 1))
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(dial(t, f.addr))
	if err != nil {
		t.Fatal(err)
	}
	const size = 200000
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sendPieces(pw, size, 10)) }()
	u, _ := url.Parse("http://" + origin + "/up")
	resp, err := cc.RoundTrip(&http.Request{Method: "POST", URL: u, Host: origin, Header: http.Header{},
		Body: pr, ContentLength: size})
	if err != nil {
		t.Fatalf("upload: %v\n%s", err, f.logs.String())
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := patternSum(size)
	if resp.StatusCode != 200 || err != nil || string(got) != hex.EncodeToString(want[:]) {
		t.Fatalf("got %d %q (%v), want the body's hash %x\n%s", resp.StatusCode, got, err, want, f.logs.String())
	}
}

// duplexOrigin answers at once with a chunked response that gets a
// one-byte chunk every 100 ms while the request body comes, and ends
// with the SHA-256 of the body, in hex, once it has all of it.
func duplexOrigin(t *testing.T) string {
	t.Helper()
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		sums := make(chan string, 1)
		go func() {
			h := sha256.New()
			io.Copy(h, req.Body)
			sums <- hex.EncodeToString(h.Sum(nil))
		}()
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case sum := <-sums:
				fmt.Fprintf(c, "%x\r\n%s\r\n0\r\n\r\n", len(sum), sum)
				return
			case <-tick.C:
				if _, err := io.WriteString(c, "1\r\n.\r\n"); err != nil {
					return
				}
			}
		}
	}).Addr
}

// A client whose upload pauses for longer than idle_timeout while the
// origin's answer to it keeps streaming (full-duplex HTTP/1.1) is not
// idle: idle_timeout is a time with no byte either way.
func TestHTTPUploadFullDuplex(t *testing.T) {
	const idle = 300 * time.Millisecond
	origin := duplexOrigin(t)
	f := start(t, idleConfig(idle))
	p := newProxyClient(t, f.addr)
	p.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(p.c, "POST http://%s/duplex HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", origin, origin)
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		t.Fatalf("response: %v\n%s", err, f.logs.String())
	}
	body := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(resp.Body)
		body <- string(b)
	}()
	time.Sleep(3 * idle) // the upload pauses; the answer streams
	io.WriteString(p.c, "5\r\nworld\r\n0\r\n\r\n")
	got := <-body
	sum := sha256.Sum256([]byte("helloworld"))
	if want := hex.EncodeToString(sum[:]); !strings.HasSuffix(got, want) || strings.Count(got, ".") < 5 {
		t.Fatalf("answer %q: want dots, then the body's hash %s\n%s", got, want, f.logs.String())
	}
}

// TestHTTPUploadSideFails: when one side of an upload fails, the client
// is told and the access line blames that side. An origin that closes or
// resets while the client's body pauses gets the client a 502 (the
// client's paused body is not its failure); one silent for idle_timeout
// after the whole body, or one that stops reading it, a 504; a client
// whose body stalls for idle_timeout while the origin waits for it a
// 408 (RFC 9110 section 15.5.9), whichever of the body's and the
// answer's waits runs out first. Both timeouts are "idle timeout". The
// origin that stopped reading is reset: the rest of the body can never
// go, and an orderly close would leave it queued in the kernel.
func TestHTTPUploadSideFails(t *testing.T) {
	const big = 64 << 20 // past what loopback's buffers hold
	tests := []struct {
		name, reason string
		status       int
		size, sent   int64 // the body's size, and what the client sends of it
		// fail runs once the origin read what it reads; done is closed
		// when the case has seen what it wants.
		fail func(c *net.TCPConn, done <-chan struct{})
	}{
		{"origin closes", "upstream closed", 502, 1000, 100, func(c *net.TCPConn, _ <-chan struct{}) { c.Close() }},
		{"origin resets", "upstream reset", 502, 1000, 100, func(c *net.TCPConn, _ <-chan struct{}) { relay.Abort(c) }},
		{"origin silent", "idle timeout", 504, 1000, 1000, silentUntil},
		{"origin stops reading", "idle timeout", 504, big, big, silentUntil},
		{"client stalls", "idle timeout", 408, 1000, 100, silentUntil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			held, done := make(chan *net.TCPConn, 1), make(chan struct{})
			defer close(done)
			origin := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err == nil {
					io.CopyN(io.Discard, req.Body, min(tt.sent, 1000))
				}
				held <- c
				tt.fail(c, done)
			}).Addr
			f := start(t, idleConfig(500*time.Millisecond))
			p := newProxyClient(t, f.addr)
			p.c.SetDeadline(time.Now().Add(5 * time.Second))
			go func() {
				fmt.Fprintf(p.c, "POST http://%s/up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", origin, origin, tt.size)
				io.CopyN(p.c, testkit.Zeros{}, tt.sent)
			}()
			resp, err := http.ReadResponse(p.br, nil)
			if err != nil || resp.StatusCode != tt.status {
				t.Fatalf("client got %v, %v; want %d\n%s", resp, err, tt.status, f.logs.String())
			}
			waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"message":"access"`) })
			if want := fmt.Sprintf(`"reason":%q`, tt.reason); !strings.Contains(f.logs.String(), want) {
				t.Fatalf("access line does not say %s: %s", want, f.logs.String())
			}
			if tt.size == big {
				testkit.WaitReset(t, <-held, 5*time.Second)
			}
		})
	}
}

// silentUntil keeps an origin's connection open and silent until done,
// or 10 s.
func silentUntil(_ *net.TCPConn, done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// TestHTTPH2ClientNotReading: an HTTP/2 client that asks for a large
// answer and reads none of it does not hold the exchange: once its
// stream's window is full and nothing moves for idle_timeout, the
// stream is reset (stallGuard) and the exchange ends and is logged.
func TestHTTPH2ClientNotReading(t *testing.T) {
	origin := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		const size = 32 << 20
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		io.CopyN(c, &pattern{n: size}, size)
	}).Addr
	cfg := idleConfig(300 * time.Millisecond)
	f := start(t, strings.Replace(cfg, `plugins = ["log"]`, "plugins = [\"log\"]\nh2c = true", 1))
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(dial(t, f.addr))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("http://" + origin + "/huge")
	resp, err := cc.RoundTrip(&http.Request{Method: "GET", URL: u, Host: origin, Header: http.Header{}})
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	// The client connection's own deadline (dial's, 5 s) ending it does
	// not count.
	start := time.Now()
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"message":"access"`) })
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the exchange ended %v after its answer stalled, under idle_timeout 300ms", took)
	}
}

// TestHTTPUploadEarlyAnswerKeepAlive: an origin that answers a small
// POST as soon as it has the head and reads the body after (as nginx's
// `return` does) keeps the client's connection: a body that came whole
// with its head goes with the head, so the answer never finds it
// unsent. ferry used to send it from a goroutine, and an answer that
// came first ended the connection after a response that had not said
// so: the client's next request met a closed connection (a fifth of
// them, with 16 clients on one core).
func TestHTTPUploadEarlyAnswerKeepAlive(t *testing.T) {
	origin := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			io.Copy(io.Discard, req.Body)
		}
	}).Addr
	f := start(t, idleConfig(5*time.Second))
	p := newProxyClient(t, f.addr)
	p.c.SetDeadline(time.Now().Add(20 * time.Second))
	for i := range 200 {
		if err := uploadAll(p.c, origin, 1, true, 1000); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp, err := http.ReadResponse(p.br, nil)
		if err != nil {
			t.Fatalf("request %d: %v\n%s", i, err, f.logs.String())
		}
		io.Copy(io.Discard, resp.Body)
		if resp.Close {
			t.Fatalf("request %d: the answer closes the connection", i)
		}
	}
}
