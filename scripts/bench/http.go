package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Plain HTTP mode: cfg.conc keep-alive connections to the proxy, each
// sending GET requests one after the other and reading each response
// whole, for one object size at a time. With -proto http the requests
// are absolute-form (GET http://ORIGIN/PATH HTTP/1.1), as to a forward
// proxy; with -proto reverse they are origin-form (GET /PATH), as to a
// reverse proxy in front of the origin. The origin (-origin, nginx in
// scripts/bench.sh) serves the object of n bytes at /n. With -post N
// each request is a POST whose N-byte body goes with its head, which
// bench.sh's nginx answers with the object as well; bench.sh itself
// runs GETs only, so a POST run is for comparing builds by hand.

// maxHead bounds a response head (status line and fields).
const maxHead = 64 << 10

// response is what readResponse learnt about one response.
type response struct {
	status int
	body   int64 // body bytes read and discarded
	close  bool  // the connection cannot carry another request
}

// readResponse reads one HTTP/1.x response to a GET from br: the head
// (at most maxHead bytes), then the body framed by chunked
// Transfer-Encoding, Content-Length, or the close of the connection,
// which it discards. The body of a close-delimited response is read to
// EOF, up to maxBody bytes.
func readResponse(br *bufio.Reader, maxBody int64) (response, error) {
	var r response
	http10, size, err := readStatusLine(br, &r)
	if err != nil {
		return r, err
	}
	h, err := readFields(br, size, &r)
	if err != nil {
		return r, err
	}
	if http10 && !h.keepAlive {
		r.close = true
	}
	err = readBody(br, maxBody, h, &r)
	return r, err
}

// readStatusLine reads the status line into r.status; it returns
// whether the response is HTTP/1.0 and the line's length.
func readStatusLine(br *bufio.Reader, r *response) (http10 bool, size int, err error) {
	line, err := readLine(br, maxHead)
	if err != nil {
		return false, 0, fmt.Errorf("status line: %w", err)
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return false, 0, fmt.Errorf("bad status line %q", clip(line))
	}
	http10 = line[7] == '0'
	r.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil || r.status < 100 {
		return false, 0, fmt.Errorf("bad status line %q", clip(line))
	}
	return http10, len(line), nil
}

// framing is what the header fields say about the body and the
// connection.
type framing struct {
	length             int64 // Content-Length, -1 if none
	chunked, keepAlive bool
}

// readFields reads the header fields up to the empty line, size bytes
// of the head already read; Connection: close sets r.close.
func readFields(br *bufio.Reader, size int, r *response) (framing, error) {
	f := framing{length: -1}
	for {
		line, err := readLine(br, maxHead-size)
		if err != nil {
			return f, fmt.Errorf("response head: %w", err)
		}
		size += len(line) + 2
		if len(line) == 0 {
			return f, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 {
			return f, fmt.Errorf("bad header line %q", clip(line))
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (f.length >= 0 && n != f.length) {
				return f, fmt.Errorf("bad Content-Length %q", clip(value))
			}
			f.length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			f.chunked = hasToken(value, "chunked")
			if !f.chunked {
				return f, fmt.Errorf("unsupported Transfer-Encoding %q", clip(value))
			}
		case bytes.EqualFold(name, []byte("Connection")), bytes.EqualFold(name, []byte("Proxy-Connection")):
			if hasToken(value, "close") {
				r.close = true
			}
			if hasToken(value, "keep-alive") {
				f.keepAlive = true
			}
		}
	}
}

// readBody discards the body as f frames it, counting it in r.body.
func readBody(br *bufio.Reader, maxBody int64, f framing, r *response) error {
	switch {
	case r.status < 200:
		return fmt.Errorf("unexpected interim response %d", r.status)
	case r.status == 204 || r.status == 304:
		return nil
	case f.chunked:
		var err error
		r.body, err = readChunked(br, maxBody)
		return err
	case f.length >= 0:
		if f.length > maxBody {
			return fmt.Errorf("Content-Length %d over %d", f.length, maxBody)
		}
		n, err := br.Discard(int(f.length))
		r.body = int64(n)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	default:
		r.close = true
		n, err := io.Copy(io.Discard, io.LimitReader(br, maxBody+1))
		r.body = n
		if err == nil && n > maxBody {
			err = fmt.Errorf("close-delimited body over %d bytes", maxBody)
		}
		return err
	}
}

// readChunked discards a chunked body and its trailer section, and
// returns the size of the data.
func readChunked(br *bufio.Reader, maxBody int64) (int64, error) {
	var total int64
	for {
		line, err := readLine(br, 4096)
		if err != nil {
			return total, fmt.Errorf("chunk size: %w", err)
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return total, fmt.Errorf("bad chunk size %q", clip(line))
		}
		if n == 0 {
			break
		}
		if total += n; total > maxBody {
			return total, fmt.Errorf("chunked body over %d bytes", maxBody)
		}
		if _, err := br.Discard(int(n)); err != nil {
			return total, fmt.Errorf("chunk data: %w", noEOF(err))
		}
		crlf, err := readLine(br, 2)
		if err != nil || len(crlf) != 0 {
			return total, errors.New("no CRLF after chunk data")
		}
	}
	for trailers := 0; ; trailers++ {
		line, err := readLine(br, 4096)
		if err != nil {
			return total, fmt.Errorf("trailer: %w", err)
		}
		if len(line) == 0 {
			return total, nil
		}
		if trailers >= 100 {
			return total, errors.New("over 100 trailer fields")
		}
	}
}

// readLine reads a line ended by CRLF (or a bare LF) of at most max
// bytes, and returns it without the line end. The slice is valid until
// the next read from br.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > max+2 {
		return nil, fmt.Errorf("line over %d bytes", max)
	}
	if err != nil {
		return nil, noEOF(err)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > max {
		return nil, fmt.Errorf("line over %d bytes", max)
	}
	return line, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// hasToken says whether a comma-separated field value lists token
// (case-insensitive).
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(token)) {
			return true
		}
	}
	return false
}

func clip(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// httpRequest is the request for the object of size bytes: a GET, or
// with post > 0 a POST whose body of post bytes follows its head in the
// same write, as curl and most clients send a small body.
func httpRequest(proto, origin string, size, post int64) []byte {
	path := "/" + strconv.FormatInt(size, 10)
	target := path
	if proto == "http" {
		target = "http://" + origin + path
	}
	const fields = " HTTP/1.1\r\nHost: %s\r\nUser-Agent: ferry-bench\r\nAccept: */*\r\n"
	if post == 0 {
		return []byte("GET " + target + fmt.Sprintf(fields, origin) + "\r\n")
	}
	head := "POST " + target + fmt.Sprintf(fields, origin) +
		"Content-Type: application/json\r\nContent-Length: " + strconv.FormatInt(post, 10) + "\r\n\r\n"
	return append([]byte(head), bytes.Repeat([]byte("x"), int(post))...)
}

// httpConn is one client connection to the proxy.
type httpConn struct {
	c      net.Conn
	br     *bufio.Reader
	served int // responses read on it
}

// errStale is a reused connection that the proxy had closed before the
// request went out (no byte of a response came back): clients open a
// new one and send the request again.
var errStale = errors.New("connection closed by the proxy before the response")

// do sends req and reads the response, which must be a 200 with a body
// of want bytes. It reports whether the connection can carry another
// request.
func (h *httpConn) do(req []byte, want int64) (reuse bool, err error) {
	if _, err := h.c.Write(req); err != nil {
		if h.served > 0 {
			return false, errStale
		}
		return false, fmt.Errorf("write request: %w", err)
	}
	if _, err := h.br.Peek(1); err != nil && h.served > 0 && !isTimeout(err) {
		return false, errStale
	}
	r, err := readResponse(h.br, want+1<<20)
	if err != nil {
		return false, err
	}
	h.served++
	if r.status != 200 {
		return !r.close, fmt.Errorf("status %d", r.status)
	}
	if r.body != want {
		return false, fmt.Errorf("body of %d bytes, want %d", r.body, want)
	}
	return !r.close, nil
}

// httpClient is one of the load's connections: it opens a connection
// when it has none, and opens a new one when the proxy closed the old
// one (said so in the response, or closed it while idle).
type httpClient struct {
	proxy  string
	dialTO time.Duration
	req    []byte
	size   int64
	h      *httpConn
	dials  int64 // connections opened
}

func (c *httpClient) close() {
	if c.h != nil {
		c.h.c.Close()
		c.h = nil
	}
}

// get runs one request with deadline, on a new connection when the one
// it had turns out to be closed.
func (c *httpClient) get(deadline time.Time) error {
	for try := 0; ; try++ {
		if c.h == nil {
			nc, err := net.DialTimeout("tcp", c.proxy, c.dialTO)
			if err != nil {
				return err
			}
			c.dials++
			c.h = &httpConn{c: nc, br: bufio.NewReaderSize(nc, 64<<10)}
		}
		c.h.c.SetDeadline(deadline)
		reuse, err := c.h.do(c.req, c.size)
		if err == errStale && try == 0 {
			c.close()
			continue
		}
		if err != nil || !reuse {
			c.close()
		}
		return err
	}
}

// httpLoad measures one object size: cfg.conc connections, each one
// request at a time, for cfg.duration or cfg.count requests in all,
// whichever comes first, after cfg.warmup requests spread over the
// connections. A connection the proxy closes (or that fails) is opened
// again; the reopenings are counted.
func (b *bench) httpLoad(size int64) *Result {
	r := &Result{Concurrency: b.cfg.conc, ObjectBytes: size, PostBytes: b.cfg.post}
	req := httpRequest(b.cfg.proto, b.cfg.origin, size, b.cfg.post)
	clients := make([]*httpClient, b.cfg.conc)
	for i := range clients {
		clients[i] = &httpClient{proxy: b.cfg.proxy, dialTO: b.cfg.dialTO, req: req, size: size}
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	// Open every connection and warm it (the proxy's upstream
	// connections, its buffers) before measuring.
	warm := max(1, b.cfg.warmup/b.cfg.conc)
	warmEnd := time.Now().Add(b.cfg.timeout)
	for _, c := range clients {
		for range warm {
			if err := c.get(warmEnd); err != nil {
				r.fail(fmt.Errorf("warm-up: %w", err))
				return r
			}
		}
	}
	var dialsBefore int64
	for _, c := range clients {
		dialsBefore += c.dials
	}

	time.Sleep(b.cfg.settle)
	m := b.start()
	lr := b.drive(m, len(clients), func(w int) func(time.Time) error {
		c := clients[w]
		return func(deadline time.Time) error { return c.get(deadline.Add(b.cfg.dialTO)) }
	})
	b.stop(m, lr.elapsed, r)
	b.requestFigures(r, lr, size)
	for _, c := range clients {
		r.Reopened += c.dials
	}
	r.Reopened -= dialsBefore
	return r
}

// requestFigures fills r from a request load of objects of size bytes
// (http and mitm modes), after b.stop: counts, first error, latency,
// rates and the proxy's CPU per request.
func (b *bench) requestFigures(r *Result, lr driven, size int64) {
	r.Requests, r.Errors = lr.done, lr.errs
	r.Bytes = r.Requests * size
	if lr.firstErr != nil {
		r.FirstError = lr.firstErr.Error()
	}
	r.ReqP50Us, r.ReqP99Us = percentile(lr.lats, 0.5), percentile(lr.lats, 0.99)
	if r.Seconds > 0 {
		r.ReqsPerSec = float64(r.Requests) / r.Seconds
		r.MBps = float64(r.Bytes) / 1e6 / r.Seconds
	}
	if r.Requests > 0 && b.cfg.pid > 0 {
		r.CPUUsPerReq = r.CPUSec * 1e6 / float64(r.Requests)
	}
}
