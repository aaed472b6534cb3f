//go:build linux

package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"ferry/test/testkit"
)

// servedBy reports whether addr completes a handshake for a client that
// trusts only p's CA: whether it serves p's certificate.
func servedBy(addr string, p tlsListener) bool {
	c, err := dialTLS(addr, p.clientTLS(nil))
	if err == nil {
		c.Close()
	}
	return err == nil
}

// replaceFile writes content to path through a rename, as certificate
// tools do, so a reader never sees half a file.
func replaceFile(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestTLSCertReload: a TLS listener picks up a renewed certificate when
// its files change and when a reload names other files; a file that does
// not load keeps the certificate served, with a warning, and a reload
// naming a missing file fails whole. A tunnel opened before all of it
// carries on.
func TestTLSCertReload(t *testing.T) {
	t.Parallel()
	a := newTLSListener(t)
	echo := testkit.EchoServer(t)
	path := filepath.Join(t.TempDir(), "ferry.toml")
	conf := func(addr, cert, key string) string {
		return fmt.Sprintf("[log]\nformat = \"json\"\n[[listener]]\nname = \"e2e\"\nlisten = %q\ntls = { cert = %q, key = %q }\n",
			addr, cert, key)
	}
	f := startFerry(t, nil, func(addr string) []string {
		writeFile(t, path, conf(addr, a.cert, a.key))
		return []string{"-c", path}
	})
	old := dialTLSListener(t, f.addr, a)
	if rep, err := testkit.SOCKS5Request(old, echo); err != nil || rep != 0 {
		t.Fatalf("SOCKS5 over TLS: reply %#x, %v", rep, err)
	}
	testkit.EchoCheck(t, old)

	// A broken certificate file: the old certificate stays.
	replaceFile(t, a.cert, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"))
	waitFor(t, func() bool {
		if !servedBy(f.addr, a) {
			t.Fatal("the listener stopped serving its certificate when the file broke")
		}
		return len(f.lines("tls: keeping the previous certificate", nil)) > 0
	})

	// A renewed pair written over the same paths is served.
	b := testkit.NewPKI(t)
	replaceFile(t, a.key, b.KeyPEM)
	replaceFile(t, a.cert, b.CertPEM)
	bl := tlsListener{PKI: b}
	waitFor(t, func() bool { return servedBy(f.addr, bl) })
	f.waitLine(t, "tls: certificate reloaded", nil)
	// One warning per failing state: the broken file, and perhaps the
	// new key beside the old certificate if a check fell between the
	// two renames.
	if n := len(f.lines("tls: keeping the previous certificate", nil)); n > 2 {
		t.Errorf("%d warnings for the broken files, want at most 2 (one per failing state)", n)
	}
	testkit.EchoCheck(t, old)

	// A reload that names other files serves them at once.
	c := newTLSListener(t)
	writeFile(t, path, conf(f.addr, c.cert, c.key))
	f.send(t, syscall.SIGHUP)
	f.waitLine(t, "configuration reloaded", nil)
	if !servedBy(f.addr, c) {
		t.Fatal("after the reload the listener does not serve the new files' certificate")
	}
	// One that names a missing file fails, positioned, and changes nothing.
	writeFile(t, path, conf(f.addr, filepath.Join(c.dir, "missing.pem"), c.key))
	f.send(t, syscall.SIGHUP)
	l := f.waitLine(t, "reload failed: the running configuration stays", nil)
	if e := l.str("error"); !strings.Contains(e, "listener[0].tls.cert") || !strings.Contains(e, "missing.pem") {
		t.Errorf("reload error %q, want it to name listener[0].tls.cert and the file", e)
	}
	if !servedBy(f.addr, c) {
		t.Fatal("a failed reload changed the certificate served")
	}
	testkit.EchoCheck(t, old)
}
