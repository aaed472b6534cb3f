//go:build linux

package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// mitmTarget is an HTTPS server with a certificate from its own test CA
// for name.test and bypass.test, speaking HTTP/1.1 and HTTP/2. It answers
// with the protocol it saw and a marker the replace plugin rewrites.
func mitmTarget(t *testing.T, dir string) (addr, caFile string) {
	t.Helper()
	caFile, certFile, keyFile := testkit.WritePKI(t, dir, "name.test", "bypass.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s over %s: SECRET-BODY\n", r.Host, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), caFile
}

// mitmFerry runs ferry with the mitm plugin (a CA made by `ferry ca
// init`), then replace, capture and log, trusting targetCA for targets.
// replace keeps its flush timer: with flush_after = "0s" a held tail waits
// for the next read, and a bypassed TLS handshake whose flight happened to
// end in a prefix of the pattern ("S", "SE"...) stalled until curl gave up.
func mitmFerry(t *testing.T, dir, targetCA string) (f *proc, ferryCA, pcap, admin string) {
	t.Helper()
	caCert, caKey := initFerryCA(t, dir)
	pcap = filepath.Join(dir, "mitm.pcapng")
	admin = freeAddr(t)
	f = startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[log]
format = "json"
level = "debug"

[[listener]]
name = "e2e"
listen = %q
plugins = ["mitm", "rewrite", "capture", "log"]
h2c = true

[[plugin]]
name = "mitm"
ca_cert = %q
ca_key = %q
intercept = ["name.test", "bypass.test"]
bypass = ["bypass.test"]
upstream_ca_file = %q

[[plugin]]
name = "rewrite"
type = "replace"
[[plugin.rule]]
direction = "down"
find = "SECRET-BODY"
replace = "REPLACED!!!"

[[plugin]]
name = "capture"
file = %q
max_bytes = "0"

[[plugin]]
name = "log"

[admin]
listen = %q
`, addr, caCert, caKey, targetCA, pcap, admin)
	}, nil)
	return f, caCert, pcap, admin
}

func TestMITM(t *testing.T) {
	needCurl(t)
	tsharkPath := needTshark(t)
	dir := t.TempDir()
	target, targetCA := mitmTarget(t, dir)
	_, port, _ := net.SplitHostPort(target)
	f, ferryCA, pcap, admin := mitmFerry(t, dir, targetCA)
	proxy := "http://" + f.addr
	// curl names the target in CONNECT as --connect-to says (the address:
	// ferry need not resolve name.test) and sends name.test as SNI.
	to := func(name string) []string {
		return []string{"--connect-to", name + ":" + port + ":127.0.0.1:" + port, "https://" + name + ":" + port + "/"}
	}

	t.Run("intercepted: plaintext to the hooks", func(t *testing.T) {
		body := curl(t, append([]string{"-sS", "--http1.1", "--proxy", proxy, "--cacert", ferryCA}, to("name.test")...)...)
		if !strings.Contains(body, "REPLACED!!!") || strings.Contains(body, "SECRET-BODY") {
			t.Fatalf("body %q: want the marker replaced by the plugin after mitm", body)
		}
		l := f.waitLine(t, "access", func(l logLine) bool { return l.str("mitm") == "name.test" })
		if l.str("reason") == "error" {
			t.Fatalf("access line: %v", l)
		}
	})

	t.Run("http2 both ways", func(t *testing.T) {
		body := curl(t, append([]string{"-sS", "--http2", "--proxy", proxy, "--cacert", ferryCA}, to("name.test")...)...)
		if !strings.Contains(body, "over HTTP/2.0") || !strings.Contains(body, "REPLACED!!!") {
			t.Fatalf("body %q: want HTTP/2.0 at the target and the marker replaced", body)
		}
	})

	t.Run("listed as intercepted on /channels", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := testkit.DialCONNECT(ctx, f.addr, target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		deadlineAfter(c, 30*time.Second)
		roots := x509.NewCertPool()
		pem, err := os.ReadFile(ferryCA)
		if err != nil || !roots.AppendCertsFromPEM(pem) {
			t.Fatalf("read ferry's CA %s: %v", ferryCA, err)
		}
		tc := tls.Client(c, &tls.Config{ServerName: "name.test", RootCAs: roots})
		if err := tc.HandshakeContext(ctx); err != nil {
			t.Fatalf("TLS through ferry: %v", err)
		}
		// The client's handshake ends before ferry's (TLS 1.3: the server
		// reads the client's Finished last), and the channel is listed
		// once ferry's has: wait for it. Tunnels of the subtests before
		// may still be closing, so look for this one among them.
		type channel struct {
			Target      string `json:"target"`
			Intercepted string `json:"intercepted"`
		}
		var chans []channel
		listed := func() bool {
			chans = nil
			resp, err := http.Get("http://" + admin + "/channels")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			if json.NewDecoder(resp.Body).Decode(&chans) != nil {
				return false
			}
			return slices.ContainsFunc(chans, func(ch channel) bool {
				return ch.Target == target && ch.Intercepted == "name.test"
			})
		}
		deadline := time.Now().Add(10 * time.Second)
		for !listed() {
			if time.Now().After(deadline) {
				t.Fatalf("/channels = %+v, want a channel to %s intercepted as name.test", chans, target)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("bypassed: relayed encrypted", func(t *testing.T) {
		// The client sees the target's own certificate.
		body := curl(t, append([]string{"-sS", "--http1.1", "--proxy", proxy, "--cacert", targetCA}, to("bypass.test")...)...)
		if !strings.Contains(body, "SECRET-BODY") {
			t.Fatalf("body %q: a bypassed tunnel must arrive unchanged", body)
		}
		f.waitLine(t, "access", func(l logLine) bool {
			return strings.HasSuffix(l.str("target"), ":"+port) && l.str("mitm") == "" && l.str("reason") != "error"
		})
	})

	t.Run("client without ferry's CA", func(t *testing.T) {
		res := curlMayFail(t, append([]string{"-sS", "--http1.1", "--proxy", proxy, "--cacert", targetCA}, to("name.test")...)...)
		if res.code == 0 {
			t.Fatalf("curl trusted a leaf from a CA it was not given: %q", res.stdout)
		}
		l := f.waitLine(t, "mitm: TLS with the client failed; tunnel closed", nil)
		if l.str("sni") != "name.test" || !strings.Contains(l.str("hint"), "ferry ca show") {
			t.Fatalf("log line %v: want the SNI and a hint", l)
		}
	})

	// The capture holds the plaintext of the intercepted tunnel and only
	// TLS records of the bypassed one.
	f.stop(t)
	if _, err := os.Stat(pcap); err != nil {
		t.Fatal(err)
	}
	http1 := tshark(t, tsharkPath, "-r", pcap, "-Y", "http.request", "-T", "fields", "-e", "http.request.method", "-e", "http.host")
	if !strings.Contains(http1, "GET\tname.test:"+port) {
		t.Errorf("capture shows no plaintext GET to name.test:\n%s", http1)
	}
	// On the way back hooks run in reverse order: capture, listed after
	// rewrite, sees the response before rewrite changes it.
	responses := tshark(t, tsharkPath, "-r", pcap, "-Y", `http.response && http.file_data contains "SECRET-BODY"`, "-T", "fields", "-e", "http.response.code")
	if !strings.Contains(responses, "200") {
		t.Errorf("capture shows no plaintext response:\n%s", responses)
	}
	sni := tshark(t, tsharkPath, "-r", pcap, "-Y", "tls.handshake.type == 1", "-T", "fields", "-e", "tls.handshake.extensions_server_name")
	if !strings.Contains(sni, "bypass.test") {
		t.Errorf("capture shows no TLS ClientHello for the bypassed tunnel:\n%s", sni)
	}
	if strings.Contains(sni, "name.test") {
		t.Errorf("capture shows TLS for an intercepted tunnel: the hooks should see plaintext:\n%s", sni)
	}
}

// A target whose certificate does not chain to the configured roots is
// refused, and the log says why.
func TestMITMUntrustedTarget(t *testing.T) {
	needCurl(t)
	dir := t.TempDir()
	for _, sub := range []string{"other", "f"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, otherCA := mitmTarget(t, filepath.Join(dir, "other"))
	target, _ := mitmTarget(t, dir) // its own CA, not otherCA
	_, port, _ := net.SplitHostPort(target)
	f, ferryCA, _, _ := mitmFerry(t, filepath.Join(dir, "f"), otherCA)
	res := curlMayFail(t, "-sS", "--proxy", "http://"+f.addr, "--cacert", ferryCA,
		"--connect-to", "name.test:"+port+":127.0.0.1:"+port, "https://name.test:"+port+"/")
	if res.code == 0 {
		t.Fatalf("curl got %q through a target ferry cannot verify", res.stdout)
	}
	l := f.waitLine(t, "mitm: TLS to the target failed; tunnel closed", nil)
	if !strings.Contains(l.str("error"), "certificate") {
		t.Fatalf("log line %v: want the certificate error", l)
	}
	f.waitLine(t, "access", func(l logLine) bool { return strings.Contains(l.str("error"), "mitm: TLS to") })
}

// initFerryCA makes a CA with `ferry ca init` under dir and returns its
// certificate's and key's paths.
func initFerryCA(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	out := filepath.Join(dir, "ca")
	if r := runFerry(t, dir, "ca", "init", "--out", out); r.code != 0 {
		t.Fatalf("ferry ca init: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	return filepath.Join(out, "ca.pem"), filepath.Join(out, "ca-key.pem")
}
