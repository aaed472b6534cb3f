//go:build linux

package test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// tlsListener is a PKI written for a TLS listener in dir: the CA clients
// trust (which signs client certificates too), and the listener's
// certificate and key.
type tlsListener struct {
	*testkit.PKI
	dir, ca, cert, key string
}

func newTLSListener(t *testing.T) tlsListener {
	t.Helper()
	p := tlsListener{PKI: testkit.NewPKI(t), dir: t.TempDir()}
	p.ca, p.cert, p.key = p.Write(t, p.dir)
	return p
}

// config returns a config maker for startFerry: chainConfig's listener
// "e2e" made a TLS listener, with tlsExtra inside its tls table.
func (p tlsListener) config(tlsExtra string, chain []string, tables string) func(addr string) string {
	return func(addr string) string {
		tls := fmt.Sprintf("tls = { cert = %q, key = %q%s }\n", p.cert, p.key, tlsExtra)
		return strings.Replace(chainConfig(chain, tables)(addr), "plugins = [", tls+"plugins = [", 1)
	}
}

// TestTLSListenerCurl sends CONNECT and plain HTTP through a TLS listener
// with curl -x https://, which checks the listener's certificate against
// --proxy-cacert.
func TestTLSListenerCurl(t *testing.T) {
	t.Parallel()
	needCurl(t)
	pki := newTLSListener(t)
	web := testkit.HTTPTarget(t)
	tlsWeb, caFile := testkit.TLSTarget(t)
	webAddr := web.Listener.Addr().String()
	tlsAddr := tlsWeb.Listener.Addr().String()
	f := startFerry(t, pki.config("", []string{"log"}, "[[plugin]]\nname = \"log\"\n"), nil)
	proxy := "https://" + f.addr
	tests := []struct {
		name, proto, target string
		args                []string
	}{
		{"plain http", "http", webAddr, []string{"http://" + webAddr + "/"}},
		{"connect", "connect", tlsAddr, []string{"--cacert", caFile, "https://" + tlsAddr + "/"}},
		{"connect tunnel http", "connect", webAddr, []string{"-p", "http://" + webAddr + "/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-x", proxy, "--proxy-cacert", pki.ca}, tt.args...)
			if got := curl(t, args...); got != testkit.TargetBody {
				t.Errorf("curl body = %q, want %q", got, testkit.TargetBody)
			}
			l := f.waitLine(t, "access", func(l logLine) bool {
				return l.str("target") == tt.target && l.str("proto") == tt.proto
			})
			checkAccess(t, l, tt.proto, tt.target)
		})
	}
	// A client that does not trust the certificate fails its handshake.
	res := curlMayFail(t, "-x", proxy, "http://"+webAddr+"/")
	if res.code == 0 || !strings.Contains(res.stderr, "certificate") {
		t.Errorf("curl without --proxy-cacert: exit %d, stderr %q; want a certificate error", res.code, res.stderr)
	}
}

// TestTLSListenerSOCKS runs SOCKS5 and SOCKS4 inside TLS, and checks the
// ALPN the listener offers.
func TestTLSListenerSOCKS(t *testing.T) {
	t.Parallel()
	pki := newTLSListener(t)
	echo := testkit.EchoServer(t)
	f := startFerry(t, pki.config("", nil, ""), nil)
	for _, tt := range []struct {
		name    string
		request func(net.Conn, string) (byte, error)
		ok      byte
	}{
		{"socks5", testkit.SOCKS5Request, 0x00},
		{"socks4", testkit.SOCKS4Request, 0x5A},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialTLSListener(t, f.addr, pki, "http/1.1", "spdy/3")
			if got, want := c.ConnectionState().NegotiatedProtocol, "http/1.1"; got != want {
				t.Errorf("ALPN = %q, want %q", got, want)
			}
			rep, err := tt.request(c, echo)
			if err != nil || rep != tt.ok {
				t.Fatalf("%s request: reply %#x, %v; want %#x", tt.name, rep, err, tt.ok)
			}
			testkit.EchoCheck(t, c)
		})
	}
}

// clientTLS is a client configuration trusting p's CA, presenting cert
// (nil: none) and offering alpn.
func (p tlsListener) clientTLS(cert *tls.Certificate, alpn ...string) *tls.Config {
	c := &tls.Config{RootCAs: p.Roots(), NextProtos: alpn}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// dialTLS opens a TLS connection to addr and completes the handshake,
// all within 5s, and leaves a 10s deadline on the connection.
func dialTLS(addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*tls.Conn), nil
}

// dialTLSListener opens a TLS connection to a TLS listener, trusting its
// CA and offering alpn.
func dialTLSListener(t *testing.T, addr string, p tlsListener, alpn ...string) *tls.Conn {
	t.Helper()
	c, err := dialTLS(addr, p.clientTLS(nil, alpn...))
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialTLSListenerCert is dialTLSListener presenting cert (nil: none).
func dialTLSListenerCert(t *testing.T, addr string, p tlsListener, cert *tls.Certificate) *tls.Conn {
	t.Helper()
	c, err := dialTLS(addr, p.clientTLS(cert))
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tryTLSHandshake reports whether the listener accepts a handshake with
// cert (nil: none). In TLS 1.3 the server refuses a client certificate
// after the client's side of the handshake is done, so a read follows:
// it must time out (the listener waits for a request), not fail.
func tryTLSHandshake(addr string, p tlsListener, cert *tls.Certificate) error {
	c, err := dialTLS(addr, p.clientTLS(cert))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return fmt.Errorf("read after handshake: %w", err)
}
