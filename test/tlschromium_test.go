package test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

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
	chromium := needPeer(t, "chromium")
	pki := newTLSListener(t)
	web := testkit.HTTPTarget(t)
	f := startFerry(t, pki.config("", []string{"log"}, "[[plugin]]\nname = \"log\"\n"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := "http://" + web.Listener.Addr().String() + "/"
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--proxy-server=https://"+f.addr, "--proxy-bypass-list=<-loopback>",
		"--ignore-certificate-errors-spki-list="+spkiHash(t, pki.cert), "--dump-dom", url)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), strings.TrimSpace(testkit.TargetBody)) {
		t.Fatalf("chromium's page %q, want the target's body", out)
	}
	f.waitLine(t, "access", byTarget(web.Listener.Addr().String()))
}
