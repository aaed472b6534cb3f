package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
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

// writeCert writes a self-signed certificate named cn and its key to
// certPath and keyPath.
func writeCert(t *testing.T, certPath, keyPath, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

// servedCN is the common name of the certificate front hands out at now.
func servedCN(t *testing.T, front *tlsFront, now time.Time) string {
	t.Helper()
	c := front.config(now)
	leaf, err := x509.ParseCertificate(c.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

// TestTLSFrontReload: the configuration follows the files, checked at
// most once a tlsCheckEvery; a pair that does not load keeps the last
// good one and warns once per failing state.
func TestTLSFrontReload(t *testing.T) {
	dir := t.TempDir()
	set := &config.ListenerTLS{CertPath: filepath.Join(dir, "c.pem"), KeyPath: filepath.Join(dir, "k.pem")}
	writeCert(t, set.CertPath, set.KeyPath, "one")
	var logs bytes.Buffer
	front := newTLSFront(set, listenerALPN(false), zerolog.New(&logs))
	now := time.Now()
	if got := servedCN(t, front, now); got != "one" {
		t.Fatalf("served %q, want one", got)
	}
	// Modification times of a rewrite within the same tick must differ.
	later := func(path string, d time.Duration) {
		os.Chtimes(path, time.Now().Add(d), time.Now().Add(d))
	}
	writeCert(t, set.CertPath, set.KeyPath, "two")
	later(set.CertPath, time.Minute)
	if got := servedCN(t, front, now.Add(tlsCheckEvery/2)); got != "one" {
		t.Errorf("served %q before a check was due, want one", got)
	}
	now = now.Add(2 * tlsCheckEvery)
	if got := servedCN(t, front, now); got != "two" {
		t.Errorf("served %q after the files changed, want two", got)
	}
	os.WriteFile(set.KeyPath, []byte("not a key"), 0o600)
	later(set.KeyPath, 2*time.Minute)
	for i := range 3 {
		now = now.Add(2 * tlsCheckEvery)
		if got := servedCN(t, front, now); got != "two" {
			t.Errorf("check %d: served %q with a broken key, want the last good one", i, got)
		}
	}
	if n := strings.Count(logs.String(), "keeping the previous certificate"); n != 1 {
		t.Errorf("%d warnings for one broken state, want 1:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "certificate reloaded"); n != 1 {
		t.Errorf("%d reload lines, want 1:\n%s", n, logs.String())
	}
}
