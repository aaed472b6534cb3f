//go:build linux

package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"

	"golang.org/x/net/proxy"

	"ferry/test/testkit"
)

// clientCertTables are the plugins of the client certificate tests: a
// password user, an acl that refuses the certificate user bob, the log.
const clientCertTables = `[[plugin]]
name = "auth"
users = { carol = "plain:secret" }

[[plugin]]
name = "acl"
default = "allow"
rule = [{ action = "deny", user = ["bob"] }]

[[plugin]]
name = "log"

[[route]]
user = ["dave"]
reject = true
`

// TestTLSClientCertCurl: with client_auth = "optional" and an auth plugin,
// a client certificate is the user (no password asked), as the access
// log, an acl rule and a route see it; a client without one logs in with
// Basic auth inside TLS.
func TestTLSClientCertCurl(t *testing.T) {
	t.Parallel()
	needCurl(t)
	pki := newTLSListener(t)
	web := testkit.HTTPTarget(t)
	webAddr := web.Listener.Addr().String()
	certs := map[string][]string{}
	for name, id := range map[string]testkit.ClientID{
		"alice": {CN: "Alice", Emails: []string{"alice@example.test"}},
		"bob":   {CN: "bob"},
		"dave":  {CN: "dave"},
		"svc":   {CN: "ignored", URIs: []string{"spiffe://example.test/ns/web/sa/api"}},
	} {
		cert, key := pki.WriteClientCert(t, pki.dir, name, id)
		certs[name] = []string{"--proxy-cert", cert, "--proxy-key", key}
	}
	extra := fmt.Sprintf(", client_ca = %q, client_auth = \"optional\"", pki.ca)
	f := startFerry(t, pki.config(extra, []string{"auth", "acl", "log"}, clientCertTables), nil)
	plain := []string{"-o", "/dev/null", "-w", "%{http_code}", "http://" + webAddr + "/"}
	connect := []string{"-p", "-o", "/dev/null", "-w", "%{http_connect}", "http://" + webAddr + "/"}
	tests := []struct {
		name     string
		client   []string // curl's credentials
		wantCode string
		wantUser string
	}{
		{"email SAN", certs["alice"], "200", "alice@example.test"},
		{"URI SAN", certs["svc"], "200", "spiffe://example.test/ns/web/sa/api"},
		{"CN, acl denies", certs["bob"], "403", "bob"},
		{"CN, route rejects", certs["dave"], "403", "dave"},
		{"certificate wins over a wrong password", append([]string{"-U", "carol:wrong"}, certs["alice"]...), "200", "alice@example.test"},
		{"basic auth inside TLS", []string{"-U", "carol:secret"}, "200", "carol"},
		{"no certificate, no password", nil, "407", ""},
	}
	for i, tt := range tests {
		for _, mode := range []struct {
			proto string
			args  []string
		}{{"http", plain}, {"connect", connect}} {
			t.Run(tt.name+"/"+mode.proto, func(t *testing.T) {
				args := append([]string{"-x", "https://" + f.addr, "--proxy-cacert", pki.ca,
					"-H", fmt.Sprintf("X-Case: %d", i)}, tt.client...)
				res := curlMayFail(t, append(args, mode.args...)...)
				if res.stdout != tt.wantCode {
					t.Fatalf("status %q, want %s (curl exit %d: %s)", res.stdout, tt.wantCode, res.code, res.stderr)
				}
				if tt.wantUser == "" {
					return
				}
				l := f.waitLine(t, "access", func(l logLine) bool {
					return l.str("user") == tt.wantUser && l.str("proto") == mode.proto
				})
				if st, _ := l.num("status"); fmt.Sprint(st) != tt.wantCode {
					t.Errorf("access status %d, want %s", st, tt.wantCode)
				}
			})
		}
	}
}

// TestTLSClientCertSOCKS5: over a TLS listener with an auth plugin, a
// SOCKS5 client with a certificate needs no password; one without logs
// in with RFC 1929.
func TestTLSClientCertSOCKS5(t *testing.T) {
	t.Parallel()
	pki := newTLSListener(t)
	echo := testkit.EchoServer(t)
	extra := fmt.Sprintf(", client_ca = %q, client_auth = \"optional\"", pki.ca)
	f := startFerry(t, pki.config(extra, []string{"auth", "acl", "log"}, clientCertTables), nil)
	alice := pki.ClientCert(t, testkit.ClientID{Emails: []string{"alice@example.test"}})

	c := dialTLSListenerCert(t, f.addr, pki, &alice)
	if rep, err := testkit.SOCKS5Request(c, echo); err != nil || rep != 0 {
		t.Fatalf("SOCKS5 with a certificate: reply %#x, %v; want success without a password", rep, err)
	}
	testkit.EchoCheck(t, c)
	c.Close() // the access line comes when the tunnel ends
	f.waitLine(t, "access", func(l logLine) bool { return l.str("user") == "alice@example.test" })

	// Without a certificate: no-auth is refused, RFC 1929 works.
	c = dialTLSListenerCert(t, f.addr, pki, nil)
	if _, err := testkit.SOCKS5Request(c, echo); err == nil || !strings.Contains(err.Error(), "05 ff") {
		t.Fatalf("SOCKS5 no-auth without a certificate: %v, want the greeting refused (05 ff)", err)
	}
	c = dialTLSListenerCert(t, f.addr, pki, nil)
	socksLogin(t, c, echo, "carol", "secret")
	testkit.EchoCheck(t, c)
	c.Close()
	f.waitLine(t, "access", func(l logLine) bool { return l.str("user") == "carol" && l.str("proto") == "socks5" })
}

// socksLogin runs a SOCKS5 CONNECT to target with RFC 1929 login over c.
func socksLogin(t *testing.T, c net.Conn, target, user, pass string) {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", c.RemoteAddr().String(), &proxy.Auth{User: user, Password: pass}, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	wc := d.(interface {
		DialWithConn(ctx context.Context, c net.Conn, network, address string) (net.Addr, error)
	})
	if _, err := wc.DialWithConn(context.Background(), c, "tcp", target); err != nil {
		t.Fatalf("SOCKS5 login as %s: %v", user, err)
	}
}

// TestTLSClientCertRequire: with client_auth = "require" a client without
// a certificate, with one from another CA, or with one that names nobody
// fails the handshake; curl with a good one gets through.
func TestTLSClientCertRequire(t *testing.T) {
	t.Parallel()
	needCurl(t)
	pki := newTLSListener(t)
	web := testkit.HTTPTarget(t)
	extra := fmt.Sprintf(", client_ca = %q, client_identity = [\"cn\"]", pki.ca)
	f := startFerry(t, pki.config(extra, []string{"log"}, "[[plugin]]\nname = \"log\"\n"), nil)
	other := testkit.NewPKI(t)
	for _, tt := range []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{
		{"none", nil, false},
		{"other CA", ptr(other.ClientCert(t, testkit.ClientID{CN: "mallory"})), false},
		{"no CN", ptr(pki.ClientCert(t, testkit.ClientID{Emails: []string{"x@example.test"}})), false},
		{"control characters", ptr(pki.ClientCert(t, testkit.ClientID{CN: "eve\n{\"user\":\"root\"}"})), false},
		{"long CN", ptr(pki.ClientCert(t, testkit.ClientID{CN: strings.Repeat("x", 300)})), false},
		{"good", ptr(pki.ClientCert(t, testkit.ClientID{CN: "frank"})), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tryTLSHandshake(f.addr, pki, tt.cert)
			if ok := err == nil; ok != tt.ok {
				t.Fatalf("handshake error %v, want success %v", err, tt.ok)
			}
		})
	}
	cert, key := pki.WriteClientCert(t, pki.dir, "erin", testkit.ClientID{CN: "erin"})
	curl(t, "-x", "https://"+f.addr, "--proxy-cacert", pki.ca, "--proxy-cert", cert, "--proxy-key", key,
		"http://"+web.Listener.Addr().String()+"/")
	f.waitLine(t, "access", func(l logLine) bool { return l.str("user") == "erin" })
}

func ptr[T any](v T) *T { return &v }

// TestTLSClientCertConnlimit: connlimit's per_user counts a certificate
// user's channels as it counts a password user's.
func TestTLSClientCertConnlimit(t *testing.T) {
	t.Parallel()
	pki := newTLSListener(t)
	echo := testkit.EchoServer(t)
	extra := fmt.Sprintf(", client_ca = %q", pki.ca)
	tables := "[[plugin]]\nname = \"connlimit\"\nper_user = 1\n\n[[plugin]]\nname = \"log\"\n"
	f := startFerry(t, pki.config(extra, []string{"connlimit", "log"}, tables), nil)
	alice := pki.ClientCert(t, testkit.ClientID{CN: "alice"})
	bob := pki.ClientCert(t, testkit.ClientID{CN: "bob"})
	first := dialTLSListenerCert(t, f.addr, pki, &alice)
	if rep, err := testkit.SOCKS5Request(first, echo); err != nil || rep != 0 {
		t.Fatalf("alice's first tunnel: reply %#x, %v", rep, err)
	}
	testkit.EchoCheck(t, first)
	second := dialTLSListenerCert(t, f.addr, pki, &alice)
	if rep, err := testkit.SOCKS5Request(second, echo); err != nil || rep == 0 {
		t.Fatalf("alice's second tunnel: reply %#x, %v; want it refused by per_user = 1", rep, err)
	}
	other := dialTLSListenerCert(t, f.addr, pki, &bob)
	if rep, err := testkit.SOCKS5Request(other, echo); err != nil || rep != 0 {
		t.Fatalf("bob's tunnel: reply %#x, %v; want it open", rep, err)
	}
	testkit.EchoCheck(t, other)
}
