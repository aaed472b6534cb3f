package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/plugins"
	"ferry/proxyproto"
	"ferry/test/testkit"
)

// seen records the sessions a listener's plugin saw at OnConnect.
type seen struct {
	testPlugin
	smu      sync.Mutex
	sessions []*plugins.Session
}

func (p *seen) OnConnect(ctx context.Context, s *plugins.Session) error {
	p.smu.Lock()
	p.sessions = append(p.sessions, s)
	p.smu.Unlock()
	return nil
}

func (p *seen) last(t *testing.T) *plugins.Session {
	t.Helper()
	var s *plugins.Session
	waitFor(t, func() bool {
		p.smu.Lock()
		defer p.smu.Unlock()
		if len(p.sessions) > 0 {
			s = p.sessions[len(p.sessions)-1]
			return true
		}
		return false
	})
	return s
}

func init() {
	plugins.Register(plugins.Registration{
		Type: "seen", Description: "server tests only",
		New: func(env plugins.Env) (plugins.Plugin, error) {
			return &seen{testPlugin: testPlugin{name: env.Name}}, nil
		},
	})
}

func seenPlugin(f *fixture) *seen {
	for _, l := range f.srv.gen.listeners {
		for _, p := range l.chain.Plugins() {
			if s, ok := p.(*seen); ok {
				return s
			}
		}
	}
	return nil
}

// dialFrom connects to addr from a chosen loopback source address.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func ppConfig(mode string) string {
	return `
[defaults]
handshake_timeout = "1s"
[[listener]]
listen = "127.0.0.1:0"
proxy_protocol = "` + mode + `"
trusted_proxies = ["127.0.0.1/32"]
plugins = ["seen", "log"]
[[plugin]]
name = "seen"
[[plugin]]
name = "log"
`
}

func v2Header(t *testing.T, src string, tlvs ...proxyproto.TLV) []byte {
	t.Helper()
	h := &proxyproto.Header{Version: 2, Command: proxyproto.Proxy,
		Source:      &net.TCPAddr{IP: net.ParseIP(src), Port: 40000},
		Destination: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 8080}, TLVs: tlvs}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// connectThrough sends prefix, then an HTTP CONNECT to target, and
// reports the status (0 when the connection closed instead).
func connectThrough(t *testing.T, c net.Conn, prefix []byte, target string) int {
	t.Helper()
	c.Write(append(prefix, fmt.Sprintf("CONNECT %s HTTP/1.1\r\n\r\n", target)...))
	resp, err := readStatus(c)
	if err != nil {
		return 0
	}
	return resp
}

func readStatus(c net.Conn) (int, error) {
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	var code int
	_, err = fmt.Sscanf(line, "HTTP/1.1 %d", &code)
	return code, err
}

func TestProxyProtocolAccept(t *testing.T) {
	echo := testkit.EchoServer(t)
	tests := []struct {
		name, mode, from string
		prefix           func(t *testing.T) []byte
		wantStatus       int // 0: closed without an answer
		wantClient       string
	}{
		{"required v1", "required", "127.0.0.1", func(*testing.T) []byte { return []byte("PROXY TCP4 198.51.100.7 192.0.2.1 40000 8080\r\n") }, 200, "198.51.100.7:40000"},
		{"required v2", "required", "127.0.0.1", func(t *testing.T) []byte { return v2Header(t, "2001:db8::7") }, 200, "[2001:db8::7]:40000"},
		{"required v2 LOCAL keeps the peer", "required", "127.0.0.1", func(t *testing.T) []byte {
			b, _ := (&proxyproto.Header{Version: 2, Command: proxyproto.Local}).Format()
			return b
		}, 200, "127.0.0.1:"},
		{"required without header", "required", "127.0.0.1", nil, 0, ""},
		{"required from untrusted", "required", "127.0.0.2", func(*testing.T) []byte { return []byte("PROXY TCP4 198.51.100.7 192.0.2.1 40000 8080\r\n") }, 0, ""},
		{"optional with header", "optional", "127.0.0.1", func(*testing.T) []byte { return []byte("PROXY TCP4 198.51.100.8 192.0.2.1 40000 8080\r\n") }, 200, "198.51.100.8:40000"},
		{"optional without header", "optional", "127.0.0.1", nil, 200, "127.0.0.1:"},
		{"optional untrusted without header", "optional", "127.0.0.2", nil, 200, "127.0.0.2:"},
		{"optional untrusted with header", "optional", "127.0.0.2", func(*testing.T) []byte { return []byte("PROXY TCP4 198.51.100.9 192.0.2.1 40000 8080\r\n") }, 0, ""},
		{"malformed v1", "required", "127.0.0.1", func(*testing.T) []byte { return []byte("PROXY TCP4 198.51.100.7  192.0.2.1 40000 8080\r\n") }, 0, ""},
		{"truncated v2", "required", "127.0.0.1", func(t *testing.T) []byte { return v2Header(t, "198.51.100.7")[:20] }, 0, ""},
		{"v2 over the length limit", "required", "127.0.0.1", func(t *testing.T) []byte {
			b := v2Header(t, "198.51.100.7")[:16]
			binary.BigEndian.PutUint16(b[14:], 60000)
			return b
		}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, ppConfig(tt.mode))
			var prefix []byte
			if tt.prefix != nil {
				prefix = tt.prefix(t)
			}
			c := dialFrom(t, tt.from, f.addr)
			begin := time.Now()
			var got int
			if tt.wantStatus == 0 && prefix != nil {
				// A bad header alone: what follows must not complete it.
				c.Write(prefix)
				got, _ = readStatus(c)
			} else {
				got = connectThrough(t, c, prefix, echo)
			}
			if got != tt.wantStatus {
				t.Fatalf("status: got %d, want %d\n%s", got, tt.wantStatus, f.logs.String())
			}
			if got == 0 {
				if d := time.Since(begin); d > 1500*time.Millisecond {
					t.Fatalf("refused after %v, want within the 1s handshake timeout", d)
				}
				waitFor(t, func() bool { return strings.Contains(f.logs.String(), "connection refused") })
				if n := f.obs.handshakes("proxy_protocol", "rejected"); n != 1 {
					t.Errorf("handshakes proxy_protocol/rejected: got %d, want 1", n)
				}
				return
			}
			s := seenPlugin(f).last(t)
			if !strings.HasPrefix(s.Client.String(), tt.wantClient) {
				t.Fatalf("session client: got %s, want %s…", s.Client, tt.wantClient)
			}
			if !strings.HasPrefix(s.Peer.String(), tt.from+":") {
				t.Fatalf("session peer: got %s, want %s:…", s.Peer, tt.from)
			}
			c.Close()
			waitFor(t, func() bool {
				return strings.Contains(f.logs.String(), `"client":"`+s.Client.String()+`"`)
			})
		})
	}
}

func TestProxyProtocolTLVsOnSession(t *testing.T) {
	echo := testkit.EchoServer(t)
	f := start(t, ppConfig("required"))
	c := dial(t, f.addr)
	hdr := v2Header(t, "198.51.100.7", proxyproto.TLV{Type: proxyproto.TypeAuthority, Value: []byte("example.test")})
	if got := connectThrough(t, c, hdr, echo); got != 200 {
		t.Fatalf("status %d", got)
	}
	s := seenPlugin(f).last(t)
	if s.ProxyHeader == nil || s.ProxyHeader.Authority() != "example.test" {
		t.Fatalf("session PROXY header: got %+v, want authority example.test", s.ProxyHeader)
	}
}

// TestSendProxyProtocol: a tcp listener writes the client's address to its
// target in a PROXY header, before the client's bytes, which arrive intact.
func TestSendProxyProtocol(t *testing.T) {
	tests := []struct {
		name, send, in, pass string
		prefix               func(t *testing.T) []byte
		wantSource           string
		wantTLV              bool
	}{
		{name: "v1 from the peer", send: "v1", wantSource: "127.0.0.1:"},
		{name: "v2 from the peer", send: "v2", wantSource: "127.0.0.1:"},
		{name: "v2 from a balancer's header with TLVs", send: "v2", in: "required", pass: `pass_tlvs = ["authority"]`,
			prefix: func(t *testing.T) []byte {
				return v2Header(t, "198.51.100.7", proxyproto.TLV{Type: proxyproto.TypeAuthority, Value: []byte("a.test")},
					proxyproto.TLV{Type: proxyproto.TypeUniqueID, Value: []byte("id")})
			},
			wantSource: "198.51.100.7:40000", wantTLV: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			in := ""
			if tt.in != "" {
				in = `proxy_protocol = "` + tt.in + `"` + "\ntrusted_proxies = [\"127.0.0.1\"]\n"
			}
			f := start(t, `
[[listener]]
listen = "127.0.0.1:0"
protocols = ["tcp"]
target = "`+ln.Addr().String()+`"
send_proxy_protocol = "`+tt.send+`"
`+in+tt.pass+"\n")
			c := dial(t, f.addr)
			var prefix []byte
			if tt.prefix != nil {
				prefix = tt.prefix(t)
			}
			c.Write(append(prefix, "payload"...))
			tc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(tc)
			h, err := proxyproto.Read(br, proxyproto.ReadOptions{})
			if err != nil {
				t.Fatalf("target read header: %v", err)
			}
			if wantV := map[string]int{"v1": 1, "v2": 2}[tt.send]; h.Version != wantV {
				t.Fatalf("version: got %d, want %d", h.Version, wantV)
			}
			if !strings.HasPrefix(h.Source.String(), tt.wantSource) {
				t.Fatalf("source: got %v, want %s…", h.Source, tt.wantSource)
			}
			if got := h.Authority(); (got == "a.test") != tt.wantTLV || h.UniqueID() != nil {
				t.Fatalf("TLVs: got %+v, want authority passed only when asked, unique id never", h.TLVs)
			}
			payload := make([]byte, 7)
			if _, err := io.ReadFull(br, payload); err != nil || string(payload) != "payload" {
				t.Fatalf("payload: got %q, %v", payload, err)
			}
		})
	}
}
