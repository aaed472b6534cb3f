package mitm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
)

// pipePair returns two ends of a loopback TCP connection.
func pipePair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-done
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// testPlugin is a mitm instance over a fresh CA, intercepting *.test but
// not skip.test; targets must chain to targetRoots.
func testPlugin(t *testing.T, targetRoots *x509.CertPool) (*Plugin, *CA) {
	t.Helper()
	certPEM, keyPEM, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM, 16)
	if err != nil {
		t.Fatal(err)
	}
	p := &Plugin{name: "mitm", log: zerolog.Nop(), ca: ca, roots: targetRoots, timeout: 5 * time.Second}
	for _, s := range []string{"*.test", "name.test"} {
		d, _ := match.ParseDomain(s)
		p.intercept.Add(d)
	}
	d, _ := match.ParseDomain("skip.test")
	p.bypass.Add(d)
	return p, ca
}

func TestInterceptLeavesOthersUntouched(t *testing.T) {
	p, _ := testPlugin(t, nil)
	for _, tt := range []struct {
		name, target string
		send         []byte
		wantPending  string
	}{
		{"name out of scope: nothing read", "example.com:443", []byte("\x16\x03\x01"), ""},
		{"not TLS: bytes kept", "name.test:25", []byte("EHLO x\r\n"), "E"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, ferrySide := pipePair(t)
			client.Write(tt.send)
			tun := &plugins.Tunnel{Client: ferrySide, Upstream: ferrySide}
			s := &plugins.Session{Target: tt.target, Log: zerolog.Nop()}
			if err := p.Intercept(context.Background(), s, tun); err != nil {
				t.Fatal(err)
			}
			if tun.Client != ferrySide || string(tun.ClientPending) != tt.wantPending || s.Intercepted != "" {
				t.Fatalf("tunnel changed: client %T, pending %q, intercepted %q", tun.Client, tun.ClientPending, s.Intercepted)
			}
			// The client's own socket stays a TCP conn: the fast path holds.
			if _, ok := tun.Client.(*net.TCPConn); !ok {
				t.Fatalf("client is %T", tun.Client)
			}
		})
	}
}

func TestInterceptBypassKeepsClientHello(t *testing.T) {
	p, _ := testPlugin(t, nil)
	client, ferrySide := pipePair(t)
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: "skip.test", InsecureSkipVerify: true})
		c.Handshake() // fails when the test closes the connection
	}()
	tun := &plugins.Tunnel{Client: ferrySide, Upstream: ferrySide}
	// The target is an IP: only the server name says it is bypassed.
	s := &plugins.Session{Target: "127.0.0.1:443", Log: zerolog.Nop()}
	if err := p.Intercept(context.Background(), s, tun); err != nil {
		t.Fatal(err)
	}
	if s.Intercepted != "" || tun.Client != ferrySide {
		t.Fatalf("bypassed name intercepted")
	}
	if len(tun.ClientPending) < 50 || tun.ClientPending[0] != 0x16 || tun.ClientPending[5] != 1 {
		t.Fatalf("pending %d bytes, want the whole ClientHello record", len(tun.ClientPending))
	}
}

func TestInterceptEndToEnd(t *testing.T) {
	// A target with a certificate from its own CA.
	tcaPEM, tkeyPEM, err := NewCA("target CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tca, err := ParseCA(tcaPEM, tkeyPEM, 4)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(tca.Certificate())
	p, ca := testPlugin(t, roots)

	client, ferryClient := pipePair(t)
	ferryUp, target := pipePair(t)
	go func() {
		leaf, _ := tca.Leaf("name.test")
		srv := tls.Server(target, &tls.Config{Certificates: []tls.Certificate{*leaf}, NextProtos: []string{"h2", "http/1.1"}})
		buf := make([]byte, 4)
		if _, err := io.ReadFull(srv, buf); err == nil {
			srv.Write([]byte("pong:" + srv.ConnectionState().NegotiatedProtocol))
		}
		srv.Close()
	}()
	clientRoots := x509.NewCertPool()
	clientRoots.AddCert(ca.Certificate())
	result := make(chan string, 1)
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: "name.test", RootCAs: clientRoots, NextProtos: []string{"h2"}})
		if err := c.Handshake(); err != nil {
			result <- "client handshake: " + err.Error()
			return
		}
		c.Write([]byte("ping"))
		b, _ := io.ReadAll(c)
		result <- string(b) + " alpn=" + c.ConnectionState().NegotiatedProtocol
	}()

	tun := &plugins.Tunnel{Client: ferryClient, Upstream: ferryUp}
	s := &plugins.Session{Target: "127.0.0.1:443", Log: zerolog.Nop()}
	if err := p.Intercept(context.Background(), s, tun); err != nil {
		t.Fatal(err)
	}
	if s.Intercepted != "name.test" || len(tun.ClientPending) != 0 {
		t.Fatalf("intercepted %q, pending %d", s.Intercepted, len(tun.ClientPending))
	}
	// Relay the plaintext by hand, as the channel would.
	go io.Copy(tun.Upstream, tun.Client)
	go func() { io.Copy(tun.Client, tun.Upstream); tun.Client.Close() }()
	select {
	case got := <-result:
		if got != "pong:h2 alpn=h2" {
			t.Fatalf("client got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
}

// helloFor returns the first TLS record (the ClientHello) a Go client
// sends for serverName, with the name's bytes replaced by patch when
// patch is not empty (same length: the lengths in the record stay right).
// It crafts what Go's client will not send: IP literals, trailing dots.
func helloFor(t *testing.T, serverName, patch string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
	b.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	rec := append(hdr, body...)
	if patch != "" {
		if len(patch) != len(serverName) || bytes.Count(rec, []byte(serverName)) != 1 {
			t.Fatalf("cannot patch %q into the hello for %q", patch, serverName)
		}
		rec = bytes.Replace(rec, []byte(serverName), []byte(patch), 1)
	}
	return rec
}

// TestInterceptRefusesBadServerName: a wildcard, an IP literal, a name
// that is no DNS host name, or a hello crypto/tls cannot read never
// becomes a leaf: the client gets a fatal alert and the tunnel closes.
// For an IP target such a name is out of scope like any other, and the
// tunnel is relayed untouched.
func TestInterceptRefusesBadServerName(t *testing.T) {
	tests := []struct {
		name, target string
		hello        func(t *testing.T) []byte
		wantAlert    byte // 0: relayed untouched
	}{
		{"wildcard", "name.test:443", func(t *testing.T) []byte { return helloFor(t, "*.wild.test", "") }, alertUnrecognizedName},
		{"wildcard for an IP target", "127.0.0.1:443", func(t *testing.T) []byte { return helloFor(t, "*.wild.test", "") }, alertUnrecognizedName},
		{"IPv4 literal", "name.test:443", func(t *testing.T) []byte { return helloFor(t, "abcdefghi.com", "192.168.10.10") }, alertUnrecognizedName},
		{"IPv6 literal", "name.test:443", func(t *testing.T) []byte { return helloFor(t, "abcdefg.test", "2001:db8::10") }, alertUnrecognizedName},
		{"label with a space", "name.test:443", func(t *testing.T) []byte { return helloFor(t, "ab-cd.test", "ab cd.test") }, alertUnrecognizedName},
		{"leading hyphen", "name.test:443", func(t *testing.T) []byte { return helloFor(t, "abc.test", "-bc.test") }, alertUnrecognizedName},
		{"trailing dot: crypto/tls cannot read it", "name.test:443", func(t *testing.T) []byte { return helloFor(t, "abcd.test", "abc.test.") }, alertDecodeError},
		{"no server name, wildcard target", "*.wild.test:443", func(t *testing.T) []byte { return helloFor(t, "", "") }, alertUnrecognizedName},
		{"bad name, IP target, out of scope", "127.0.0.1:443", func(t *testing.T) []byte { return helloFor(t, "*.wild.other", "") }, 0},
		{"unreadable hello, IP target", "127.0.0.1:443", func(t *testing.T) []byte { return helloFor(t, "abcd.test", "abc.test.") }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ca := testPlugin(t, nil)
			client, ferrySide := pipePair(t)
			hello := tt.hello(t)
			client.Write(hello)
			tun := &plugins.Tunnel{Client: ferrySide, Upstream: ferrySide}
			s := &plugins.Session{Target: tt.target, Log: zerolog.Nop()}
			err := p.Intercept(context.Background(), s, tun)
			if _, misses := ca.Stats(); misses != 0 {
				t.Fatalf("%d leaves made, want none", misses)
			}
			if s.Intercepted != "" {
				t.Fatalf("intercepted as %q", s.Intercepted)
			}
			if tt.wantAlert == 0 {
				if err != nil || !bytes.Equal(tun.ClientPending, hello) {
					t.Fatalf("got %v and %d bytes pending; want nil and the hello kept", err, len(tun.ClientPending))
				}
				return
			}
			if err == nil || plugins.CodeOf(err) != plugins.CodeForbidden {
				t.Fatalf("got %v, want a refusal", err)
			}
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, 7)
			if _, err := io.ReadFull(client, got); err != nil {
				t.Fatalf("read the alert: %v", err)
			}
			if want := []byte{21, 3, 3, 0, 2, 2, tt.wantAlert}; !bytes.Equal(got, want) {
				t.Fatalf("client got % x, want the alert % x", got, want)
			}
		})
	}
}

// TestInterceptRefusalGoClient: a Go client that asks for *.wild.test
// fails its handshake with the alert, not a certificate error.
func TestInterceptRefusalGoClient(t *testing.T) {
	p, _ := testPlugin(t, nil)
	client, ferrySide := pipePair(t)
	res := make(chan error, 1)
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: "*.wild.test", InsecureSkipVerify: true})
		c.SetDeadline(time.Now().Add(5 * time.Second))
		res <- c.Handshake()
	}()
	tun := &plugins.Tunnel{Client: ferrySide, Upstream: ferrySide}
	if err := p.Intercept(context.Background(), &plugins.Session{Target: "name.test:443", Log: zerolog.Nop()}, tun); err == nil {
		t.Fatal("intercepted")
	}
	if err := <-res; err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("client handshake: got %v, want the unrecognized name alert", err)
	}
}
