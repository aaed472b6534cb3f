package server

// Fuzz targets for the client handshakes: the HTTP proxy request line and
// headers, SOCKS4/4a, and SOCKS5 greeting, username/password
// subnegotiation and request.
//
// Each input is one client's byte stream on an in-memory connection. The
// server's own accept loop takes it from an in-memory listener and serves
// it as every accepted connection is served, on a listener speaking all
// three protocols (the default); the dial hook hands back an in-memory
// upstream. Nothing leaves the process. The three targets share that
// harness and differ in their seeds, so each spends its time on its own
// parser; an input that strays into another protocol is checked by that
// protocol's rules.
//
// The two bool arguments pick the listener (auth: one whose chain requires
// a username and password, the gate plugin's alice/secret) and how the
// client ends (silent: it stops sending but stays connected, so the
// server's deadlines must end the connection; otherwise it closes after
// its bytes). Time is not waited for: a silent client's connection
// reports an expired deadline as soon as a read with a deadline finds no
// more input, and a read without one is a finding (it would wait
// forever), unless the server cleared its deadline first, as it does when
// a tunnel starts and the idle timeout takes over.
//
// Properties checked per input: nothing panics (a panic ends the fuzzing
// process; go test -run=FuzzX/<input> ./server/ shows its stack); within
// fuzzServeLimit the client connection is closed and the connection is
// released (the server's count of live ones is back to zero), every
// upstream connection closed by then; nothing is written after a
// half-close; and the client receives only well-formed answers of the
// protocol its first byte chose: SOCKS5 method choice, RFC 1929 status
// and a reply with VER=5 and REP 0-8; SOCKS4 VN=0 and CD 90-93; HTTP
// responses each starting "HTTP/1.1 NNN ", framed so that net/http can
// read them one by one. A success reply needs a successful dial, what
// follows it must be what the upstream sent, and what the upstream of a
// tunnel got must be a tail of the client's bytes.
//
//	go test -run '^$' -fuzz '^FuzzSOCKS5Handshake$' -fuzztime 60s -parallel 1 ./server/

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/server/httphead"
)

// fuzzConfig has an open listener and one that requires authentication
// (the gate plugin of hooks_test.go). The timeouts are short in case a
// real wait slips in; the in-memory connections never wait for them.
const fuzzConfig = `
[defaults]
handshake_timeout = "100ms"
idle_timeout = "200ms"
dial_timeout = "200ms"
[[listener]]
name = "open"
listen = "127.0.0.1:0"
plugins = ["log"]
socks5_udp = false # handshakes only; socks5udp_test.go covers associations
[[listener]]
name = "auth"
listen = "127.0.0.1:0"
plugins = ["gate", "log"]
socks5_udp = false
[[plugin]]
name = "log"
[[plugin]]
name = "gate"
deny_port = 5
`

// fuzzServeLimit bounds one input's connection, from accept to release.
// Inputs take microseconds; only a hang gets near it.
const fuzzServeLimit = 2 * time.Second

// fuzzOutMax bounds what a fuzzConn keeps of what is written to it.
const fuzzOutMax = 1 << 20

// fuzzUpstreamReply is what every upstream sends, then EOF: a response
// for a forwarded request (no body, so that the client's stream reads the
// same whatever the method), and the bytes a tunnel carries down.
const fuzzUpstreamReply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

var (
	fuzzClientAddr = benchAddr("127.0.0.1:40000")
	fuzzLocalAddr  = benchAddr("127.0.0.1:8080")
)

// fuzzConn is one end of an in-memory connection. Read returns the
// scripted bytes, then io.EOF, or for a silent peer the expiry of the
// read deadline (at once: the peer never sends again). Write keeps what
// is written. Both ends of a tunnel use it from two goroutines.
type fuzzConn struct {
	local, remote net.Addr
	silent        bool

	mu          sync.Mutex
	in          []byte
	out         []byte
	outLost     bool // more than fuzzOutMax was written
	readDL      bool // a read deadline is set
	dlCleared   bool // the server cleared its deadline (a tunnel began)
	closed      bool
	closedWrite bool
	closedCh    chan struct{} // closed by the first Close, if not nil
	problems    []string
}

func fuzzOpError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}

func (c *fuzzConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return 0, fuzzOpError("read", net.ErrClosed)
	case len(p) == 0:
		return 0, nil
	case len(c.in) > 0:
		n := copy(p, c.in)
		c.in = c.in[n:]
		return n, nil
	case !c.silent:
		return 0, io.EOF
	case c.readDL:
		return 0, fuzzOpError("read", os.ErrDeadlineExceeded)
	case !c.dlCleared:
		c.problem("read from a silent client without a deadline: it would wait forever")
	}
	return 0, io.EOF
}

func (c *fuzzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, fuzzOpError("write", net.ErrClosed)
	}
	if c.closedWrite {
		c.problem(fmt.Sprintf("write of %q after CloseWrite", p))
		return 0, fuzzOpError("write", syscall.EPIPE)
	}
	if len(c.out)+len(p) > fuzzOutMax {
		c.outLost = true
	} else {
		c.out = append(c.out, p...)
	}
	return len(p), nil
}

// problem records a broken property once; c.mu is held.
func (c *fuzzConn) problem(msg string) {
	if !slices.Contains(c.problems, msg) {
		c.problems = append(c.problems, msg)
	}
}

func (c *fuzzConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed && c.closedCh != nil {
		close(c.closedCh)
	}
	c.closed = true
	return nil
}

func (c *fuzzConn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fuzzOpError("shutdown", net.ErrClosed)
	}
	c.closedWrite = true
	return nil
}

func (c *fuzzConn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = !t.IsZero()
	if t.IsZero() {
		c.dlCleared = true
	}
}

func (c *fuzzConn) LocalAddr() net.Addr                { return c.local }
func (c *fuzzConn) RemoteAddr() net.Addr               { return c.remote }
func (c *fuzzConn) SetDeadline(t time.Time) error      { c.setReadDeadline(t); return nil }
func (c *fuzzConn) SetReadDeadline(t time.Time) error  { c.setReadDeadline(t); return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// state returns what the checks need, once serve has returned.
func (c *fuzzConn) state() (out []byte, outLost, closed bool, problems []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out, c.outLost, c.closed, c.problems
}

// fuzzServer is a server whose listeners accept from in-memory sockets
// (fuzzListener) and whose dials go to in-memory upstreams, recorded in
// the current exec.
type fuzzServer struct {
	srv        *Server
	open, auth *fuzzListener
	exec       atomic.Pointer[fuzzExec]
	// hung: a connection never ended, so a shutdown would wait forever.
	hung atomic.Bool
}

// fuzzExec is what one input's connection dialed.
type fuzzExec struct {
	mu  sync.Mutex
	ups []*fuzzConn // successful dials, in order
	// reply is what each upstream sends; fuzzUpstreamReply if empty.
	reply string
}

// fuzzListener is a net.Listener whose Accept takes the connections sent
// on conns.
type fuzzListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newFuzzListener() *fuzzListener {
	return &fuzzListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *fuzzListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, fuzzOpError("accept", net.ErrClosed)
	}
}

func (l *fuzzListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *fuzzListener) Addr() net.Addr { return fuzzLocalAddr }

// newFuzzServer starts a server from fuzzConfig as Start does, except
// that its sockets are fuzzListeners: connections go through the real
// accept loop, with its accounting, to listener.serve.
func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	cfg, err := config.Parse("fuzz.toml", []byte(fuzzConfig))
	if err != nil {
		f.Fatalf("config: %v", err)
	}
	// Debug level, so that the log statements' arguments are built as
	// they are in a debugging deployment; the lines go nowhere.
	srv, err := New(cfg, zerolog.New(io.Discard).Level(zerolog.DebugLevel))
	if err != nil {
		f.Fatalf("server.New: %v", err)
	}
	fs := &fuzzServer{srv: srv, open: newFuzzListener(), auth: newFuzzListener()}
	dial := dialFunc(fs.dial)
	srv.dialHook.Store(&dial)
	srv.mu.Lock()
	if err := srv.gen.services.Start(srv.hardCtx); err != nil {
		srv.mu.Unlock()
		srv.Close()
		f.Fatalf("start services: %v", err)
	}
	socks := []*socket{{ln: fs.open, addr: "fuzz-open"}, {ln: fs.auth, addr: "fuzz-auth"}}
	srv.serve(srv.gen, socks, socks)
	srv.mu.Unlock()
	f.Cleanup(func() {
		if fs.hung.Load() {
			fs.open.Close()
			fs.auth.Close()
			return
		}
		if sum := srv.Shutdown(time.Second); sum.Forced != 0 {
			f.Errorf("shutdown forced %d connections", sum.Forced)
		}
	})
	return fs
}

// dial fails for the target ports 1 to 4, each with a different error
// (refused, unknown host, timeout, other), so that every failure answer
// is reachable; any other target gets an upstream that sends
// fuzzUpstreamReply and ends.
func (fs *fuzzServer) dial(_ context.Context, network, addr string) (net.Conn, error) {
	host, port, _ := net.SplitHostPort(addr)
	switch port {
	case "1":
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	case "2":
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
	case "3":
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded}
	case "4":
		return nil, errors.New("fuzz: dial failed")
	}
	// The upstream's remote port is the target's, so the gate's deny_port
	// applies to reused HTTP connections; the local address follows the
	// target's family, so SOCKS5 replies carry both address types.
	remote := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), 443)
	local := netip.MustParseAddrPort("127.0.0.1:50000")
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		remote = netip.AddrPortFrom(netip.MustParseAddr("2001:db8::10"), 443)
		local = netip.MustParseAddrPort("[::1]:50000")
	}
	var p uint16
	if _, err := fmt.Sscan(port, &p); err == nil {
		remote = netip.AddrPortFrom(remote.Addr(), p)
	}
	up := &fuzzConn{
		local:  net.TCPAddrFromAddrPort(local),
		remote: net.TCPAddrFromAddrPort(remote),
	}
	e := fs.exec.Load()
	up.in = []byte(cmp.Or(e.reply, fuzzUpstreamReply))
	e.mu.Lock()
	e.ups = append(e.ups, up)
	e.mu.Unlock()
	return up, nil
}

// run serves in as one client connection and checks the properties of
// the file comment.
func (fs *fuzzServer) run(t *testing.T, in []byte, auth, silent bool) {
	out := fs.runReply(t, in, auth, silent, "")
	if out == nil {
		return
	}
	var err error
	switch {
	case len(in) == 0:
		if len(out) != 0 {
			err = errors.New("answer to a client that sent nothing")
		}
	case in[0] == socks5Version:
		err = checkSOCKS5Answer(out, auth, fs.exec.Load().ups)
	case in[0] == 0x04:
		err = checkSOCKS4Answer(out, auth, fs.exec.Load().ups)
	case isTokenByte(in[0]):
		err = checkHTTPAnswer(in, out, fs.exec.Load().ups)
	default:
		if len(out) != 0 {
			err = errors.New("answer to an unknown protocol")
		}
	}
	if err != nil {
		t.Fatalf("client got %q: %v", out, err)
	}
	// A tunnel carries the client's bytes past its request unchanged: the
	// upstream got a tail of the input.
	ups := fs.exec.Load().ups
	if tunnel := len(ups) > 0 && (in[0] == socks5Version || in[0] == 0x04 || bytes.Contains(out, connectEstablished)); tunnel {
		upOut, _, _, _ := ups[len(ups)-1].state()
		if !bytes.HasSuffix(in, upOut) {
			t.Fatalf("upstream got %q, not a tail of the client's bytes", upOut)
		}
	}
}

// runReply serves in as one client connection, with reply as what every
// upstream sends, checks that every connection was closed and released,
// and returns what the client got (nil when more than fuzzOutMax).
func (fs *fuzzServer) runReply(t *testing.T, in []byte, auth, silent bool, reply string) []byte {
	ln := fs.open
	if auth {
		ln = fs.auth
	}
	e := &fuzzExec{reply: reply}
	fs.exec.Store(e)
	client := &fuzzConn{local: fuzzLocalAddr, remote: fuzzClientAddr, silent: silent,
		in: bytes.Clone(in), closedCh: make(chan struct{})}

	timer := time.NewTimer(fuzzServeLimit)
	defer timer.Stop()
	hung := func(what string) {
		fs.hung.Store(true)
		stacks := make([]byte, 1<<20)
		stacks = stacks[:runtime.Stack(stacks, true)]
		t.Fatalf("%s within %v; goroutines:\n%s", what, fuzzServeLimit, stacks)
	}
	select {
	case ln.conns <- client:
	case <-timer.C:
		hung("the accept loop did not take the connection")
	}
	select {
	case <-client.closedCh:
	case <-timer.C:
		client.Close()
		hung("the client connection was not closed")
	}
	// Closing the client is not the end: the connection is done when its
	// goroutines have released it (the server's count of connections).
	released := make(chan struct{})
	go func() {
		fs.srv.conns.Wait()
		close(released)
	}()
	select {
	case <-released:
	case <-timer.C:
		hung("the connection was not released")
	}

	out, outLost, _, problems := client.state()
	for _, p := range problems {
		t.Errorf("client connection: %s", p)
	}
	e.mu.Lock()
	ups := e.ups
	e.mu.Unlock()
	for i, up := range ups {
		_, _, upClosed, upProblems := up.state()
		if !upClosed {
			t.Errorf("upstream connection %d (of %d) left open", i+1, len(ups))
		}
		for _, p := range upProblems {
			t.Errorf("upstream connection %d: %s", i+1, p)
		}
	}
	if outLost {
		return nil
	}
	return out
}

// checkTunnelData checks what follows a success reply: a prefix of what
// the upstream sent, after a successful dial.
func checkTunnelData(rest []byte, ups []*fuzzConn) error {
	if len(ups) == 0 {
		return errors.New("success reply without a successful dial")
	}
	if !strings.HasPrefix(fuzzUpstreamReply, string(rest)) {
		return fmt.Errorf("tunnel delivered %q, not what the upstream sent", rest)
	}
	return nil
}

// checkSOCKS5Answer checks the method choice, the RFC 1929 status on the
// auth listener, and the reply (RFC 1928 section 6), each possibly
// missing if the exchange ended before it.
func checkSOCKS5Answer(out []byte, auth bool, ups []*fuzzConn) error {
	if len(out) == 0 {
		return nil
	}
	if len(out) < 2 || out[0] != socks5Version {
		return errors.New("method choice: want VER=5 and a method")
	}
	want := byte(socks5NoAuth)
	if auth {
		want = socks5UserPass
	}
	switch out[1] {
	case socks5NoAcceptable:
		if len(out) != 2 {
			return errors.New("bytes after \"no acceptable methods\"")
		}
		return nil
	case want:
	default:
		return fmt.Errorf("method choice %#x, want %#x or 0xff", out[1], want)
	}
	out = out[2:]
	if auth {
		if len(out) == 0 {
			return nil
		}
		if len(out) < 2 || out[0] != 0x01 || out[1] > 1 {
			return errors.New("auth status: want VER=1 STATUS=0 or 1")
		}
		if out[1] != 0 {
			if len(out) != 2 {
				return errors.New("bytes after a failed authentication")
			}
			return nil
		}
		out = out[2:]
	}
	if len(out) == 0 {
		return nil
	}
	if len(out) < 4 || out[0] != socks5Version || out[2] != 0 {
		return errors.New("reply: want VER=5 REP RSV=0 ATYP")
	}
	rep, alen := out[1], 0
	switch out[3] {
	case socks5AtypIPv4:
		alen = 4
	case socks5AtypIPv6:
		alen = 16
	default:
		return fmt.Errorf("reply ATYP %#x", out[3])
	}
	if rep > socks5RepAtypNotSupported {
		return fmt.Errorf("reply REP %#x is not in RFC 1928", rep)
	}
	n := 4 + alen + 2
	if len(out) < n {
		return errors.New("reply: short BND.ADDR or BND.PORT")
	}
	if rep != 0 {
		if len(out) != n {
			return errors.New("bytes after a failure reply")
		}
		return nil
	}
	return checkTunnelData(out[n:], ups)
}

// checkSOCKS4Answer checks the one 8-byte reply: VN=0, CD 90-93.
func checkSOCKS4Answer(out []byte, auth bool, ups []*fuzzConn) error {
	if len(out) == 0 {
		return nil
	}
	if len(out) < 8 || out[0] != 0 {
		return errors.New("reply: want 8 bytes starting VN=0")
	}
	cd := out[1]
	if cd < socks4Granted || cd > socks4Granted+3 {
		return fmt.Errorf("reply CD %d, want 90-93", cd)
	}
	if cd != socks4Granted {
		if len(out) != 8 {
			return errors.New("bytes after a failure reply")
		}
		return nil
	}
	if auth {
		return errors.New("granted on a listener that requires authentication")
	}
	return checkTunnelData(out[8:], ups)
}

// checkHTTPAnswer reads out as a sequence of responses (interim 1xx, one
// per request of in that ferry's parser reads, HEAD answers without a body;
// per forwarded request, an error, or CONNECT's 200 then the tunnel).
func checkHTTPAnswer(in, out []byte, ups []*fuzzConn) error {
	br := bufio.NewReader(bytes.NewReader(out))
	methods := requestMethods(in)
	for i := 1; ; i++ {
		head, _ := br.Peek(len("HTTP/1.1 200 "))
		if len(head) == 0 {
			return nil
		}
		if !isHTTP11StatusLine(head) {
			return fmt.Errorf("response %d does not start with \"HTTP/1.1 NNN \"", i)
		}
		var req *http.Request
		if len(methods) >= i && methods[i-1] == http.MethodHead {
			req = &http.Request{Method: http.MethodHead}
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return fmt.Errorf("response %d: %w", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return fmt.Errorf("response %d body: %w", i, err)
		}
		if resp.Status == "200 Connection established" {
			// Read to EOF: the rest is the tunnel.
			return checkTunnelData(body, ups)
		}
		if resp.Close {
			if _, err := br.Peek(1); err != io.EOF {
				return fmt.Errorf("bytes after response %d, which said Connection: close", i)
			}
			return nil
		}
	}
}

// requestMethods lists the methods of the requests in in, as far as
// ferry's own parser reads them (bodies skipped).
func requestMethods(in []byte) []string {
	var methods []string
	br := bufio.NewReader(bytes.NewReader(in))
	for {
		hd, err := httphead.ReadRequest(br, httphead.Limits{MaxBytes: 64 << 10})
		if err != nil {
			return methods
		}
		methods = append(methods, hd.Method())
		fr, err := httphead.RequestFraming(hd)
		if err != nil {
			return methods
		}
		c := httphead.Copier{Buf: make([]byte, 512)}
		if c.Copy(io.Discard, br, fr) != nil {
			return methods
		}
	}
}

func isHTTP11StatusLine(b []byte) bool {
	if len(b) < 13 || !bytes.HasPrefix(b, []byte("HTTP/1.1 ")) || b[12] != ' ' {
		return false
	}
	for _, d := range b[9:12] {
		if d < '0' || d > '9' {
			return false
		}
	}
	return true
}

// socks5UserPassRequest is socks5Request's CONNECT with the
// username/password method and its subnegotiation.
func socks5UserPassRequest(user, pass, host string, port uint16) []byte {
	b := []byte{socks5Version, 1, socks5UserPass, 0x01, byte(len(user))}
	b = append(b, user...)
	b = append(b, byte(len(pass)))
	b = append(b, pass...)
	return append(b, socks5Request(host, port, socks5CmdConnect)[3:]...)
}

func FuzzHTTPHandshake(f *testing.F) {
	auth := "Proxy-Authorization: " + basic("alice", "secret") + "\r\n"
	for _, s := range []struct {
		in           string
		auth, silent bool
	}{
		{in: benchConnectHead},
		{in: benchGetHead},
		{in: benchConnectHead, silent: true},
		{in: benchConnectHead + "tunnel bytes"},
		{in: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n" + auth + "\r\n", auth: true},
		{in: benchConnectHead, auth: true},
		{in: "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: " + basic("alice", "nope") + "\r\n\r\n", auth: true},
		{in: "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: Bearer x\r\n\r\n", auth: true},
		{in: "GET http://example.com/forbidden HTTP/1.1\r\nHost: example.com\r\n" + auth + "\r\n", auth: true},
		{in: "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n"},
		{in: "CONNECT 192.0.2.1:1 HTTP/1.1\r\n\r\n"},
		{in: "CONNECT unknown.test:2 HTTP/1.1\r\n\r\n"},
		{in: "CONNECT slow.test:3 HTTP/1.1\r\n\r\n"},
		{in: "GET http://example.com:4/ HTTP/1.1\r\nHost: example.com:4\r\n\r\n"},
		{in: "CONNECT example.com HTTP/1.1\r\n\r\n"},
		{in: "CONNECT :443 HTTP/1.1\r\n\r\n"},
		{in: "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"},
		{in: "GET https://example.com/ HTTP/1.1\r\n\r\n"},
		{in: "GET http://[::1]/ HTTP/1.0\r\n\r\n"},
		{in: "GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\nGET http://example.org/b HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n"},
		{in: "GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\nCONNECT example.org:443 HTTP/1.1\r\n\r\nhello"},
		{in: "GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\nGET http://example.com:5/b HTTP/1.1\r\n\r\n", auth: true},
		{in: "POST http://example.com/form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"},
		{in: "POST http://example.com/up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"},
		{in: "POST http://example.com/up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 50\r\n\r\nshort", silent: true},
		{in: "GET http://example.com/ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, X-Drop\r\nUpgrade: websocket\r\nX-Drop: 1\r\n\r\n"},
		{in: "HEAD http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"},
		{in: "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n folded: header\r\n\r\n"},
		{in: "GET http://example.com/ HTTP/1.1\r\nBad Header: x\r\n\r\n"},
		{in: "GET http://example.com/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"},
		{in: "CONNECT example.com:443 HTTP/1.1\r\nHost: exa", silent: true},
		{in: "CONNECT example.com:443 HTTP/1.1\r\nHost: exa"},
		{in: "GET\r\n\r\n"},
		{in: "G"},
	} {
		f.Add([]byte(s.in), s.auth, s.silent)
	}
	fs := newFuzzServer(f)
	f.Fuzz(fs.run)
}

// FuzzHTTPResponse feeds what an origin answers through the plain HTTP
// forwarder: whatever it sends, the client gets well-formed HTTP/1.1
// responses (or an error answer), nothing is smuggled into a later
// response, and every connection is released.
func FuzzHTTPResponse(f *testing.F) {
	for _, s := range []string{
		fuzzUpstreamReply,
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close, X-A\r\nX-A: 1\r\nKeep-Alive: timeout=5\r\n\r\nbody until close",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n",
		"\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64",
		"HTTP/2 200\r\n\r\n",
	} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
	}
	requests := []string{
		"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\nGET http://example.com/b HTTP/1.1\r\nConnection: close\r\n\r\n",
		"HEAD http://example.com/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET http://example.com/b HTTP/1.0\r\n\r\n",
		"GET http://example.com/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"POST http://example.com/up HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, reply string, which uint8) {
		in := requests[int(which)%len(requests)]
		out := fs.runReply(t, []byte(in), false, false, reply)
		if err := checkHTTPExchange(in, out); err != nil {
			t.Fatalf("client got %q: %v", out, err)
		}
	})
}

// checkHTTPExchange reads out as the answers to the requests in reqs,
// each read as its request makes it framed (HEAD has no body).
func checkHTTPExchange(reqs string, out []byte) error {
	rbr := bufio.NewReader(strings.NewReader(reqs))
	br := bufio.NewReader(bytes.NewReader(out))
	for i := 1; ; i++ {
		req, err := http.ReadRequest(rbr)
		if head, _ := br.Peek(13); len(head) == 0 {
			return nil
		} else if !isHTTP11StatusLine(head) {
			return fmt.Errorf("response %d does not start with \"HTTP/1.1 NNN \"", i)
		}
		if err != nil {
			return fmt.Errorf("response %d to no request", i)
		}
		resp, err := http.ReadResponse(br, req)
		for err == nil && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			resp, err = http.ReadResponse(br, req)
		}
		if err != nil {
			return fmt.Errorf("response %d: %w", i, err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			// A body the origin cut short reaches the client cut short,
			// as its framing shows, and the connection ends there:
			// nothing may follow that could pass for another response.
			if rest, _ := io.ReadAll(br); bytes.Contains(rest, []byte("HTTP/1.")) {
				return fmt.Errorf("response %d body: %w, and another response follows", i, err)
			}
			return nil
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil // the rest is the upgraded stream
		}
		if resp.Close {
			if _, err := br.Peek(1); err != io.EOF {
				return fmt.Errorf("bytes after response %d, which said Connection: close", i)
			}
			return nil
		}
	}
}

func FuzzSOCKS4Handshake(f *testing.F) {
	ip := [4]byte{93, 184, 215, 14}
	socks4a := [4]byte{0, 0, 0, 1}
	long := strings.Repeat("u", socks4MaxField+1)
	for _, s := range []struct {
		in           []byte
		auth, silent bool
	}{
		{in: benchSOCKS4Request(ip, 443, "")},
		{in: benchSOCKS4Request(socks4a, 443, "example.com")},
		{in: benchSOCKS4Request(socks4a, 443, "2001:db8::1")},
		{in: append(benchSOCKS4Request(ip, 443, ""), "tunnel bytes"...)},
		{in: benchSOCKS4Request(ip, 443, ""), auth: true},
		{in: benchSOCKS4Request(ip, 1, "")},
		{in: benchSOCKS4Request(socks4a, 2, "unknown.test")},
		{in: benchSOCKS4Request(socks4a, 3, "slow.test")},
		{in: benchSOCKS4Request(socks4a, 443, "")},
		{in: benchSOCKS4Request([4]byte{0, 0, 0, 0}, 443, "")},
		{in: []byte{4, 2, 0, 80, 93, 184, 215, 14, 0}}, // BIND
		{in: []byte{4, 1, 0, 80, 93, 184, 215, 14, 0}},
		{in: append([]byte{4, 1, 0, 80, 0, 0, 0, 1}, long+"\x00host\x00"...)},
		{in: append([]byte{4, 1, 0, 80, 0, 0, 0, 1, 0}, long+"\x00"...)},
		{in: []byte{4, 1, 0, 80, 0, 0, 0, 1, 'u', 0, 'h', 'o', 's', 't'}, silent: true},
		{in: []byte{4, 1, 0, 80, 0, 0, 0, 1, 'u', 0, 'h', 'o', 's', 't'}},
		{in: []byte{4, 1, 0}, silent: true},
		{in: []byte{4}},
	} {
		f.Add(s.in, s.auth, s.silent)
	}
	fs := newFuzzServer(f)
	f.Fuzz(fs.run)
}

func FuzzSOCKS5Handshake(f *testing.F) {
	connect := func(host string, port uint16) []byte { return socks5Request(host, port, socks5CmdConnect) }
	for _, s := range []struct {
		in           []byte
		auth, silent bool
	}{
		{in: connect("93.184.215.14", 443)},
		{in: connect("example.com", 443)},
		{in: connect("2001:db8::1", 443)},
		{in: append(connect("example.com", 443), "tunnel bytes"...)},
		{in: connect("example.com", 443), silent: true},
		{in: socks5Request("example.com", 443, 2)},           // BIND
		{in: socks5Request("93.184.215.14", 53, 3)},          // UDP ASSOCIATE
		{in: []byte{5, 1, 0, 5, 1, 0, 5, 1, 2, 3, 4, 0, 80}}, // bad ATYP
		{in: []byte{5, 1, 0, 5, 1, 0, 3, 0, 0, 80}},          // empty domain
		{in: []byte{5, 1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80}}, // request VER=4
		{in: []byte{5, 2, 1, 2}},                             // no acceptable method
		{in: []byte{5, 0}},
		{in: []byte{5, 255}, silent: true},
		{in: connect("192.0.2.1", 1)},
		{in: connect("unknown.test", 2)},
		{in: connect("slow.test", 3)},
		{in: connect("2001:db8::2", 4)},
		{in: connect("a:b]", 80)},
		{in: socks5UserPassRequest("alice", "secret", "example.com", 443), auth: true},
		{in: socks5UserPassRequest("alice", "secret", "2001:db8::1", 443), auth: true},
		{in: append(socks5UserPassRequest("alice", "secret", "93.184.215.14", 443), "tunnel bytes"...), auth: true},
		{in: socks5UserPassRequest("alice", "nope", "example.com", 443), auth: true},
		{in: socks5UserPassRequest("", "", "example.com", 443), auth: true},
		{in: socks5UserPassRequest("alice", "secret", "example.com", 443)},                                // not offered: no-auth listener
		{in: connect("example.com", 443), auth: true},                                                     // no-auth only: refused
		{in: []byte{5, 1, 2, 2, 5, 'a', 'l', 'i', 'c', 'e', 6, 's', 'e', 'c', 'r', 'e', 't'}, auth: true}, // auth VER=2
		{in: []byte{5, 1, 2, 1, 5, 'a', 'l'}, auth: true, silent: true},
		{in: []byte{5, 1, 2, 1, 5, 'a', 'l'}, auth: true},
		{in: []byte{5}},
	} {
		f.Add(s.in, s.auth, s.silent)
	}
	fs := newFuzzServer(f)
	f.Fuzz(fs.run)
}
