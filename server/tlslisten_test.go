package server

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/test/testkit"
)

func TestCertIdentity(t *testing.T) {
	uri, _ := url.Parse("spiffe://example.test/ns/web/sa/api")
	full := &x509.Certificate{Subject: pkix.Name{CommonName: "Alice"},
		EmailAddresses: []string{"alice@example.test", "a@example.test"}, URIs: []*url.URL{uri}}
	for _, tt := range []struct {
		name    string
		cert    *x509.Certificate
		sources []string
		want    string
	}{
		{"email first", full, config.DefaultClientIdentity(), "alice@example.test"},
		{"uri first", full, []string{"san-uri", "cn"}, "spiffe://example.test/ns/web/sa/api"},
		{"cn only", full, []string{"cn"}, "Alice"},
		{"falls through", &x509.Certificate{Subject: pkix.Name{CommonName: "bob"}}, config.DefaultClientIdentity(), "bob"},
		{"none", &x509.Certificate{}, config.DefaultClientIdentity(), ""},
		{"source absent", &x509.Certificate{Subject: pkix.Name{CommonName: "bob"}}, []string{"san-email"}, ""},
		{"control character", &x509.Certificate{Subject: pkix.Name{CommonName: "eve\r\nroot"}}, []string{"cn"}, ""},
		{"bad utf-8", &x509.Certificate{Subject: pkix.Name{CommonName: "\xff"}}, []string{"cn"}, ""},
		{"too long", &x509.Certificate{Subject: pkix.Name{CommonName: strings.Repeat("x", maxIdentity+1)}}, []string{"cn"}, ""},
		{"longest", &x509.Certificate{Subject: pkix.Name{CommonName: strings.Repeat("x", maxIdentity)}}, []string{"cn"}, strings.Repeat("x", maxIdentity)},
		// A bad first name is no name: the next source is not tried.
		{"bad name stops", &x509.Certificate{Subject: pkix.Name{CommonName: "carol"}, EmailAddresses: []string{"x\x00@example.test"}},
			config.DefaultClientIdentity(), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := certIdentity(tt.cert, tt.sources); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLooksLikeHTTP(t *testing.T) {
	for _, tt := range []struct {
		hdr  string
		want bool
	}{
		{"GET h", true}, {"GET /", true}, {"POST ", true}, {"CONNE", true}, {"HEAD ", true}, {"OPTIO", true},
		{"\x16\x03\x01\x02\x00", false}, {"\x05\x01\x00\x00\x00", false}, {"ab cd", false}, {"GE /x", false}, {"G ET ", false},
	} {
		if got := looksLikeHTTP([]byte(tt.hdr)); got != tt.want {
			t.Errorf("looksLikeHTTP(%q) = %v, want %v", tt.hdr, got, tt.want)
		}
	}
}

// writePKI writes a fresh testkit PKI's certificate and key to certPath
// and keyPath, and returns the certificate's DER.
func writePKI(t *testing.T, certPath, keyPath string) []byte {
	t.Helper()
	p := testkit.NewPKI(t)
	if err := os.WriteFile(keyPath, p.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, p.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p.ServerTLS().Certificates[0].Certificate[0]
}

// served is the DER of the certificate front hands out at now.
func served(front *tlsFront, now time.Time) []byte {
	return front.config(now).Certificates[0].Certificate[0]
}

// TestTLSFrontReload: the configuration follows the files, checked at
// most once a tlsCheckEvery; a pair that does not load keeps the last
// good one and warns once per failing state.
func TestTLSFrontReload(t *testing.T) {
	dir := t.TempDir()
	set := &config.ListenerTLS{CertPath: filepath.Join(dir, "c.pem"), KeyPath: filepath.Join(dir, "k.pem")}
	one := writePKI(t, set.CertPath, set.KeyPath)
	var logs bytes.Buffer
	front := newTLSFront(set, listenerALPN(false), zerolog.New(&logs))
	now := time.Now()
	if !bytes.Equal(served(front, now), one) {
		t.Fatal("not serving the certificate of the files")
	}
	// Modification times of a rewrite within the same tick must differ.
	later := func(path string, d time.Duration) {
		os.Chtimes(path, time.Now().Add(d), time.Now().Add(d))
	}
	two := writePKI(t, set.CertPath, set.KeyPath)
	later(set.CertPath, time.Minute)
	if !bytes.Equal(served(front, now.Add(tlsCheckEvery/2)), one) {
		t.Error("a new certificate served before a check was due")
	}
	now = now.Add(2 * tlsCheckEvery)
	if !bytes.Equal(served(front, now), two) {
		t.Error("the old certificate served after the files changed")
	}
	os.WriteFile(set.KeyPath, []byte("not a key"), 0o600)
	later(set.KeyPath, 2*time.Minute)
	for i := range 3 {
		now = now.Add(2 * tlsCheckEvery)
		if !bytes.Equal(served(front, now), two) {
			t.Errorf("check %d: with a broken key, not the last good certificate", i)
		}
	}
	if n := strings.Count(logs.String(), "keeping the previous certificate"); n != 1 {
		t.Errorf("%d warnings for one broken state, want 1:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "certificate reloaded"); n != 1 {
		t.Errorf("%d reload lines, want 1:\n%s", n, logs.String())
	}
}
