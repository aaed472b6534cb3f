//go:build linux

package test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestH2MITM: a CONNECT stream of an HTTP/2 connection is intercepted
// like an HTTP/1.1 tunnel: the mitm plugin terminates the client's TLS
// inside the stream with a certificate from ferry's CA, and the replace
// plugin sees (and rewrites) the plaintext.
func TestH2MITM(t *testing.T) {
	needTshark(t) // mitmFerry's capture plugin
	dir := t.TempDir()
	target, targetCA := mitmTarget(t, dir)
	f, ferryCA, _, _ := mitmFerry(t, dir, targetCA)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun := mustH2Connect(t, ctx, cc, target)
	defer tun.Close()
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(ferryCA)
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("read ferry's CA %s: %v", ferryCA, err)
	}
	tc := tls.Client(tun, &tls.Config{ServerName: "name.test", RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS through ferry's stream: %v", err)
	}
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: name.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "REPLACED!!!") {
		t.Errorf("body %q: want the marker replaced by the plugin after mitm", body)
	}
	l := f.waitLine(t, "access", func(l logLine) bool {
		return l.str("mitm") == "name.test" && l.str("parent") != "" && l.str("proto") == "connect"
	})
	// The request inside is a flow of its own, whose parent is the stream.
	fl := f.waitLine(t, "access", func(fl logLine) bool { return fl.str("parent") == l.str("id") })
	if fl.str("proto") != "http" || fl.str("url") != "https://name.test/" || fl.str("method") != "GET" {
		t.Errorf("flow line: %v, want GET https://name.test/", fl)
	}
}
