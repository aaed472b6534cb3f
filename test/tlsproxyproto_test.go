//go:build linux

package test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// tlsBehindLB is a TLS listener that requires a PROXY header from
// 127.0.0.1, which comes before the TLS handshake.
func tlsBehindLB(p tlsListener) func(addr string) string {
	return withListenerKeys(p.config("", []string{"log"}, "[[plugin]]\nname = \"log\"\n"),
		"proxy_protocol = \"required\"\ntrusted_proxies = [\"127.0.0.1/32\"]\nhandshake_timeout = \"2s\"", "")
}

// TestTLSListenerBehindHAProxy: haproxy passes TLS through (mode tcp) with
// a PROXY v2 header first; curl -x https:// through it reaches the
// target, and the access line names curl's address.
func TestTLSListenerBehindHAProxy(t *testing.T) {
	t.Parallel()
	haproxy := testkit.NeedBin(t, "haproxy")
	needCurl(t)
	pki := newTLSListener(t)
	web := testkit.HTTPTarget(t)
	f := startFerry(t, tlsBehindLB(pki), nil)
	front := startHAProxyFront(t, haproxy, f.addr, "send-proxy-v2")
	webAddr := web.Listener.Addr().String()
	for _, args := range [][]string{{"http://" + webAddr + "/"}, {"-p", "http://" + webAddr + "/"}} {
		body := curl(t, append([]string{"--interface", "127.0.0.5", "-x", "https://" + front, "--proxy-cacert", pki.ca}, args...)...)
		if body != testkit.TargetBody {
			t.Fatalf("curl %q: body %q", args, body)
		}
	}
	waitFor(t, func() bool { return len(f.lines("access", byTarget(webAddr))) == 2 })
	for _, l := range f.lines("access", byTarget(webAddr)) {
		if c := l.str("client"); !strings.HasPrefix(c, "127.0.0.5:") {
			t.Errorf("access client %q, want 127.0.0.5:… from the PROXY header", c)
		}
	}
}

// headerFirst writes hdr ahead of the first write on the connection, so
// the PROXY header and the ClientHello leave in one segment and ferry's
// header reader holds the ClientHello's start when the TLS handshake
// begins.
type headerFirst struct {
	net.Conn
	hdr []byte
}

func (c *headerFirst) Write(p []byte) (int, error) {
	if c.hdr != nil {
		b := append(c.hdr, p...)
		c.hdr = nil
		n, err := c.Conn.Write(b)
		return max(n-(len(b)-len(p)), 0), err
	}
	return c.Conn.Write(p)
}

// TestTLSListenerProxyHeaderSameSegment: the PROXY header and the
// ClientHello in one write; and a TLS listener requiring the header
// refuses a ClientHello without one.
func TestTLSListenerProxyHeaderSameSegment(t *testing.T) {
	t.Parallel()
	pki := newTLSListener(t)
	echo := testkit.EchoServer(t)
	f := startFerry(t, tlsBehindLB(pki), nil)
	raw, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := []byte("PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n")
	cfg := pki.clientTLS(nil)
	cfg.ServerName = "127.0.0.1"
	c := tls.Client(&headerFirst{Conn: raw, hdr: hdr}, cfg)
	if rep, err := testkit.SOCKS5Request(c, echo); err != nil || rep != 0 {
		t.Fatalf("SOCKS5 over TLS after a PROXY header: reply %#x, %v", rep, err)
	}
	testkit.EchoCheck(t, c)
	c.Close()
	if l := f.waitLine(t, "access", byTarget(echo)); l.str("client") != "192.0.2.7:40000" {
		t.Errorf("access client %q, want 192.0.2.7:40000", l.str("client"))
	}
	if c, err := dialTLS(f.addr, pki.clientTLS(nil)); err == nil {
		c.Close()
		t.Error("a handshake without the required PROXY header succeeded")
	}
}
