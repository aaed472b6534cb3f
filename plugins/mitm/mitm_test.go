package mitm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
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
