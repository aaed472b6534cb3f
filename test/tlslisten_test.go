package test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// tlsListener is a PKI written for a TLS listener: the CA clients trust,
// and the listener's certificate and key.
type tlsListener struct {
	ca, cert, key string
}

func newTLSListener(t *testing.T) tlsListener {
	t.Helper()
	ca, cert, key := testkit.WritePKI(t, t.TempDir())
	return tlsListener{ca: ca, cert: cert, key: key}
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

// dialTLSListener opens a TLS connection to a TLS listener, trusting its
// CA and offering alpn.
func dialTLSListener(t *testing.T, addr string, p tlsListener, alpn ...string) *tls.Conn {
	t.Helper()
	pem, err := os.ReadFile(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config: &tls.Config{RootCAs: roots, NextProtos: alpn}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*tls.Conn)
}
