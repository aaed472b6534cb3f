package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/proxy"

	"ferry/plugins"
	"ferry/proxyproto"
)

// Every relay test must leave no goroutine behind: the fake proxies below
// close their connections and wait for their handlers in t.Cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ---------------------------------------------------------------------
// Fake servers.

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
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// silentServer accepts and never answers.
func silentServer(t *testing.T) *fakeServer {
	return startFake(t, func(_ *fakeServer, c net.Conn, _ int32) { io.Copy(io.Discard, c) })
}

// hangupServer accepts and closes at once.
func hangupServer(t *testing.T) *fakeServer {
	return startFake(t, func(*fakeServer, net.Conn, int32) {})
}

// echoTarget sends greeting, then echoes.
func echoTarget(t *testing.T, greeting string) *fakeServer {
	return startFake(t, func(_ *fakeServer, c net.Conn, _ int32) {
		io.WriteString(c, greeting)
		io.Copy(c, c)
	})
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
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ferry relay test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "proxy.test"},
		DNSNames:     []string{"proxy.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}}, roots
}

// ---------------------------------------------------------------------
// Helpers for the client side.

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
func echoCheck(t *testing.T, c net.Conn) {
	t.Helper()
	const msg = "ping through the tunnel"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, c, len(msg)); got != msg {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

func mustTCPConn(t *testing.T, c net.Conn) {
	t.Helper()
	if _, ok := c.(*net.TCPConn); !ok {
		t.Fatalf("conn is %T, want *net.TCPConn (zero-copy path)", c)
	}
}

// ---------------------------------------------------------------------
// Error, DialInfo.

func TestUpstreamErrorText(t *testing.T) {
	cause := errors.New("cause")
	tests := []struct {
		stage Stage
		want  string
	}{
		{StageConnect, "upstream up1: connect: cause"},
		{StageHandshake, "upstream up1: handshake: cause"},
		{StageAuth, "upstream up1: auth failed: cause"},
		{StageTarget, "upstream up1: cause"},
		{StageDown, "upstream up1: down: cause"},
	}
	for _, tt := range tests {
		t.Run(string(tt.stage), func(t *testing.T) {
			err := &Error{Upstream: "up1", Stage: tt.stage, Code: plugins.CodeTimeout, Err: cause}
			if err.Error() != tt.want {
				t.Fatalf("Error() = %q, want %q", err.Error(), tt.want)
			}
			if !errors.Is(err, cause) {
				t.Fatal("Unwrap does not reach the cause")
			}
			if DialCode(fmt.Errorf("wrapped: %w", err)) != plugins.CodeTimeout {
				t.Fatal("DialCode does not take the Error's code")
			}
			if got, want := memberFailed(err), tt.stage != StageTarget; got != want {
				t.Fatalf("memberFailed = %v, want %v", got, want)
			}
		})
	}
	if memberFailed(errors.New("plain")) {
		t.Fatal("memberFailed(plain error) = true")
	}
}

func TestForwardError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name      string
		err       error
		upstream  string
		stage     Stage
		code      plugins.Code
		sameError bool
	}{
		{"plain dial error", refused, "second", StageConnect, plugins.CodeConnRefused, false},
		{"earlier hop down stays to blame",
			&Error{Upstream: "first", Stage: StageConnect, Code: plugins.CodeConnRefused, Err: refused},
			"first", StageConnect, plugins.CodeConnRefused, true},
		{"earlier hop auth stays to blame",
			&Error{Upstream: "first", Stage: StageAuth, Code: plugins.CodeGeneral, Err: errors.New("bad")},
			"first", StageAuth, plugins.CodeGeneral, true},
		{"earlier hop cannot reach this one",
			&Error{Upstream: "first", Stage: StageTarget, Code: plugins.CodeHostUnreachable, Err: errors.New("unreachable")},
			"second", StageConnect, plugins.CodeHostUnreachable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := forwardError("second", tt.err)
			upstreamErr(t, err, tt.upstream, tt.stage, tt.code)
			if tt.sameError && err != tt.err {
				t.Fatalf("forwardError rewrapped %v", tt.err)
			}
			if !errors.Is(err, tt.err) {
				t.Fatal("the cause is lost")
			}
		})
	}
}

func TestHandshakeErrorContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := handshakeError("up", ctx, errors.New("read: use of closed connection"))
	ue := upstreamErr(t, err, "up", StageHandshake, plugins.CodeGeneral)
	if !errors.Is(ue, context.Canceled) || !strings.Contains(err.Error(), "use of closed connection") {
		t.Fatalf("cancellation not reported: %v", err)
	}

	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err = handshakeError("up", ctx, errors.New("read: i/o timeout"))
	upstreamErr(t, err, "up", StageHandshake, plugins.CodeTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline not reported: %v", err)
	}
	// Already the context's error: not repeated.
	err = handshakeError("up", ctx, fmt.Errorf("x: %w", context.DeadlineExceeded))
	if strings.Count(err.Error(), "deadline exceeded") != 1 {
		t.Fatalf("deadline repeated: %v", err)
	}
}

func TestDialInfoPathAndRelease(t *testing.T) {
	info := &DialInfo{}
	if info.Path() != "" {
		t.Fatalf("empty chain = %q", info.Path())
	}
	info.addHop("a")
	m := info.mark()
	info.addHop("b")
	info.addHop("c")
	if got := info.Path(); got != "a>b>c" {
		t.Fatalf("Path = %q", got)
	}
	info.rewind(m)
	if got := info.Path(); got != "a" {
		t.Fatalf("Chain after rewind = %q", got)
	}
	var calls []int
	info.onRelease(func() { calls = append(calls, 1) })
	info.onRelease(func() { calls = append(calls, 2) })
	info.Release()
	info.Release()
	if len(calls) != 2 || calls[0] != 1 || calls[1] != 2 {
		t.Fatalf("release calls = %v, want [1 2] once", calls)
	}

	// A dial without DialInfo: every method is a no-op.
	var none *DialInfo
	none.addHop("x")
	none.rewind(none.mark())
	if none.onRelease(func() {}) {
		t.Fatal("onRelease on nil DialInfo reported it will run")
	}
	if dialInfoFrom(context.Background()) != nil {
		t.Fatal("dialInfoFrom(Background) != nil")
	}
	if dialInfoFrom(WithDialInfo(context.Background(), info)) != info {
		t.Fatal("WithDialInfo did not carry info")
	}
}

// ---------------------------------------------------------------------
// SOCKS5.

func TestSOCKS5Targets(t *testing.T) {
	tests := []struct {
		name   string
		target string
		want   socksReq
	}{
		{"name sent unresolved", "never-resolves.invalid:443", socksReq{atyp: 3, host: "never-resolves.invalid", port: 443}},
		{"IPv4 literal", "192.0.2.7:8080", socksReq{atyp: 1, host: "192.0.2.7", port: 8080}},
		{"IPv6 literal", "[2001:db8::1]:80", socksReq{atyp: 4, host: "2001:db8::1", port: 80}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSOCKS(t, &socksFake{greeting: "220 hello\r\n"})
			d, err := SOCKS5("socks-up", srv.addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", tt.target)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mustTCPConn(t, c)
			if got := readN(t, c, len("220 hello\r\n")); got != "220 hello\r\n" {
				t.Fatalf("greeting %q", got)
			}
			echoCheck(t, c)
			if reqs := srv.requests(); len(reqs) != 1 || reqs[0] != tt.want {
				t.Fatalf("proxy got %+v, want [%+v]", reqs, tt.want)
			}
			if info.Path() != "socks-up" {
				t.Fatalf("Path = %q", info.Path())
			}
		})
	}
}

func TestSOCKS5Auth(t *testing.T) {
	tests := []struct {
		name             string
		srvUser, srvPass string
		auth             *proxy.Auth
		ok               bool
	}{
		{"accepted", "alice", "s3cret", &proxy.Auth{User: "alice", Password: "s3cret"}, true},
		{"wrong password", "alice", "s3cret", &proxy.Auth{User: "alice", Password: "nope"}, false},
		{"wrong user", "alice", "s3cret", &proxy.Auth{User: "bob", Password: "s3cret"}, false},
		{"no credentials but required", "alice", "s3cret", nil, false},
		{"credentials not needed", "", "", &proxy.Auth{User: "alice", Password: "s3cret"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSOCKS(t, &socksFake{user: tt.srvUser, pass: tt.srvPass})
			d, err := SOCKS5("socks-auth", srv.addr(), tt.auth, Direct())
			if err != nil {
				t.Fatal(err)
			}
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "example.test:80")
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				mustTCPConn(t, c)
				echoCheck(t, c)
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "socks-auth", StageAuth, plugins.CodeGeneral)
			if strings.Contains(err.Error(), "socks connect") {
				t.Fatalf("error keeps x/net's OpError text: %v", err)
			}
			if tt.auth != nil && strings.Contains(err.Error(), tt.auth.Password) {
				t.Fatalf("error leaks the password: %v", err)
			}
			if info.Path() != "" {
				t.Fatalf("failed dial added hop: %q", info.Path())
			}
			if len(srv.requests()) != 0 {
				t.Fatal("request sent after failed auth")
			}
		})
	}
}

func TestSOCKS5Replies(t *testing.T) {
	if len(socksReplies) != 8 {
		t.Fatalf("socksReplies has %d entries, want the 8 RFC 1928 failure codes", len(socksReplies))
	}
	for i, r := range socksReplies {
		rep := byte(i + 1)
		t.Run(fmt.Sprintf("0x%02x %s", rep, r.text), func(t *testing.T) {
			srv := startSOCKS(t, &socksFake{reply: rep})
			d, err := SOCKS5("socks-rep", srv.addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "example.test:80")
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "socks-rep", StageTarget, r.code)
			if !strings.Contains(err.Error(), r.text) {
				t.Fatalf("error %q lacks %q", err, r.text)
			}
			if memberFailed(err) {
				t.Fatal("a target failure counts as the member failing")
			}
			if info.Path() != "" {
				t.Fatalf("failed dial added hop: %q", info.Path())
			}
		})
	}
	// The codes the RFC gives (and x/net names) map as ferry's clients
	// expect.
	want := map[byte]plugins.Code{1: plugins.CodeGeneral, 2: plugins.CodeForbidden, 3: plugins.CodeNetUnreachable,
		4: plugins.CodeHostUnreachable, 5: plugins.CodeConnRefused, 6: plugins.CodeTimeout, 7: plugins.CodeGeneral, 8: plugins.CodeGeneral}
	for i, r := range socksReplies {
		if want[byte(i+1)] != r.code {
			t.Errorf("reply 0x%02x (%s) maps to %v, want %v", i+1, r.text, r.code, want[byte(i+1)])
		}
	}
}

func TestSOCKS5UnassignedReply(t *testing.T) {
	srv := startSOCKS(t, &socksFake{reply: 0x09})
	d, err := SOCKS5("socks-odd", srv.addr(), nil, Direct())
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := dialCtx(t, 10*time.Second)
	c, err := d.DialContext(ctx, "tcp", "example.test:80")
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	var ue *Error
	if !errors.As(err, &ue) || ue.Upstream != "socks-odd" {
		t.Fatalf("error %v does not blame socks-odd", err)
	}
}

func TestSOCKS5Failures(t *testing.T) {
	tests := []struct {
		name    string
		addr    func(t *testing.T) string
		timeout time.Duration
		stage   Stage
		code    plugins.Code
	}{
		{"proxy down", closedAddr, 10 * time.Second, StageConnect, plugins.CodeConnRefused},
		{"proxy silent", func(t *testing.T) string { return silentServer(t).addr() }, 500 * time.Millisecond, StageHandshake, plugins.CodeTimeout},
		{"proxy hangs up", func(t *testing.T) string { return hangupServer(t).addr() }, 10 * time.Second, StageHandshake, plugins.CodeGeneral},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := SOCKS5("socks-x", tt.addr(t), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			ctx, info := dialCtx(t, tt.timeout)
			start := time.Now()
			c, err := d.DialContext(ctx, "tcp", "example.test:80")
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "socks-x", tt.stage, tt.code)
			if el := time.Since(start); el > tt.timeout+5*time.Second {
				t.Fatalf("dial took %v, deadline was %v", el, tt.timeout)
			}
			if info.Path() != "" {
				t.Fatalf("failed dial added hop: %q", info.Path())
			}
		})
	}
}

// ---------------------------------------------------------------------
// HTTP CONNECT.

func TestHTTPConnectTunnel(t *testing.T) {
	const greeting = "SSH-2.0-OpenSSH_9.6\r\n"
	tests := []struct {
		name string
		f    httpFake
	}{
		{"plain", httpFake{}},
		{"greeting in the head's write", httpFake{greeting: greeting}},
		{"head split in many writes", httpFake{splitHead: true}},
		{"head split, greeting with its last byte", httpFake{splitHead: true, greeting: greeting}},
		{"201 is success too", httpFake{status: 201, greeting: greeting}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			srv := startHTTP(t, &f)
			d := HTTPConnect("http-up", srv.addr(), "", "", nil, Direct())
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "never-resolves.invalid:22")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mustTCPConn(t, c)
			if f.greeting != "" {
				if got := readN(t, c, len(f.greeting)); got != f.greeting {
					t.Fatalf("greeting %q, want %q", got, f.greeting)
				}
			}
			echoCheck(t, c)
			reqs := srv.requests()
			if len(reqs) != 1 || reqs[0].method != "CONNECT" || reqs[0].uri != "never-resolves.invalid:22" ||
				reqs[0].host != "never-resolves.invalid:22" {
				t.Fatalf("proxy got %+v", reqs)
			}
			if info.Path() != "http-up" {
				t.Fatalf("Path = %q", info.Path())
			}
		})
	}
}

func TestHTTPConnectAuthHeader(t *testing.T) {
	tests := []struct {
		name, user, pass string
		want             []string
	}{
		{"user and password", "alice", "s3cret", []string{basic("alice", "s3cret")}},
		{"user only", "alice", "", []string{basic("alice", "")}},
		{"no user", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startHTTP(t, &httpFake{})
			d := HTTPConnect("http-auth", srv.addr(), tt.user, tt.pass, nil, Direct())
			ctx, _ := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "example.test:443")
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			if fmt.Sprint(reqs[0].auth) != fmt.Sprint(tt.want) {
				t.Fatalf("Proxy-Authorization %q, want %q", reqs[0].auth, tt.want)
			}
		})
	}
}

func TestHTTPConnectStatus(t *testing.T) {
	tests := []struct {
		name       string
		f          httpFake
		user, pass string
		stage      Stage
		code       plugins.Code
		text       string
	}{
		{"407 without credentials", httpFake{user: "alice", pass: "s3cret"}, "", "", StageAuth, plugins.CodeGeneral, "put user:password"},
		{"407 with wrong credentials", httpFake{user: "alice", pass: "s3cret"}, "alice", "nope", StageAuth, plugins.CodeGeneral, "407"},
		{"403", httpFake{status: 403}, "", "", StageTarget, plugins.CodeForbidden, "403 Forbidden"},
		{"504", httpFake{status: 504}, "", "", StageTarget, plugins.CodeTimeout, "504"},
		{"502", httpFake{status: 502}, "", "", StageTarget, plugins.CodeGeneral, "502"},
		{"503", httpFake{status: 503}, "", "", StageTarget, plugins.CodeGeneral, "503"},
		{"404", httpFake{status: 404}, "", "", StageTarget, plugins.CodeGeneral, "404"},
		{"500 split head", httpFake{status: 500, splitHead: true}, "", "", StageTarget, plugins.CodeGeneral, "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			srv := startHTTP(t, &f)
			d := HTTPConnect("http-st", srv.addr(), tt.user, tt.pass, nil, Direct())
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "example.test:443")
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "http-st", tt.stage, tt.code)
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q lacks %q", err, tt.text)
			}
			if tt.pass != "" && strings.Contains(err.Error(), tt.pass) {
				t.Fatalf("error leaks the password: %v", err)
			}
			if info.Path() != "" {
				t.Fatalf("failed dial added hop: %q", info.Path())
			}
		})
	}
}

func TestHTTPConnectFailures(t *testing.T) {
	garbage := func(t *testing.T) string {
		return startFake(t, func(_ *fakeServer, c net.Conn, _ int32) {
			bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "SSH-2.0-not-a-proxy\r\n\r\n")
			io.Copy(io.Discard, c)
		}).addr()
	}
	tests := []struct {
		name    string
		addr    func(t *testing.T) string
		timeout time.Duration
		stage   Stage
		code    plugins.Code
		text    string
	}{
		{"proxy down", closedAddr, 10 * time.Second, StageConnect, plugins.CodeConnRefused, "refused"},
		{"proxy silent", func(t *testing.T) string { return silentServer(t).addr() }, 500 * time.Millisecond, StageHandshake, plugins.CodeTimeout, "CONNECT"},
		{"proxy hangs up", func(t *testing.T) string { return hangupServer(t).addr() }, 10 * time.Second, StageHandshake, plugins.CodeGeneral, "CONNECT"},
		{"not HTTP", garbage, 10 * time.Second, StageHandshake, plugins.CodeGeneral, "malformed HTTP"},
		{"oversized head", func(t *testing.T) string { return startHTTP(t, &httpFake{oversize: true}).addr() },
			10 * time.Second, StageHandshake, plugins.CodeGeneral, "response head over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := HTTPConnect("http-x", tt.addr(t), "", "", nil, Direct())
			ctx, info := dialCtx(t, tt.timeout)
			start := time.Now()
			c, err := d.DialContext(ctx, "tcp", "example.test:443")
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "http-x", tt.stage, tt.code)
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q lacks %q", err, tt.text)
			}
			if el := time.Since(start); el > tt.timeout+5*time.Second {
				t.Fatalf("dial took %v, deadline was %v", el, tt.timeout)
			}
			if info.Path() != "" {
				t.Fatalf("failed dial added hop: %q", info.Path())
			}
		})
	}
}

func TestHTTPConnectCanceled(t *testing.T) {
	srv := silentServer(t)
	d := HTTPConnect("http-c", srv.addr(), "", "", nil, Direct())
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	c, err := d.DialContext(ctx, "tcp", "example.test:443")
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	upstreamErr(t, err, "http-c", StageHandshake, plugins.CodeGeneral)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v does not say the dial was canceled", err)
	}
}

func TestHTTPConnectNetwork(t *testing.T) {
	srv := startHTTP(t, &httpFake{})
	d := HTTPConnect("http-n", srv.addr(), "", "", nil, Direct())
	for _, network := range []string{"udp", "unix"} {
		c, err := d.DialContext(context.Background(), network, "example.test:53")
		if err == nil {
			c.Close()
			t.Fatalf("%s dial succeeded", network)
		}
		if !strings.Contains(err.Error(), "http-n") {
			t.Fatalf("error %q does not name the upstream", err)
		}
	}
	if n := srv.accepts.Load(); n != 0 {
		t.Fatalf("proxy dialed %d times for non-tcp networks", n)
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		c, err := d.DialContext(context.Background(), network, "example.test:443")
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		c.Close()
	}
}

// ---------------------------------------------------------------------
// HTTPS CONNECT.

func TestHTTPSConnect(t *testing.T) {
	serverTLS, roots := testPKI(t)
	const greeting = "220 smtp.example ESMTP\r\n"
	tests := []struct {
		name     string
		f        httpFake
		client   *tls.Config
		wantType string // %T of the conn, "" for an error
		stage    Stage
		code     plugins.Code
	}{
		{"trusted", httpFake{}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "*tls.Conn", "", 0},
		{"trusted, greeting after head", httpFake{greeting: greeting}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "*netx.PrefixConn", "", 0},
		{"trusted, head split", httpFake{splitHead: true, greeting: greeting}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "", "", 0},
		{"untrusted CA", httpFake{}, &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "proxy.test"}, "", StageHandshake, plugins.CodeGeneral},
		{"wrong name", httpFake{}, &tls.Config{RootCAs: roots, ServerName: "other.test"}, "", StageHandshake, plugins.CodeGeneral},
		{"407", httpFake{user: "alice", pass: "x"}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "", StageAuth, plugins.CodeGeneral},
		{"403", httpFake{status: 403}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "", StageTarget, plugins.CodeForbidden},
		{"oversized head", httpFake{oversize: true}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "", StageHandshake, plugins.CodeGeneral},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			f.tls = serverTLS
			srv := startHTTP(t, &f)
			d := HTTPConnect("https-up", srv.addr(), "", "", tt.client, Direct())
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "example.test:25")
			if tt.stage != "" {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				upstreamErr(t, err, "https-up", tt.stage, tt.code)
				if tt.stage == StageHandshake && tt.name != "oversized head" && !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("error %q does not mention the certificate", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.wantType != "" && fmt.Sprintf("%T", c) != tt.wantType {
				t.Fatalf("conn is %T, want %s", c, tt.wantType)
			}
			if f.greeting != "" {
				if got := readN(t, c, len(f.greeting)); got != f.greeting {
					t.Fatalf("greeting %q, want %q", got, f.greeting)
				}
			}
			echoCheck(t, c)
			if info.Path() != "https-up" {
				t.Fatalf("Path = %q", info.Path())
			}
		})
	}
}

func TestHTTPSConnectSilent(t *testing.T) {
	_, roots := testPKI(t)
	srv := silentServer(t)
	d := HTTPConnect("https-silent", srv.addr(), "", "", &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, Direct())
	ctx, _ := dialCtx(t, 500*time.Millisecond)
	c, err := d.DialContext(ctx, "tcp", "example.test:443")
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	upstreamErr(t, err, "https-silent", StageHandshake, plugins.CodeTimeout)
}

// ---------------------------------------------------------------------
// Chains.

func TestChains(t *testing.T) {
	const greeting = "target says hi\n"
	type built struct {
		d           Dialer
		first, next string // upstream names
	}
	// httpViaSOCKS: socks "s1" then http "h2"; socksViaHTTP: http "h1" then
	// socks "s2". firstAddr and nextAddr override the proxies' addresses.
	httpViaSOCKS := func(t *testing.T, firstAddr, nextAddr string) built {
		if firstAddr == "" {
			firstAddr = startSOCKS(t, &socksFake{relay: true}).addr()
		}
		if nextAddr == "" {
			nextAddr = startHTTP(t, &httpFake{greeting: greeting}).addr()
		}
		s1, err := SOCKS5("s1", firstAddr, nil, Direct())
		if err != nil {
			t.Fatal(err)
		}
		return built{HTTPConnect("h2", nextAddr, "", "", nil, s1), "s1", "h2"}
	}
	socksViaHTTP := func(t *testing.T, firstAddr, nextAddr string) built {
		if firstAddr == "" {
			firstAddr = startHTTP(t, &httpFake{relay: true}).addr()
		}
		if nextAddr == "" {
			nextAddr = startSOCKS(t, &socksFake{greeting: greeting}).addr()
		}
		s2, err := SOCKS5("s2", nextAddr, nil, HTTPConnect("h1", firstAddr, "", "", nil, Direct()))
		if err != nil {
			t.Fatal(err)
		}
		return built{s2, "h1", "s2"}
	}
	for _, kind := range []struct {
		name  string
		build func(t *testing.T, firstAddr, nextAddr string) built
		// code when the first hop cannot reach the second (closed port):
		// SOCKS answers 0x05, HTTP 502.
		unreachable plugins.Code
	}{
		{"http via socks", httpViaSOCKS, plugins.CodeConnRefused},
		{"socks via http", socksViaHTTP, plugins.CodeGeneral},
	} {
		t.Run(kind.name, func(t *testing.T) {
			t.Run("works", func(t *testing.T) {
				b := kind.build(t, "", "")
				ctx, info := dialCtx(t, 10*time.Second)
				c, err := b.d.DialContext(ctx, "tcp", "never-resolves.invalid:25")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				mustTCPConn(t, c)
				if got := readN(t, c, len(greeting)); got != greeting {
					t.Fatalf("greeting %q", got)
				}
				echoCheck(t, c)
				if want := b.first + ">" + b.next; info.Path() != want {
					t.Fatalf("Path = %q, want %q", info.Path(), want)
				}
			})
			t.Run("first hop down", func(t *testing.T) {
				b := kind.build(t, closedAddr(t), "")
				ctx, info := dialCtx(t, 10*time.Second)
				c, err := b.d.DialContext(ctx, "tcp", "never-resolves.invalid:25")
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				upstreamErr(t, err, b.first, StageConnect, plugins.CodeConnRefused)
				if strings.Contains(err.Error(), "upstream "+b.next) {
					t.Fatalf("error %q blames %s too", err, b.next)
				}
				if info.Path() != "" {
					t.Fatalf("Path = %q", info.Path())
				}
			})
			t.Run("first hop cannot reach the second", func(t *testing.T) {
				b := kind.build(t, "", closedAddr(t))
				ctx, _ := dialCtx(t, 10*time.Second)
				c, err := b.d.DialContext(ctx, "tcp", "never-resolves.invalid:25")
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				ue := upstreamErr(t, err, b.next, StageConnect, kind.unreachable)
				if !memberFailed(err) {
					t.Fatal("an unreachable second hop does not count as the member failing")
				}
				// The first hop's answer is kept as the cause.
				var inner *Error
				if !errors.As(ue.Err, &inner) || inner.Upstream != b.first || inner.Stage != StageTarget {
					t.Fatalf("cause %v is not the first hop's target error", ue.Err)
				}
			})
			t.Run("second hop refuses the target", func(t *testing.T) {
				var b built
				if kind.name == "http via socks" {
					b = kind.build(t, "", startHTTP(t, &httpFake{status: 403}).addr())
				} else {
					b = kind.build(t, "", startSOCKS(t, &socksFake{reply: 0x02}).addr())
				}
				ctx, _ := dialCtx(t, 10*time.Second)
				c, err := b.d.DialContext(ctx, "tcp", "never-resolves.invalid:25")
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				upstreamErr(t, err, b.next, StageTarget, plugins.CodeForbidden)
			})
		})
	}
}

// ---------------------------------------------------------------------
// SendProxyHeader.

func testProxyHeader() *proxyproto.Header {
	return &proxyproto.Header{
		Version:     2,
		Command:     proxyproto.Proxy,
		Transport:   proxyproto.Stream,
		Source:      &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10).To4(), Port: 51000},
		Destination: &net.TCPAddr{IP: net.IPv4(198, 51, 100, 20).To4(), Port: 443},
		TLVs: []proxyproto.TLV{
			{Type: proxyproto.TypeALPN, Value: []byte("h2")},
			{Type: proxyproto.TypeAuthority, Value: []byte("example.com")},
			{Type: proxyproto.TypeUniqueID, Value: []byte("conn-42")},
			{Type: 0xE0, Value: []byte("custom")},
		},
	}
}

func TestSendProxyHeader(t *testing.T) {
	tests := []struct {
		name     string
		version  int
		pass     []byte
		wantTLVs []byte
	}{
		{"v1", 1, nil, nil},
		{"v2 no TLVs", 2, nil, nil},
		{"v2 authority only", 2, []byte{proxyproto.TypeAuthority}, []byte{proxyproto.TypeAuthority}},
		{"v2 unique id and custom", 2, []byte{0xE0, proxyproto.TypeUniqueID, proxyproto.TypeNetNS},
			[]byte{proxyproto.TypeUniqueID, 0xE0}},
	}
	for _, tt := range tests {
		for _, proto := range []string{"http", "socks5"} {
			t.Run(tt.name+"/"+proto, func(t *testing.T) {
				var d Dialer
				var log *headerLog
				forward := SendProxyHeader(Direct(), tt.version, tt.pass)
				if proto == "http" {
					srv := startHTTP(t, &httpFake{proxyHeader: true})
					log = &srv.headers
					d = HTTPConnect("pp", srv.addr(), "", "", nil, forward)
				} else {
					srv := startSOCKS(t, &socksFake{proxyHeader: true})
					log = &srv.headers
					var err error
					if d, err = SOCKS5("pp", srv.addr(), nil, forward); err != nil {
						t.Fatal(err)
					}
				}
				src := testProxyHeader()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ctx = WithDialInfo(ctx, &DialInfo{ProxyHeader: src})
				c, err := d.DialContext(ctx, "tcp", "example.com:443")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				mustTCPConn(t, c)
				echoCheck(t, c)

				h, err := log.get(t)
				if err != nil {
					t.Fatalf("proxy read no valid PROXY header: %v", err)
				}
				if h.Version != tt.version || h.Command != proxyproto.Proxy || h.Transport != proxyproto.Stream {
					t.Fatalf("header %+v", h)
				}
				if h.Source.String() != src.Source.String() || h.Destination.String() != src.Destination.String() {
					t.Fatalf("addresses %v -> %v, want %v -> %v", h.Source, h.Destination, src.Source, src.Destination)
				}
				var got []byte
				for _, tlv := range h.TLVs {
					got = append(got, tlv.Type)
					v, _ := src.TLV(tlv.Type)
					if !bytes.Equal(v, tlv.Value) {
						t.Fatalf("TLV 0x%02x = %q, want %q", tlv.Type, tlv.Value, v)
					}
				}
				if !bytes.Equal(got, tt.wantTLVs) {
					t.Fatalf("TLV types % x, want % x", got, tt.wantTLVs)
				}
				// The caller's header is not modified.
				if src.Version != 2 || len(src.TLVs) != 4 {
					t.Fatalf("caller's header changed: %+v", src)
				}
			})
		}
	}
}

func TestSendProxyHeaderNone(t *testing.T) {
	for _, tt := range []struct {
		name string
		ctx  context.Context
	}{
		{"no DialInfo", context.Background()},
		{"DialInfo without header", WithDialInfo(context.Background(), &DialInfo{})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startHTTP(t, &httpFake{proxyHeader: true})
			d := HTTPConnect("pp", srv.addr(), "", "", nil, SendProxyHeader(Direct(), 2, nil))
			ctx, cancel := context.WithTimeout(tt.ctx, 10*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", "example.com:443")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echoCheck(t, c)
			if _, err := srv.headers.get(t); !errors.Is(err, proxyproto.ErrNoHeader) {
				t.Fatalf("proxy saw %v, want no header", err)
			}
		})
	}
}

func TestSendProxyHeaderErrors(t *testing.T) {
	// The forward dialer's error passes through untouched.
	addr := closedAddr(t)
	ctx := WithDialInfo(context.Background(), &DialInfo{ProxyHeader: testProxyHeader()})
	_, err := SendProxyHeader(Direct(), 2, nil).DialContext(ctx, "tcp", addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("got %v, want connection refused", err)
	}
	// A header that cannot be written fails the dial and closes the
	// connection.
	srv := startFake(t, func(_ *fakeServer, c net.Conn, _ int32) { io.Copy(io.Discard, c) })
	bad := testProxyHeader()
	bad.Command = proxyproto.Local // LOCAL with addresses is refused by Format
	ctx = WithDialInfo(context.Background(), &DialInfo{ProxyHeader: bad})
	c, err := SendProxyHeader(Direct(), 2, nil).DialContext(ctx, "tcp", srv.addr())
	if err == nil {
		c.Close()
		t.Fatal("dial with a bad header succeeded")
	}
	if !strings.Contains(err.Error(), srv.addr()) {
		t.Fatalf("error %q does not name the address", err)
	}
}

// ---------------------------------------------------------------------
// Direct, DirectTarget.

// seqServer writes the accept number of each connection as one byte.
func seqServer(t *testing.T) *fakeServer {
	return startFake(t, func(_ *fakeServer, c net.Conn, seq int32) {
		c.Write([]byte{byte(seq)})
		io.Copy(io.Discard, c)
	})
}

func readSeq(t *testing.T, c net.Conn) int {
	t.Helper()
	return int(readN(t, c, 1)[0])
}

func TestDirect(t *testing.T) {
	srv := seqServer(t)
	c, err := Direct().DialContext(context.Background(), "tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustTCPConn(t, c)
	if readSeq(t, c) != 1 {
		t.Fatal("not the first connection")
	}
}

func TestDirectTargetCheckDial(t *testing.T) {
	srv := seqServer(t)
	refuse := plugins.Reject(plugins.CodeForbidden, "private address")
	var mu sync.Mutex
	var seen []netip.AddrPort
	info := &DialInfo{CheckDial: func(ap netip.AddrPort) error {
		mu.Lock()
		seen = append(seen, ap)
		mu.Unlock()
		if ap.Addr().IsLoopback() {
			return refuse
		}
		return nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := DirectTarget().DialContext(WithDialInfo(ctx, info), "tcp", srv.addr())
	if !errors.Is(err, refuse) {
		t.Fatalf("got %v, want the CheckDial refusal", err)
	}
	if DialCode(err) != plugins.CodeForbidden {
		t.Fatalf("DialCode = %v", DialCode(err))
	}
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(srv.port()))
	mu.Lock()
	if len(seen) != 1 || seen[0] != want {
		t.Fatalf("CheckDial saw %v, want [%v]", seen, want)
	}
	mu.Unlock()

	// A check that allows: the connection is made, and it is the first
	// the server accepted (the refused dial never connected).
	info.CheckDial = func(ap netip.AddrPort) error {
		mu.Lock()
		seen = append(seen, ap)
		mu.Unlock()
		return nil
	}
	c, err := DirectTarget().DialContext(WithDialInfo(ctx, info), "tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustTCPConn(t, c)
	if n := readSeq(t, c); n != 1 {
		t.Fatalf("connection #%d: the refused dial reached the server", n)
	}
	mu.Lock()
	if len(seen) != 2 || seen[1] != want {
		t.Fatalf("CheckDial saw %v", seen)
	}
	mu.Unlock()

	// No DialInfo, or no CheckDial: a plain dial.
	for _, ctx := range []context.Context{ctx, WithDialInfo(ctx, &DialInfo{})} {
		c, err := DirectTarget().DialContext(ctx, "tcp", srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

func TestDirectTargetPinned(t *testing.T) {
	srv := seqServer(t)
	port := strconv.Itoa(srv.port())
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name    string
		info    func(checked *[]netip.AddrPort) *DialInfo
		address string
		ok      bool
		checked []string // addresses CheckDial saw, when set
	}{
		{"pinned name that does not resolve", func(*[]netip.AddrPort) *DialInfo {
			return &DialInfo{PinnedHost: "never-resolves.invalid", Pinned: []netip.Addr{lo}}
		}, "never-resolves.invalid:" + port, true, nil},
		{"first pinned address refused, next tried", func(*[]netip.AddrPort) *DialInfo {
			return &DialInfo{PinnedHost: "never-resolves.invalid", Pinned: []netip.Addr{netip.MustParseAddr("127.0.0.2"), lo}}
		}, "never-resolves.invalid:" + port, true, nil},
		{"pinned addresses are checked", func(checked *[]netip.AddrPort) *DialInfo {
			return &DialInfo{PinnedHost: "never-resolves.invalid", Pinned: []netip.Addr{netip.MustParseAddr("127.0.0.3"), lo},
				CheckDial: func(ap netip.AddrPort) error {
					*checked = append(*checked, ap)
					if ap.Addr() == netip.MustParseAddr("127.0.0.3") {
						return errors.New("refused by check")
					}
					return nil
				}}
		}, "never-resolves.invalid:" + port, true, []string{"127.0.0.3:" + port, "127.0.0.1:" + port}},
		{"every pinned address fails", func(*[]netip.AddrPort) *DialInfo {
			return &DialInfo{PinnedHost: "never-resolves.invalid", Pinned: []netip.Addr{netip.MustParseAddr("127.0.0.2")}}
		}, "never-resolves.invalid:" + port, false, nil},
		{"another host is not pinned", func(*[]netip.AddrPort) *DialInfo {
			return &DialInfo{PinnedHost: "other.invalid", Pinned: []netip.Addr{netip.MustParseAddr("127.0.0.2")}}
		}, "127.0.0.1:" + port, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var checked []netip.AddrPort
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := DirectTarget().DialContext(WithDialInfo(ctx, tt.info(&checked)), "tcp", tt.address)
			if !tt.ok {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				var dnsErr *net.DNSError
				if errors.As(err, &dnsErr) {
					t.Fatalf("dial resolved the pinned name: %v", err)
				}
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("got %v, want the pinned address refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mustTCPConn(t, c)
			readSeq(t, c) // reached the server
			if c.RemoteAddr().String() != "127.0.0.1:"+port {
				t.Fatalf("connected to %v", c.RemoteAddr())
			}
			if tt.checked != nil && fmt.Sprint(checked) != fmt.Sprint(tt.checked) {
				t.Fatalf("CheckDial saw %v, want %v", checked, tt.checked)
			}
		})
	}
}

// blackhole listens on ip:port with a full accept queue, so that a
// connect to it is never answered (Linux drops the SYN).
func blackhole(t *testing.T, ip [4]byte, port int) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("relies on Linux dropping SYNs to a full accept queue")
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: ip}); err != nil {
		t.Skipf("bind %v:%d: %v", ip, port, err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(netip.AddrFrom4(ip).String(), strconv.Itoa(port))
	for range 10 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return // full
			}
			t.Fatalf("filling the accept queue: %v", err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill the accept queue")
}

func TestDirectTargetPinnedShare(t *testing.T) {
	// The first pinned address never answers: it gets its share of the
	// deadline, and the second still connects within the deadline.
	srv := seqServer(t)
	blackhole(t, [4]byte{127, 0, 0, 2}, srv.port())
	port := strconv.Itoa(srv.port())
	var mu sync.Mutex
	var checked []netip.AddrPort
	info := &DialInfo{PinnedHost: "never-resolves.invalid",
		Pinned: []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")},
		CheckDial: func(ap netip.AddrPort) error {
			mu.Lock()
			checked = append(checked, ap)
			mu.Unlock()
			return nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	c, err := DirectTarget().DialContext(WithDialInfo(ctx, info), "tcp", "never-resolves.invalid:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readSeq(t, c)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(checked) != "[127.0.0.2:"+port+" 127.0.0.1:"+port+"]" {
		t.Fatalf("dialed %v", checked)
	}
}

func TestReadHeadExact(t *testing.T) {
	const head = "HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n"
	const after = "GREETING"
	big := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("b", 90)+"\r\n", 100) + "\r\n"
	tests := []struct {
		name  string
		parts []string
		head  string
		err   string
	}{
		{"one write", []string{head + after}, head, ""},
		{"head alone", []string{head}, head, ""},
		{"split before CRLFCRLF", []string{head[:len(head)-4], head[len(head)-4:] + after}, head, ""},
		{"split after CR", []string{head[:len(head)-3], head[len(head)-3:] + after}, head, ""},
		{"split after CRLF", []string{head[:len(head)-2], head[len(head)-2:] + after}, head, ""},
		{"split after CRLFCR", []string{head[:len(head)-1], head[len(head)-1:] + after}, head, ""},
		{"three pieces", []string{"HTTP/1.1 2", "00 OK\r\n\r", "\n" + after}, "HTTP/1.1 200 OK\r\n\r\n", ""},
		{"tiny first piece", []string{"HT", "TP/1.1 200 OK\r\n\r\n" + after}, "HTTP/1.1 200 OK\r\n\r\n", ""},
		{"head over several peeks", []string{big + after}, big, ""},
		{"head over the limit", []string{strings.Repeat("a", maxResponseHead+1)}, "", "response head over"},
		{"EOF inside the head", []string{"HTTP/1.1 200 OK\r\n", "<close>"}, "", io.ErrUnexpectedEOF.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				for _, p := range tt.parts {
					if p == "<close>" {
						return
					}
					time.Sleep(20 * time.Millisecond) // let the reader peek what came so far
					if _, err := io.WriteString(c, p); err != nil {
						return
					}
				}
				io.Copy(io.Discard, c)
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { c.Close(); <-done }()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			got, err := readHeadExact(c.(*net.TCPConn))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %q, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.head {
				t.Fatalf("head %q, want %q", got, tt.head)
			}
			if strings.HasSuffix(strings.Join(tt.parts, ""), after) {
				if rest := readN(t, c, len(after)); rest != after {
					t.Fatalf("after the head: %q", rest)
				}
			}
		})
	}
}
