//go:build linux

package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"ferry/test/testkit"
)

// dialH2TLS opens a TLS connection to a TLS listener offering h2 and
// http/1.1 in ALPN (with cert as the client certificate, nil: none),
// checks that h2 was picked, and runs an HTTP/2 client over it.
func dialH2TLS(t *testing.T, addr string, p tlsListener, cert *tls.Certificate) *http2.ClientConn {
	t.Helper()
	c, err := dialTLS(addr, p.clientTLS(cert, "h2", "http/1.1"))
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Time{})
	if got := c.ConnectionState().NegotiatedProtocol; got != "h2" {
		c.Close()
		t.Fatalf("ALPN picked %q, want h2", got)
	}
	return newH2Client(t, c)
}

// TestH2TLSConnect: a TLS listener offers h2 in ALPN by default; CONNECT
// streams over it are tunnels sharing the connection in the access log,
// an http:// request is forwarded and an https:// one (":scheme https",
// which would need ferry to speak TLS to the origin) is refused.
func TestH2TLSConnect(t *testing.T) {
	t.Parallel()
	pki := newTLSListener(t)
	echo := testkit.EchoServer(t)
	web := testkit.HTTPTarget(t)
	f := startFerry(t, pki.config("", []string{"log"}, "[[plugin]]\nname = \"log\"\n"), nil)
	cc := dialH2TLS(t, f.addr, pki, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		tun := mustH2Connect(t, ctx, cc, echo)
		testkit.EchoCheck(t, tun)
		tun.Close()
	}
	ls := accessLines(t, f, echo, 2)
	if p := ls[0].str("parent"); p == "" || ls[1].str("parent") != p {
		t.Errorf("access lines do not share a parent: %v", ls)
	}
	if code, b := h2GetBody(t, ctx, cc, web.URL+"/"); code != http.StatusOK || b != testkit.TargetBody {
		t.Errorf("GET http:// over h2: got %d %q, want 200 with the target's body", code, b)
	}
	if code, _ := h2GetBody(t, ctx, cc, strings.Replace(web.URL, "http:", "https:", 1)+"/"); code != http.StatusBadRequest {
		t.Errorf("GET https:// over h2: got %d, want 400", code)
	}
}

// TestH2TLSOff: with http2 = false the listener offers only http/1.1.
func TestH2TLSOff(t *testing.T) {
	t.Parallel()
	pki := newTLSListener(t)
	f := startFerry(t, withListenerKeys(pki.config("", []string{"log"}, "[[plugin]]\nname = \"log\"\n"), "http2 = false", ""), nil)
	c := dialTLSListener(t, f.addr, pki, "h2", "http/1.1")
	if got := c.ConnectionState().NegotiatedProtocol; got != "http/1.1" {
		t.Errorf("ALPN picked %q, want http/1.1", got)
	}
}

// TestH2TLSClientCert: a client certificate's user is the user of every
// stream of the connection, without Proxy-Authorization; a connection
// without one must authenticate each stream.
func TestH2TLSClientCert(t *testing.T) {
	t.Parallel()
	pki := newTLSListener(t)
	echo := testkit.EchoServer(t)
	cert := pki.ClientCert(t, testkit.ClientID{CN: "Alice", Emails: []string{"alice@example.test"}})
	extra := fmt.Sprintf(", client_ca = %q, client_auth = \"optional\"", pki.ca)
	f := startFerry(t, pki.config(extra, []string{"auth", "acl", "log"}, clientCertTables), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	withCert := dialH2TLS(t, f.addr, pki, &cert)
	for range 3 {
		tun := mustH2Connect(t, ctx, withCert, echo)
		testkit.EchoCheck(t, tun)
		tun.Close()
	}
	for _, l := range accessLines(t, f, echo, 3) {
		if l.str("user") != "alice@example.test" {
			t.Errorf("access user %q, want the certificate's alice@example.test: %v", l.str("user"), l)
		}
	}
	anon := dialH2TLS(t, f.addr, pki, nil)
	_, resp, err := h2Connect(ctx, anon, echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("no certificate, no password: got %d, want 407", resp.StatusCode)
	}
}
