package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"

	"ferry/config"
	"ferry/plugins"
	"ferry/test/testkit"
)

// pattern is n bytes of "hello world\n" over and over: a body the hook
// would change if it ever saw it.
type pattern struct{ n, off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	const line = "hello world\n"
	if p.off >= p.n {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n-p.off)]
	for i := range b {
		b[i] = line[(p.off+int64(i))%int64(len(line))]
	}
	p.off += int64(len(b))
	return len(b), nil
}

func patternSum(n int64) [32]byte {
	h := sha256.New()
	io.Copy(h, &pattern{n: n})
	return [32]byte(h.Sum(nil))
}

// bigOrigin serves n bytes of pattern, chunked at /big and with a
// Content-Length at /big-cl, and answers POST /sum with the request
// body's length, sum and framing.
func bigOrigin(t *testing.T, n int64) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big-cl":
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			fallthrough
		case "/big":
			io.CopyBuffer(w, &pattern{n: n}, make([]byte, 64<<10))
		case "/sum":
			s := sha256.New()
			m, _ := io.Copy(s, r.Body)
			fmt.Fprintf(w, "%d %x te=%v", m, s.Sum(nil), r.TransferEncoding)
		}
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// allocated runs fn and returns the bytes the process allocated.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A body over max_buffered_body_bytes streams unchanged, each way,
// with its own framing, and ferry holds no more than the limit of it:
// 64 MiB through a 1 MiB limit.
func TestBodyHookOverLimitStreams(t *testing.T) {
	const size = 64 << 20
	origin := bigOrigin(t, size)
	f, hook := startBodyHook(t, "[limits]\nmax_buffered_body_bytes = \"1MiB\"", "")
	p := newProxyClient(t, f.addr)
	p.c.SetDeadline(time.Now().Add(time.Minute)) // -race is slow
	want := patternSum(size)
	for _, path := range []string{"/big", "/big-cl"} {
		var resp *http.Response
		var sum [32]byte
		var n int64
		alloc := allocated(func() {
			fmt.Fprintf(p.c, "GET http://%s%s HTTP/1.1\r\nHost: %s\r\n\r\n", origin, path, origin)
			var err error
			if resp, err = http.ReadResponse(p.br, nil); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			h := sha256.New()
			n, _ = io.Copy(h, resp.Body)
			sum = [32]byte(h.Sum(nil))
		})
		if n != size || sum != want {
			t.Fatalf("%s: got %d bytes, changed=%v", path, n, sum != want)
		}
		if path == "/big" && len(resp.TransferEncoding) == 0 {
			t.Errorf("%s: the origin's chunked framing was not kept", path)
		}
		if alloc > 16<<20 && !raceEnabled {
			t.Errorf("%s: %d MiB allocated for a 64 MiB body under a 1 MiB limit", path, alloc>>20)
		}
		t.Logf("%s: %.1f MiB allocated", path, float64(alloc)/(1<<20))
		if c := hook.called("down", path); c != 0 {
			t.Errorf("%s: OnHTTPBody ran %d times", path, c)
		}
	}
	// Uploads: 3 MiB, chunked and with a Content-Length.
	const up = 3 << 20
	upSum := patternSum(up)
	for _, chunked := range []bool{true, false} {
		hd := fmt.Sprintf("Content-Length: %d\r\n", up)
		if chunked {
			hd = "Transfer-Encoding: chunked\r\n"
		}
		fmt.Fprintf(p.c, "POST http://%s/sum HTTP/1.1\r\nHost: %s\r\n%s\r\n", origin, origin, hd)
		var w io.Writer = p.c
		cw := (io.WriteCloser)(nil)
		if chunked {
			cw = httputilChunked(p.c)
			w = cw
		}
		go func() {
			io.CopyBuffer(w, &pattern{n: up}, make([]byte, 100<<10))
			if cw != nil {
				cw.Close()
				io.WriteString(p.c, "\r\n")
			}
		}()
		resp, err := http.ReadResponse(p.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		te := "[]"
		if chunked {
			te = "[chunked]"
		}
		if wantB := fmt.Sprintf("%d %x te=%s", up, upSum, te); string(b) != wantB {
			t.Fatalf("upload chunked=%v: origin got %q, want %q", chunked, b, wantB)
		}
	}
	if c := hook.called("up", "/sum"); c != 0 {
		t.Errorf("OnHTTPBody ran %d times for uploads over the limit", c)
	}
}

// httputilChunked writes the chunked coding to w.
func httputilChunked(w io.Writer) io.WriteCloser { return &chunkWriter{w: w} }

type chunkWriter struct{ w io.Writer }

func (c *chunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if _, err := fmt.Fprintf(c.w, "%x\r\n%s\r\n", len(p), p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *chunkWriter) Close() error {
	_, err := io.WriteString(c.w, "0\r\n")
	return err
}

// rawOrigin answers every request with the response in resps for its
// path, written as given; one with "Connection: close" ends the
// connection.
func rawOrigin(t *testing.T, resps map[string]string) string {
	t.Helper()
	return rawOriginFunc(t, func(req *http.Request, _ []byte) string { return resps[req.URL.Path] })
}

// rawOriginFunc is rawOrigin answering what answer returns for a
// request and its body.
func rawOriginFunc(t *testing.T, answer func(*http.Request, []byte) string) string {
	t.Helper()
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(time.Minute))
		br := bufio.NewReader(c)
		for range 100 {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			resp := answer(req, body)
			io.WriteString(c, resp)
			if strings.Contains(resp, "Connection: close") {
				return
			}
		}
	}).Addr
}

// readTestHead reads a response head as it came, through its empty line.
func readTestHead(p *proxyClient) (string, error) {
	var head strings.Builder
	for range 200 {
		line, err := p.br.ReadString('\n')
		head.WriteString(line)
		if err != nil || line == "\r\n" {
			return head.String(), err
		}
	}
	return head.String(), errors.New("head too long")
}

// A body nobody wants, and one a hook saw but kept, reach the client
// byte for byte: chunk sizes, extensions and trailers.
func TestBodyHookByteForByte(t *testing.T) {
	const body = "5;ext=1\r\nworld\r\n3\r\n!!!\r\n0\r\nX-Trailer: t\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
	origin := rawOrigin(t, map[string]string{"/skip/raw": resp, "/raw": resp})
	f, hook := startBodyHook(t, "", "")
	p := newProxyClient(t, f.addr)
	for _, path := range []string{"/skip/raw", "/raw"} {
		fmt.Fprintf(p.c, "GET http://%s%s HTTP/1.1\r\nHost: %s\r\n\r\n", origin, path, origin)
		head, err := readTestHead(p)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		got := make([]byte, len(body))
		if _, err := io.ReadFull(p.br, got); err != nil || string(got) != body {
			t.Fatalf("%s: body %q %v, want %q", path, got, err, body)
		}
		if wantHook := path == "/raw"; strings.Contains(head, "X-Body-Hook") != wantHook {
			t.Errorf("%s: head %q", path, head)
		}
	}
	if hook.called("down", "/raw") != 1 || hook.called("down", "/skip/raw") != 0 {
		t.Errorf("OnHTTPBody calls: /raw %d, /skip/raw %d", hook.called("down", "/raw"), hook.called("down", "/skip/raw"))
	}
}

// gzipBomb is 1 GiB of zeros as concatenated gzip members, about 1 MiB.
func gzipBomb(t *testing.T) []byte {
	t.Helper()
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zw.Write(make([]byte, 16<<20))
	zw.Close()
	return bytes.Repeat(member.Bytes(), 64)
}

// A gzip bomb under the default limit goes to the client unchanged, and
// decoding it stops at the limit: ferry never holds the gigabyte.
func TestBodyHookGzipBomb(t *testing.T) {
	bomb := gzipBomb(t)
	origin := rawOrigin(t, map[string]string{"/bomb": fmt.Sprintf(
		"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", len(bomb), bomb)})
	f, hook := startBodyHook(t, "", "")
	p := newProxyClient(t, f.addr)
	p.c.SetDeadline(time.Now().Add(time.Minute)) // -race is slow
	var b []byte
	alloc := allocated(func() { _, b = p.do("GET", origin, "/bomb", "", "") })
	if !bytes.Equal(b, bomb) {
		t.Fatalf("got %d bytes, want the %d of the bomb unchanged", len(b), len(bomb))
	}
	if c := hook.called("down", "/bomb"); c != 0 {
		t.Errorf("OnHTTPBody ran %d times", c)
	}
	limit := uint64(config.DefaultMaxBufferedBodyBytes)
	t.Logf("%.1f MiB allocated for a %.1f MiB bomb under an %d MiB limit", float64(alloc)/(1<<20), float64(len(bomb))/(1<<20), limit>>20)
	if alloc > 6*limit && !raceEnabled {
		t.Errorf("%d MiB allocated, over 6 times the %d MiB limit", alloc>>20, limit>>20)
	}
}

// hookWhole on its own: the decoded size stops at the limit.
func TestHookWholeBombBounded(t *testing.T) {
	bomb := gzipBomb(t)
	const limit = 8 << 20
	m := &plugins.HTTPMessage{Dir: plugins.Down, Request: &http.Request{URL: &url.URL{Path: "/"}},
		Response: &http.Response{Header: http.Header{"Content-Encoding": {"gzip"}}}}
	b := &bodyHook{name: "b", wants: map[string]int{}, calls: map[string]int{}}
	chain := plugins.NewChain([]plugins.Plugin{b})
	s := &plugins.Session{Log: zerolog.Nop()}
	var out []byte
	var changed bool
	alloc := allocated(func() { out, changed, _ = hookWhole(chain, s, m, chain.WantsHTTPBody(s, m), bomb, limit) })
	if out != nil || changed || b.called("down", "/") != 0 {
		t.Fatalf("got %d bytes changed=%v calls=%d, want nothing", len(out), changed, b.called("down", "/"))
	}
	t.Logf("%.1f MiB allocated", float64(alloc)/(1<<20))
	if alloc > 6*limit && !raceEnabled {
		t.Errorf("%d MiB allocated for an %d MiB limit", alloc>>20, limit>>20)
	}
}

// Absolute-URI requests over HTTP/2 run the body hooks both ways and
// get the plugins' answers.
func TestBodyHookH2(t *testing.T) {
	origin := bodyOrigin(t)
	f, _ := startBodyHook(t, "", "h2c = true")
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(dial(t, f.addr))
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		u, _ := url.Parse("http://" + origin + path)
		req := &http.Request{Method: method, URL: u, Host: origin, Header: http.Header{"Accept-Encoding": {"identity"}}}
		if body != "" {
			req.Body, req.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
		}
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	if resp, b := do("GET", "/chunked", ""); b != "HELLO world" || resp.ContentLength != 11 {
		t.Fatalf("chunked: %d %q length %d", resp.StatusCode, b, resp.ContentLength)
	}
	resp, b := do("GET", "/gzip", "")
	plain, _ := io.ReadAll(must(gzip.NewReader(strings.NewReader(b))))
	if string(plain) != "HELLO world" || resp.ContentLength != int64(len(b)) || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip: %q length %d %v", plain, resp.ContentLength, resp.Header)
	}
	if resp, b := do("POST", "/echo", "say hello"); b != "say HELLO" || resp.Header.Get("X-Got") != "te=[] cl=9" {
		t.Fatalf("upload: %q %q", b, resp.Header.Get("X-Got"))
	}
	for _, tt := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/deny", "", 403, "denied by body\n"},
		{"GET", "/req-answer", "", 451, "not here\n"},
		{"POST", "/echo", "forbidden", 403, "upload denied\n"},
	} {
		if resp, b := do(tt.method, tt.path, tt.body); resp.StatusCode != tt.status || b != tt.want {
			t.Fatalf("%s %s: got %d %q, want %d %q", tt.method, tt.path, resp.StatusCode, b, tt.status, tt.want)
		}
	}
}

// earlyOrigin answers 413 to a request's head and then reads nothing
// more until the test ends.
func earlyOrigin(t *testing.T) string {
	done := make(chan struct{})
	addr := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
		<-done
	}).Addr
	t.Cleanup(func() { close(done) }) // before the target's own, which waits for it
	return addr
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// An origin that answers before it has read a gathered body, and then
// reads no more, does not hold the client: the answer arrives and the
// connection ends, without waiting for the idle timeout.
func TestBodyHookEarlyAnswer(t *testing.T) {
	origin := earlyOrigin(t)
	f, _ := startBodyHook(t, "[limits]\nmax_buffered_body_bytes = \"48MiB\"", "")
	checkEarlyAnswer(t, f.addr, origin)
}

// checkEarlyAnswer uploads 40 MiB through the proxy at addr to an
// earlyOrigin: the 413 must come, saying "Connection: close" (the body
// is still coming), and then the close, promptly.
func checkEarlyAnswer(t *testing.T, addr, origin string) {
	t.Helper()
	p := newProxyClient(t, addr)
	p.c.SetDeadline(time.Now().Add(20 * time.Second))
	const size = 40 << 20 // more than loopback socket buffers hold
	go upload(p.c, origin, size, 1)
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil || resp.StatusCode != 413 {
		t.Fatalf("got %v %v, want 413", resp, err)
	}
	if !resp.Close {
		t.Errorf("the answer does not say the connection closes: %v", resp.Header)
	}
	start := time.Now()
	if _, err := p.br.ReadByte(); err != io.EOF {
		t.Fatalf("after the answer: %v, want the connection closed", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the connection closed after %v", d)
	}
}
