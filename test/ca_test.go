//go:build linux

package test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ferry/plugins/mitm"
)

var caFingerprintLine = regexp.MustCompile(`(?m)^SHA-256 fingerprint: *((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$`)

// caFingerprint is the fingerprint ferry ca init or show printed.
func caFingerprint(t *testing.T, stdout string) string {
	t.Helper()
	m := caFingerprintLine.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no SHA-256 fingerprint line in:\n%s", stdout)
	}
	return m[1]
}

// TestCAInitShow runs ferry ca init and ferry ca show as a user would,
// and checks the files they leave with openssl and with the mitm
// package itself.
func TestCAInitShow(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca") // ferry creates it
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")

	res := runFerry(t, "", "ca", "init", "--out", dir, "--name", "ferry e2e CA", "--days", "30")
	if res.code != 0 {
		t.Fatalf("ferry ca init exited %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	fp := caFingerprint(t, res.stdout)
	for _, p := range []string{certPath, keyPath} {
		if !strings.Contains(res.stdout, p) {
			t.Errorf("ferry ca init output does not name %s:\n%s", p, res.stdout)
		}
	}
	modes := []struct {
		path string
		want os.FileMode
	}{
		{path: dir, want: 0o700 | os.ModeDir},
		{path: keyPath, want: 0o600},
		{path: certPath, want: 0o644},
	}
	for _, m := range modes {
		st, err := os.Stat(m.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode() & (os.ModePerm | os.ModeDir); got != m.want {
			t.Errorf("%s: mode %v, want %v", m.path, got, m.want)
		}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("second init refused", func(t *testing.T) {
		res := runFerry(t, "", "ca", "init", "--out", dir)
		if res.code == 0 {
			t.Fatalf("second ferry ca init exited 0, want an error; stdout:\n%s", res.stdout)
		}
		if !strings.Contains(res.stderr, "--force") {
			t.Errorf("refusal does not mention --force:\n%s", res.stderr)
		}
		for _, f := range []struct {
			path string
			want []byte
		}{{certPath, certPEM}, {keyPath, keyPEM}} {
			got, err := os.ReadFile(f.path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, f.want) {
				t.Errorf("%s changed by a refused init", f.path)
			}
		}
	})

	t.Run("show", func(t *testing.T) {
		res := runFerry(t, "", "ca", "show", "--dir", dir)
		if res.code != 0 {
			t.Fatalf("ferry ca show exited %d, want 0; stderr:\n%s", res.code, res.stderr)
		}
		if got := caFingerprint(t, res.stdout); got != fp {
			t.Errorf("show fingerprint %s, want init's %s", got, fp)
		}
		for _, want := range []string{"CN=ferry e2e CA", "update-ca-certificates", "--cacert", "Firefox", "certutil", "secret"} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("ferry ca show output lacks %q:\n%s", want, res.stdout)
			}
		}
		// --cert overrides --dir.
		res = runFerry(t, "", "ca", "show", "--dir", t.TempDir(), "--cert", certPath)
		if res.code != 0 || caFingerprint(t, res.stdout) != fp {
			t.Errorf("ferry ca show --cert: exit %d, output:\n%s%s", res.code, res.stdout, res.stderr)
		}
		// The default directory is the current one.
		res = runFerry(t, dir, "ca", "show")
		if res.code != 0 || caFingerprint(t, res.stdout) != fp {
			t.Errorf("ferry ca show in %s: exit %d, output:\n%s%s", dir, res.code, res.stdout, res.stderr)
		}
	})

	t.Run("openssl fingerprint", func(t *testing.T) {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Skip("openssl is not installed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", certPath).Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		// "sha256 Fingerprint=AB:CD:..." (openssl 3) or "SHA256 Fingerprint=..."
		_, got, ok := strings.Cut(strings.TrimSpace(string(out)), "=")
		if !ok || got != fp {
			t.Errorf("openssl says %q, want fingerprint %s", out, fp)
		}
	})

	t.Run("leaf verifies", func(t *testing.T) {
		ca, err := mitm.LoadCA(certPath, keyPath, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ca.Fingerprint() != fp {
			t.Errorf("LoadCA fingerprint %s, want %s", ca.Fingerprint(), fp)
		}
		leaf, err := ca.Leaf("intercepted.example.test")
		if err != nil {
			t.Fatal(err)
		}
		// Trust the file on disk, as a client would, not the parsed CA.
		b, _ := pem.Decode(certPEM)
		root, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(root)
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "intercepted.example.test", Roots: roots}); err != nil {
			t.Errorf("leaf does not verify against %s: %v", certPath, err)
		}
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example.test", Roots: roots}); err == nil {
			t.Error("leaf for intercepted.example.test verifies for other.example.test")
		}
	})

	// Last: it replaces the CA the subtests above read.
	t.Run("init --force replaces", func(t *testing.T) {
		if err := os.Chmod(keyPath, 0o644); err != nil { // as if someone loosened it
			t.Fatal(err)
		}
		res := runFerry(t, "", "ca", "init", "--out", dir, "--force")
		if res.code != 0 {
			t.Fatalf("ferry ca init --force exited %d, want 0; stderr:\n%s", res.code, res.stderr)
		}
		if got := caFingerprint(t, res.stdout); got == fp {
			t.Error("init --force kept the old CA")
		}
		st, err := os.Stat(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("key mode after --force: %v, want 0600", st.Mode().Perm())
		}
		if _, err := mitm.LoadCA(certPath, keyPath, 0); err != nil {
			t.Errorf("CA written with --force: %v", err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 2 {
			t.Errorf("%s holds %d files after --force, want 2 (no temporary files left)", dir, len(entries))
		}
	})
}

func TestCAUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{name: "init without --out", args: []string{"ca", "init"}, want: "out"},
		{name: "init zero days", args: []string{"ca", "init", "--out", filepath.Join(dir, "a"), "--days", "0"}, want: "--days"},
		{name: "show missing file", args: []string{"ca", "show", "--dir", dir}, want: filepath.Join(dir, "ca.pem")},
		{name: "show not a certificate", args: []string{"ca", "show", "--cert", "main_test.go"}, want: "main_test.go"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runFerry(t, "", tt.args...)
			if res.code == 0 {
				t.Fatalf("ferry %q exited 0, want an error; stdout:\n%s", tt.args, res.stdout)
			}
			if !strings.Contains(res.stderr, tt.want) {
				t.Errorf("ferry %q: stderr lacks %q:\n%s", tt.args, tt.want, res.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("ferry ca init --days 0 created its directory")
	}
}
