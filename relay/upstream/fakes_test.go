package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ferry/plugins"
	"ferry/proxyproto"
	"ferry/test/testkit"
)

// Fake servers the dialers are tested against, and helpers for the
// client side.

// fakeServer accepts on 127.0.0.1 and runs handle on every connection,
// with the connection's 1-based accept number. Cleanup closes the listener
// and every connection it tracks, and waits for the handlers.
type fakeServer struct {
	ln      net.Listener
	handle  func(s *fakeServer, c net.Conn, seq int32)
	accepts atomic.Int32

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startFake(t *testing.T, handle func(s *fakeServer, c net.Conn, seq int32)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, handle: handle, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *fakeServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *fakeServer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

func (s *fakeServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		seq := s.accepts.Add(1)
		if !s.track(c) {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.handle(s, c, seq)
		}()
	}
}

func (s *fakeServer) close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// relayTo pipes c (whose unread bytes are in r) and up both ways until
// either side ends.
func (s *fakeServer) relayTo(c net.Conn, r io.Reader, up net.Conn) {
	if !s.track(up) {
		return
	}
	defer s.untrack(up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(up, r)
		c.Close()
		up.Close()
	}()
	io.Copy(c, up)
	c.Close()
	up.Close()
	<-done
}

// closedAddr is a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string { return testkit.ClosedAddr(t) }

// silentServer accepts and never answers.
func silentServer(t *testing.T) *fakeServer {
	return startFake(t, func(_ *fakeServer, c net.Conn, _ int32) { io.Copy(io.Discard, c) })
}

// hangupServer accepts and closes at once.
func hangupServer(t *testing.T) *fakeServer {
	return startFake(t, func(*fakeServer, net.Conn, int32) {})
}

// headerLog records the PROXY headers a fake proxy read.
type headerLog struct {
	mu   sync.Mutex
	hdrs []*proxyproto.Header
	errs []error
}

func (l *headerLog) add(h *proxyproto.Header, err error) {
	l.mu.Lock()
	l.hdrs = append(l.hdrs, h)
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *headerLog) get(t *testing.T) (*proxyproto.Header, error) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.hdrs) != 1 {
		t.Fatalf("proxy read %d PROXY headers, want 1", len(l.hdrs))
	}
	return l.hdrs[0], l.errs[0]
}

// socksFake is a minimal SOCKS5 server (RFC 1928, RFC 1929).
type socksFake struct {
	// user, when set, requires username/password authentication.
	user, pass string
	// reply is the REP code answered to the request.
	reply byte
	// relay: on success connect to the requested target and pipe to it
	// (a failed connect answers 0x05).
	relay bool
	// silent: never answer.
	silent bool
	// greeting is sent right after a success reply, before echoing.
	greeting string
	// proxyHeader: read a PROXY header (or its absence) first.
	proxyHeader bool

	*socksState
}

type socksState struct {
	*fakeServer
	headers headerLog

	mu   sync.Mutex
	reqs []socksReq
}

type socksReq struct {
	atyp byte
	host string
	port int
}

func startSOCKS(t *testing.T, f *socksFake) *socksFake {
	t.Helper()
	f.socksState = &socksState{}
	f.fakeServer = startFake(t, f.handle)
	return f
}

func (f *socksFake) requests() []socksReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]socksReq(nil), f.reqs...)
}

func (f *socksFake) handle(s *fakeServer, c net.Conn, _ int32) {
	br := bufio.NewReader(c)
	if f.proxyHeader {
		h, err := proxyproto.Read(br, proxyproto.ReadOptions{})
		f.headers.add(h, err)
		if err != nil && !errors.Is(err, proxyproto.ErrNoHeader) {
			return
		}
	}
	if f.silent {
		io.Copy(io.Discard, br)
		return
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(br, b); err != nil || b[0] != 5 {
		return
	}
	methods := make([]byte, b[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return
	}
	want := byte(0x00)
	if f.user != "" {
		want = 0x02
	}
	if !bytes.Contains(methods, []byte{want}) {
		c.Write([]byte{5, 0xff})
		return
	}
	c.Write([]byte{5, want})
	if want == 0x02 {
		if _, err := io.ReadFull(br, b); err != nil || b[0] != 1 {
			return
		}
		user := make([]byte, b[1])
		if _, err := io.ReadFull(br, user); err != nil {
			return
		}
		if _, err := io.ReadFull(br, b[:1]); err != nil {
			return
		}
		pass := make([]byte, b[0])
		if _, err := io.ReadFull(br, pass); err != nil {
			return
		}
		if string(user) != f.user || string(pass) != f.pass {
			c.Write([]byte{1, 1})
			return
		}
		c.Write([]byte{1, 0})
	}
	req := make([]byte, 4)
	if _, err := io.ReadFull(br, req); err != nil || req[0] != 5 || req[1] != 1 {
		return
	}
	var host string
	switch req[3] {
	case 1, 4:
		ip := make([]byte, 4)
		if req[3] == 4 {
			ip = make([]byte, 16)
		}
		if _, err := io.ReadFull(br, ip); err != nil {
			return
		}
		a, _ := netip.AddrFromSlice(ip)
		host = a.String()
	case 3:
		if _, err := io.ReadFull(br, b[:1]); err != nil {
			return
		}
		name := make([]byte, b[0])
		if _, err := io.ReadFull(br, name); err != nil {
			return
		}
		host = string(name)
	default:
		return
	}
	if _, err := io.ReadFull(br, b); err != nil {
		return
	}
	port := int(binary.BigEndian.Uint16(b))
	f.mu.Lock()
	f.reqs = append(f.reqs, socksReq{atyp: req[3], host: host, port: port})
	f.mu.Unlock()

	rep := f.reply
	var up net.Conn
	if rep == 0 && f.relay {
		var err error
		up, err = net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
		if err != nil {
			rep = 0x05
		}
	}
	if _, err := c.Write([]byte{5, rep, 0, 1, 127, 0, 0, 1, 0x12, 0x34}); err != nil || rep != 0 {
		if up != nil {
			up.Close()
		}
		return
	}
	if up != nil {
		s.relayTo(c, br, up)
		return
	}
	io.WriteString(c, f.greeting)
	io.Copy(c, br)
}

// httpFake is a minimal HTTP CONNECT proxy.
type httpFake struct {
	// status answered to CONNECT; 0 means 200.
	status int
	// user, when set, requires Proxy-Authorization Basic user:pass (407
	// otherwise).
	user, pass string
	// relay: on success connect to the requested target and pipe to it
	// (a failed connect answers 502).
	relay bool
	// greeting is written in the same write as a 2xx head, then the
	// proxy echoes.
	greeting string
	// splitHead writes the head one byte per write (the last head byte
	// together with the greeting).
	splitHead bool
	silent    bool
	// oversize answers a head longer than maxResponseHead.
	oversize bool
	// tls, when set, makes it an HTTPS proxy.
	tls *tls.Config
	// proxyHeader: read a PROXY header (or its absence) first.
	proxyHeader bool

	*httpState
}

type httpState struct {
	*fakeServer
	headers headerLog

	mu   sync.Mutex
	reqs []httpReq
}

type httpReq struct {
	method, uri, host string
	auth              []string // Proxy-Authorization values
}

func startHTTP(t *testing.T, f *httpFake) *httpFake {
	t.Helper()
	f.httpState = &httpState{}
	f.fakeServer = startFake(t, f.handle)
	return f
}

func (f *httpFake) requests() []httpReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]httpReq(nil), f.reqs...)
}

func (f *httpFake) handle(s *fakeServer, c net.Conn, _ int32) {
	var conn net.Conn = c
	var br *bufio.Reader
	if f.proxyHeader {
		br = bufio.NewReader(c)
		h, err := proxyproto.Read(br, proxyproto.ReadOptions{})
		f.headers.add(h, err)
		if err != nil && !errors.Is(err, proxyproto.ErrNoHeader) {
			return
		}
	}
	if f.silent {
		io.Copy(io.Discard, c)
		return
	}
	if f.tls != nil {
		tc := tls.Server(c, f.tls)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
		conn = tc
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, httpReq{method: req.Method, uri: req.RequestURI, host: req.Host,
		auth: req.Header.Values("Proxy-Authorization")})
	f.mu.Unlock()

	status := f.status
	if status == 0 {
		status = http.StatusOK
	}
	if f.user != "" && req.Header.Get("Proxy-Authorization") != basic(f.user, f.pass) {
		status = http.StatusProxyAuthRequired
	}
	var up net.Conn
	if status/100 == 2 && f.relay {
		up, err = net.DialTimeout("tcp", req.RequestURI, 5*time.Second)
		if err != nil {
			status = http.StatusBadGateway
		}
	}
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	if status == http.StatusProxyAuthRequired {
		head += "Proxy-Authenticate: Basic realm=\"test\"\r\n"
	}
	if f.oversize {
		for len(head) < maxResponseHead+4096 {
			head += "X-Pad: " + strings.Repeat("a", 100) + "\r\n"
		}
	}
	if status/100 != 2 {
		head += "Content-Length: 0\r\n"
	}
	head += "\r\n"
	out := []byte(head + f.greeting)
	if f.splitHead {
		for i := 0; i < len(head)-1; i++ {
			if _, err := conn.Write(out[i : i+1]); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
		out = out[len(head)-1:]
	}
	if _, err := conn.Write(out); err != nil || status/100 != 2 {
		if up != nil {
			up.Close()
		}
		if f.oversize {
			io.Copy(io.Discard, br)
		}
		return
	}
	if up != nil {
		s.relayTo(conn, br, up)
		return
	}
	io.Copy(conn, br)
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// testPKI makes a CA and a server certificate for "proxy.test" and
// 127.0.0.1 signed by it.
func testPKI(t *testing.T) (server *tls.Config, roots *x509.CertPool) {
	p := testkit.NewPKI(t, "proxy.test")
	return p.ServerTLS(), p.Roots()
}

func dialCtx(t *testing.T, timeout time.Duration) (context.Context, *DialInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	info := &DialInfo{}
	return WithDialInfo(ctx, info), info
}

// upstreamErr asserts err is an *Error at upstream, stage and
// code, whose text names the upstream.
func upstreamErr(t *testing.T, err error, upstream string, stage Stage, code plugins.Code) *Error {
	t.Helper()
	var ue *Error
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if ue.Upstream != upstream || ue.Stage != stage || ue.Code != code {
		t.Fatalf("got upstream %q stage %q code %v, want %q %q %v (error: %v)",
			ue.Upstream, ue.Stage, ue.Code, upstream, stage, code, err)
	}
	if DialCode(err) != code {
		t.Fatalf("DialCode = %v, want %v", DialCode(err), code)
	}
	if !strings.Contains(err.Error(), "upstream "+upstream) {
		t.Fatalf("error %q does not name upstream %s", err, upstream)
	}
	return ue
}

// readN reads exactly n bytes with a deadline.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v (got %q)", n, err, b)
	}
	return string(b)
}

// echoCheck writes through c and expects the bytes back.
func echoCheck(t *testing.T, c net.Conn) { testkit.EchoCheck(t, c) }

func mustTCPConn(t *testing.T, c net.Conn) {
	t.Helper()
	if _, ok := c.(*net.TCPConn); !ok {
		t.Fatalf("conn is %T, want *net.TCPConn (zero-copy path)", c)
	}
}
