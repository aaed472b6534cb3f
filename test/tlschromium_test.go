//go:build linux

package test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"ferry/test/testkit"
)

// spkiHash is the base64 SHA-256 of the public key of the PEM
// certificate in file, as Chromium's --ignore-certificate-errors-spki-list
// takes it.
func spkiHash(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestTLSListenerChromium: headless Chromium with an https:// proxy
// fetches a page through a TLS listener, trusting the listener's key
// alone (--ignore-certificate-errors-spki-list).
func TestTLSListenerChromium(t *testing.T) {
	t.Parallel()
	chromium := testkit.NeedBin(t, "chromium")
	pki := newTLSListener(t)
	web := testkit.HTTPTarget(t)
	f := startFerry(t, pki.config("", []string{"chromium-guard", "log"}, "[[plugin]]\nname = \"log\"\n"+chromiumACL), nil)
	url := "http://" + web.Listener.Addr().String() + "/"
	out := runChromium(t, chromium, f.addr, pki.cert, url)
	defer noLookups(t, f)
	if !strings.Contains(string(out), strings.TrimSpace(testkit.TargetBody)) {
		t.Fatalf("chromium's page %q, want the target's body", out)
	}
	f.waitLine(t, "access", byTarget(web.Listener.Addr().String()))
}
