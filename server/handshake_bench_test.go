package server

// Benchmarks of the client handshakes and of whole tunnels.
//
// The handshake parsers (serveHTTP, serveSOCKS5, serveSOCKS4) are methods
// of a connection that end by dialing and relaying, so they cannot be
// called alone. BenchmarkHandshake runs conn.serve, the code every accepted
// connection runs, in the benchmark's goroutine over in-memory
// connections: the client's bytes are scripted, the dial hook hands back
// an in-memory upstream that is at EOF at once (or answers one HTTP
// response), so each op is detection, parse, session, OnConnect and route,
// dial, reply, and the relay's setup and teardown, without the network.
// The one allocation of the harness per op is the conn itself, which
// listener.serve allocates too. In-memory connections are not sockets, so
// the relay takes its buffered path, not splice: its share of the numbers
// is indicative only.
//
// BenchmarkHTTPReadRequest and BenchmarkReadProxyHeader isolate the two
// parse steps that are separate calls; BenchmarkTunnel is the same
// handshakes over loopback TCP against a started server and a real echo
// target.
//
//	go test -run '^$' -bench 'Handshake|ReadRequest|ProxyHeader|Tunnel' -benchmem ./server/

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/proxyproto"
	"ferry/test/testkit"
)

// benchConn is an in-memory net.Conn: Read returns the scripted bytes, then
// io.EOF; Write keeps the first bytes written for checks and discards the
// rest; Close, CloseWrite and deadlines do nothing. It is reset and reused
// between ops so that the harness allocates nothing per op. Each
// direction is used by one goroutine at a time, as the relay does.
type benchConn struct {
	in            []byte
	r             bytes.Reader
	head          [64]byte
	nHead         int
	local, remote net.Addr
}

func newBenchConn(in []byte, local, remote string) *benchConn {
	return &benchConn{in: in, local: benchAddr(local), remote: benchAddr(remote)}
}

func benchAddr(s string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

func (c *benchConn) reset() {
	c.r.Reset(c.in)
	c.nHead = 0
}

func (c *benchConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *benchConn) Write(p []byte) (int, error) {
	c.nHead += copy(c.head[c.nHead:], p)
	return len(p), nil
}

func (c *benchConn) got() []byte { return c.head[:c.nHead] }

func (c *benchConn) Close() error                     { return nil }
func (c *benchConn) CloseWrite() error                { return nil }
func (c *benchConn) LocalAddr() net.Addr              { return c.local }
func (c *benchConn) RemoteAddr() net.Addr             { return c.remote }
func (c *benchConn) SetDeadline(time.Time) error      { return nil }
func (c *benchConn) SetReadDeadline(time.Time) error  { return nil }
func (c *benchConn) SetWriteDeadline(time.Time) error { return nil }

// benchHandshakeConfig has a plain listener and one that takes PROXY headers
// from loopback peers. No plugins: the chain has its own benchmarks
// (plugins.BenchmarkChain); these measure server's own code. Nothing is
// opened: the server is built, never started.
const benchHandshakeConfig = `
[[listener]]
name = "plain"
listen = "127.0.0.1:0"
[[listener]]
name = "pp"
listen = "127.0.0.1:0"
proxy_protocol = "optional"
trusted_proxies = ["127.0.0.0/8"]
`

// newBenchServer builds (does not start) a server from benchHandshakeConfig
// whose every dial returns up, with a disabled logger.
func newBenchServer(b *testing.B, up net.Conn) *Server {
	b.Helper()
	cfg, err := config.Parse("bench.toml", []byte(benchHandshakeConfig))
	if err != nil {
		b.Fatalf("config: %v", err)
	}
	srv, err := New(cfg, zerolog.Nop())
	if err != nil {
		b.Fatalf("server.New: %v", err)
	}
	b.Cleanup(func() { srv.Close() })
	dial := dialFunc(func(context.Context, string, string) (net.Conn, error) { return up, nil })
	srv.dialHook.Store(&dial)
	// Sockets as Start would give them, without opening any.
	for _, l := range srv.gen.listeners {
		l.sock = &socket{cur: l}
	}
	return srv
}

// benchServe serves h as the accept loop would, and waits until its
// channel, which may end on another goroutine, has ended.
func benchServe(h *conn) {
	l := h.l
	l.sock.active.Add(1)
	l.srv.active.Add(1)
	l.srv.conns.Add(1)
	l.gen.conns.Add(1)
	l.serve(h)
	l.srv.conns.Wait()
}

func benchSOCKS4Request(ip [4]byte, port uint16, host string) []byte {
	b := []byte{4, socks4CmdConnect}
	b = binary.BigEndian.AppendUint16(b, port)
	b = append(b, ip[:]...)
	b = append(b, "user\x00"...)
	if host != "" {
		b = append(b, host+"\x00"...)
	}
	return b
}

func benchProxyV1(src, dst string) []byte {
	h := &proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Source: benchAddr(src), Destination: benchAddr(dst)}
	out, err := h.Format()
	if err != nil {
		panic(err)
	}
	return out
}

func benchProxyV2(src, dst string) []byte {
	h := &proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.Stream,
		Source: benchAddr(src), Destination: benchAddr(dst)}
	out, err := h.Format()
	if err != nil {
		panic(err)
	}
	return out
}

// What curl sends, near enough.
const (
	benchConnectHead = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: curl/8.5.0\r\nProxy-Connection: Keep-Alive\r\n\r\n"
	benchGetHead     = "GET http://example.com/index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n"
	benchPostHead    = "POST http://example.com/api HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n"
	benchGetResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
)

// benchGetResponse64K is a 64 KiB object: the size at which the copy of
// each body byte, not the per-request work, is most of the cost.
var benchGetResponse64K = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 65536\r\n\r\n" +
	strings.Repeat("x", 65536)

const (
	benchClient   = "127.0.0.1:40000" // the peer, trusted by "pp"
	benchLocal    = "127.0.0.1:8080"  // ferry's listening address
	benchUpL      = "127.0.0.1:50000" // the upstream connection's local end
	benchUpR      = "93.184.215.14:443"
	benchPPSource = "203.0.113.7:51000" // the client a PROXY header names
)

// BenchmarkHandshake serves one client connection per op, from its first
// byte to the end of its (empty) tunnel, through conn.serve. See the file
// comment.
func BenchmarkHandshake(b *testing.B) {
	cases := []struct {
		name     string
		listener int // 0 plain, 1 pp
		in       []byte
		upIn     string // what the upstream answers
		want     []byte // prefix of what the client must receive
	}{
		{name: "CONNECT", in: []byte(benchConnectHead), want: []byte("HTTP/1.1 200 ")},
		{name: "HTTP-absolute", in: []byte(benchGetHead), upIn: benchGetResponse, want: []byte("HTTP/1.1 200 OK\r\n")},
		{name: "HTTP-absolute-64KiB", in: []byte(benchGetHead), upIn: benchGetResponse64K, want: []byte("HTTP/1.1 200 OK\r\n")},
		{name: "HTTP-POST-1KiB", in: []byte(benchPostHead + strings.Repeat("x", 1024)), upIn: benchGetResponse, want: []byte("HTTP/1.1 200 OK\r\n")},
		{name: "SOCKS5-IPv4", in: socks5Request("93.184.215.14", 443, 1), want: []byte{5, 0, 5, 0, 0, 1}},
		{name: "SOCKS5-domain", in: socks5Request("example.com", 443, 1), want: []byte{5, 0, 5, 0, 0, 1}},
		{name: "SOCKS4", in: benchSOCKS4Request([4]byte{93, 184, 215, 14}, 443, ""), want: []byte{0, socks4Granted}},
		{name: "SOCKS4a", in: benchSOCKS4Request([4]byte{0, 0, 0, 1}, 443, "example.com"), want: []byte{0, socks4Granted}},
		{name: "PROXYv1+CONNECT", listener: 1, in: append(benchProxyV1(benchPPSource, benchLocal), benchConnectHead...), want: []byte("HTTP/1.1 200 ")},
		{name: "PROXYv2+CONNECT", listener: 1, in: append(benchProxyV2(benchPPSource, benchLocal), benchConnectHead...), want: []byte("HTTP/1.1 200 ")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			up := newBenchConn([]byte(c.upIn), benchUpL, benchUpR)
			srv := newBenchServer(b, up)
			l := srv.gen.listeners[c.listener]
			client := newBenchConn(c.in, benchLocal, benchClient)
			b.ReportAllocs()
			for b.Loop() {
				client.reset()
				up.reset()
				benchServe(&conn{l: l, c: client})
				if !bytes.HasPrefix(client.got(), c.want) {
					b.Fatalf("client got %q, want a reply starting %q", client.got(), c.want)
				}
			}
		})
	}
}

// BenchmarkHTTPReadRequest is the parse serveHTTP runs on the handshake
// buffer, http.ReadRequest, alone: the share of BenchmarkHandshake/CONNECT
// and /HTTP-absolute that net/http's parser costs.
func BenchmarkHTTPReadRequest(b *testing.B) {
	cases := []struct{ name, in string }{
		{"CONNECT", benchConnectHead},
		{"absolute", benchGetHead},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var r strings.Reader
			br := bufio.NewReaderSize(&r, handshakeBufSize)
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(c.in)
				br.Reset(&r)
				req, err := http.ReadRequest(br)
				if err != nil || req.Host == "" {
					b.Fatalf("ReadRequest: %v", err)
				}
			}
		})
	}
}

// BenchmarkReadProxyHeader runs the PROXY header step of a listener with
// proxy_protocol = "optional" for a trusted peer: detection, parse and the
// trust check, with a v1 header, a v2 header, and none (a client's own
// first bytes).
func BenchmarkReadProxyHeader(b *testing.B) {
	cases := []struct {
		name string
		in   []byte
		want bool // a header is expected
	}{
		{"v1", append(benchProxyV1(benchPPSource, benchLocal), benchConnectHead...), true},
		{"v2", append(benchProxyV2(benchPPSource, benchLocal), benchConnectHead...), true},
		{"none", []byte(benchConnectHead), false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			srv := newBenchServer(b, nil)
			client := newBenchConn(c.in, benchLocal, benchClient)
			br := bufio.NewReaderSize(client, handshakeBufSize)
			h := &conn{l: srv.gen.listeners[1], c: client, br: br, peer: client.remote}
			b.ReportAllocs()
			for b.Loop() {
				client.reset()
				br.Reset(client)
				h.client, h.proxyHeader = h.peer, nil
				if !h.readProxyHeader() {
					b.Fatal("readProxyHeader refused the connection")
				}
				if got := h.proxyHeader != nil; got != c.want {
					b.Fatalf("header read: %v, want %v", got, c.want)
				}
			}
		})
	}
}

// benchTunnelConfig is the built-in default configuration's shape: one
// listener with the access-log plugin, logging at info (to io.Discard, so
// the line is built but not written).
const benchTunnelConfig = `
[[listener]]
name = "main"
listen = "127.0.0.1:0"
plugins = ["log"]
[[plugin]]
name = "log"
`

// startBench runs a server from TOML on a free loopback port until the
// benchmark ends (start, for benchmarks).
func startBench(b *testing.B, toml string) *Server {
	b.Helper()
	cfg, err := config.Parse("bench.toml", []byte(toml))
	if err != nil {
		b.Fatalf("config: %v", err)
	}
	srv, err := New(cfg, zerolog.New(io.Discard).Level(zerolog.InfoLevel))
	if err != nil {
		b.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		b.Fatalf("Start: %v", err)
	}
	b.Cleanup(func() {
		if sum := srv.Shutdown(5 * time.Second); sum.Forced != 0 {
			b.Errorf("shutdown forced %d connections", sum.Forced)
		}
	})
	return srv
}

// BenchmarkTunnel opens and ends one tunnel per op over loopback TCP:
// connect to ferry, handshake, read the reply, send a byte to the echo
// target and read it back, half-close and read to EOF (ferry has torn the
// tunnel down both ways), close. conn/s is tunnels a second, one at a
// time; B/op, allocs/op and cpu-us/op (user and system time, from
// getrusage) count the whole process: client, ferry and echo target.
func BenchmarkTunnel(b *testing.B) {
	echo := testkit.EchoTarget(b).Addr
	addr := startBench(b, benchTunnelConfig).Addrs()[0].String()
	host, port := splitPortB(b, echo)
	connectReq := []byte(fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", echo, echo))
	connectReply := []byte("HTTP/1.1 200 Connection established\r\n\r\n")
	cases := []struct {
		name  string
		req   []byte
		reply int    // length of ferry's answer
		want  []byte // its prefix
	}{
		{"CONNECT", connectReq, len(connectReply), connectReply},
		// Method choice (2), then VER REP RSV ATYP=IPv4 ADDR PORT (10).
		{"SOCKS5", socks5Request(host, port, 1), 12, []byte{5, 0, 5, 0, 0, 1}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := benchCPU(b)
			for b.Loop() {
				if err := benchTunnelOnce(addr, c.req, c.reply, c.want); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conn/s")
			b.ReportMetric(float64((benchCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

func benchTunnelOnce(addr string, req []byte, replyLen int, want []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return err
	}
	var buf [64]byte
	if _, err := io.ReadFull(c, buf[:replyLen]); err != nil {
		return fmt.Errorf("reply: %w", err)
	}
	if !bytes.HasPrefix(buf[:replyLen], want) {
		return fmt.Errorf("reply %q, want %q", buf[:replyLen], want)
	}
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	n, err := io.ReadFull(c, buf[:2])
	if err != io.ErrUnexpectedEOF || n != 1 || buf[0] != 'x' {
		return fmt.Errorf("echo: got %q, %v; want \"x\" then EOF", buf[:n], err)
	}
	return nil
}

// benchCPU is the process's user and system CPU time so far.
func benchCPU(b *testing.B) time.Duration {
	d, err := testkit.CPUTime(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func splitPortB(b *testing.B, addr string) (string, uint16) {
	b.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		b.Fatal(err)
	}
	var p uint16
	if _, err := fmt.Sscan(port, &p); err != nil {
		b.Fatal(err)
	}
	return host, p
}
