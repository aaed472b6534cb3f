//go:build linux

package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// debianPython is Debian's python3, which has requests and urllib3 1.26
// (python3-requests); the python3 first on PATH may lack them.
const debianPython = "/usr/bin/python3"

// requestsScript fetches each URL of argv[3:] with requests through the
// HTTPS proxy argv[1], trusting the CA bundle argv[2] for both the proxy
// and the targets, and prints each status and body, or the error's type.
//
// requests 2.28 verifies certificates for https:// URLs only, and so
// leaves the proxy of an http:// URL unverified (urllib3 warns); the
// adapter makes it verify the proxy there too.
const requestsScript = `
import sys, requests, requests.adapters
class VerifyProxy(requests.adapters.HTTPAdapter):
    def cert_verify(self, conn, url, verify, cert):
        super().cert_verify(conn, "https:" + url.split(":", 1)[1], verify, cert)
proxy, bundle = sys.argv[1], sys.argv[2]
s = requests.Session()
s.trust_env = False
s.mount("http://", VerifyProxy())
for url in sys.argv[3:]:
    try:
        r = s.get(url, proxies={"http": proxy, "https": proxy}, verify=bundle, timeout=10)
        print(r.status_code, r.text.strip())
    except Exception as e:
        print("error", type(e).__name__)
`

// TestTLSListenerPythonRequests drives a TLS listener with Python
// requests (urllib3 1.26 speaks TLS to an https:// proxy): a plain HTTP
// request forwarded and an HTTPS one through CONNECT, logged in with
// Basic auth inside TLS.
func TestTLSListenerPythonRequests(t *testing.T) {
	t.Parallel()
	testkit.NeedBin(t, debianPython)
	pki := newTLSListener(t)
	web := testkit.HTTPTarget(t)
	tlsWeb, webCA := testkit.TLSTarget(t)
	tables := "[[plugin]]\nname = \"auth\"\nusers = { carol = \"plain:secret\" }\n\n[[plugin]]\nname = \"log\"\n"
	f := startFerry(t, pki.config("", []string{"auth", "log"}, tables), nil)

	plainURL := "http://" + web.Listener.Addr().String() + "/"
	tlsURL := "https://" + tlsWeb.Listener.Addr().String() + "/"
	body := strings.TrimSpace(testkit.TargetBody)
	for _, tt := range []struct {
		name   string
		bundle []string
		want   string
	}{
		{"trusted", []string{pki.ca, webCA}, fmt.Sprintf("200 %s\n200 %s\n", body, body)},
		// Only the target's CA: the proxy's certificate must be refused.
		{"proxy not trusted", []string{webCA}, "error SSLError\nerror SSLError\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := runRequests(t, "https://carol:secret@"+f.addr, writeBundle(t, tt.bundle...), plainURL, tlsURL)
			if out != tt.want {
				t.Errorf("python requests printed %q, want %q", out, tt.want)
			}
		})
	}
	for _, proto := range []string{"http", "connect"} {
		f.waitLine(t, "access", func(l logLine) bool {
			return l.str("proto") == proto && l.str("user") == "carol"
		})
	}
}

// runRequests runs requestsScript and returns what it printed.
func runRequests(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, append([]string{"-c", requestsScript}, args...)...)
	cmd.Env = childEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python requests: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// writeBundle concatenates PEM files into one CA bundle.
func writeBundle(t *testing.T, files ...string) string {
	t.Helper()
	var pem []byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		pem = append(pem, b...)
	}
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(bundle, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}
