package config

import (
	"ferry/test/testkit"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writePair writes a testkit PKI's certificate and key in dir as
// name.pem and name-key.pem, and its CA as name-ca.pem.
func writePair(t *testing.T, dir, name string) {
	t.Helper()
	p := testkit.NewPKI(t)
	for file, b := range map[string][]byte{name + ".pem": p.CertPEM, name + "-key.pem": p.KeyPEM, name + "-ca.pem": p.CAPEM} {
		if err := os.WriteFile(filepath.Join(dir, file), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListenerTLS(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "a")
	writePair(t, dir, "b")
	file := filepath.Join(dir, "ferry.toml")
	head := "[[listener]]\nlisten = \"127.0.0.1:8443\"\n"
	for _, tt := range []struct {
		name, tls string
		wantErrs  []string
	}{
		{name: "ok", tls: `tls = { cert = "a.pem", key = "a-key.pem" }`},
		{name: "client ca", tls: `tls = { cert = "a.pem", key = "a-key.pem", client_ca = "b-ca.pem", client_auth = "optional", client_identity = ["cn"] }`},
		{name: "no key", tls: `tls = { cert = "a.pem" }`,
			wantErrs: []string{"ferry.toml:3:1: listener[0].tls.key: missing"}},
		{name: "no cert", tls: `tls = { key = "a-key.pem" }`,
			wantErrs: []string{"listener[0].tls.cert: missing"}},
		{name: "missing cert file", tls: `tls = { cert = "nope.pem", key = "a-key.pem" }`,
			wantErrs: []string{"ferry.toml:3:9: listener[0].tls.cert:", "nope.pem"}},
		{name: "not pem", tls: `tls = { cert = "ferry.toml", key = "a-key.pem" }`,
			wantErrs: []string{"listener[0].tls.cert:", "no PEM certificate"}},
		{name: "unreadable key", tls: `tls = { cert = "a.pem", key = "/dev/zero" }`,
			wantErrs: []string{"listener[0].tls.key:", "not a regular file"}},
		{name: "mismatch", tls: `tls = { cert = "a.pem", key = "b-key.pem" }`,
			wantErrs: []string{"listener[0].tls.key:", "does not match"}},
		{name: "client_auth without ca", tls: `tls = { cert = "a.pem", key = "a-key.pem", client_auth = "require" }`,
			wantErrs: []string{"listener[0].tls.client_auth: only with client_ca"}},
		{name: "bad values", tls: `tls = { cert = "a.pem", key = "a-key.pem", client_ca = "a-key.pem", client_auth = "maybe", client_identity = ["dns"] }`,
			wantErrs: []string{"listener[0].tls.client_ca:", `tls.client_auth: unknown value "maybe"`,
				`listener[0].tls.client_identity[0]: unknown value "dns"`}},
		{name: "unknown key", tls: `tls = { cert = "a.pem", key = "a-key.pem", ciphers = [] }`,
			wantErrs: []string{"listener[0].tls.ciphers: unknown key"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(file, []byte(head+tt.tls+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(file)
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if lt := c.Listeners[0].TLS; lt.Certificate == nil || (lt.ClientCA != "") != (lt.ClientCAs != nil) {
					t.Fatalf("got %+v, want the files loaded", lt)
				}
				return
			}
			for _, want := range tt.wantErrs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("got error %v, want one containing %q", err, want)
				}
			}
		})
	}
}
