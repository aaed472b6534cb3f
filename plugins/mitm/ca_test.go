package mitm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTestCA makes a CA valid for a year with the given cache size.
func newTestCA(t testing.TB, cacheSize int) *CA {
	t.Helper()
	certPEM, keyPEM, err := NewCA("ferry test CA", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM, cacheSize)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// pool is a cert pool holding only ca's certificate.
func pool(ca *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Certificate())
	return p
}

// verify checks leaf the way a TLS client connecting to name does.
func verify(ca *CA, leaf *tls.Certificate, name string) error {
	_, err := leaf.Leaf.Verify(x509.VerifyOptions{
		DNSName:   name,
		Roots:     pool(ca),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

// selfSigned makes a certificate from tmpl signed by its own new key
// and returns both PEM encoded (the key as PKCS#8).
func selfSigned(t *testing.T, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signedBy(t, tmpl, tmpl, key, key)
}

func signedBy(t *testing.T, tmpl, parent *x509.Certificate, key crypto.Signer, parentKey crypto.Signer) (certPEM, keyPEM []byte) {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(1)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
}

func TestNewCA(t *testing.T) {
	certPEM, keyPEM, err := NewCA("ferry interception CA", 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM type: got %v, want PRIVATE KEY", b)
	}
	ca, err := ParseCA(certPEM, keyPEM, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Certificate()
	now := time.Now()
	checks := []struct {
		name string
		ok   bool
		got  any
	}{
		{name: "IsCA", ok: c.IsCA, got: c.IsCA},
		{name: "BasicConstraintsValid", ok: c.BasicConstraintsValid, got: c.BasicConstraintsValid},
		{name: "MaxPathLen 0", ok: c.MaxPathLen == 0 && c.MaxPathLenZero, got: fmt.Sprint(c.MaxPathLen, c.MaxPathLenZero)},
		{name: "KeyUsage", ok: c.KeyUsage == x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature, got: c.KeyUsage},
		{name: "CommonName", ok: c.Subject.CommonName == "ferry interception CA", got: c.Subject.CommonName},
		{name: "Organization", ok: len(c.Subject.Organization) == 1 && c.Subject.Organization[0] == "ferry", got: c.Subject.Organization},
		{name: "P-256 key", ok: c.PublicKeyAlgorithm == x509.ECDSA && c.PublicKey.(*ecdsa.PublicKey).Curve == elliptic.P256(), got: c.PublicKeyAlgorithm},
		{name: "serial 128 bits", ok: c.SerialNumber.Sign() > 0 && c.SerialNumber.BitLen() <= 128, got: c.SerialNumber.BitLen()},
		{name: "NotBefore an hour back", ok: now.Sub(c.NotBefore) > 59*time.Minute && now.Sub(c.NotBefore) < 61*time.Minute, got: c.NotBefore},
		{name: "NotAfter", ok: c.NotAfter.Sub(now) > 10*24*time.Hour-time.Minute && c.NotAfter.Sub(now) <= 10*24*time.Hour, got: c.NotAfter},
		{name: "SubjectKeyId", ok: len(c.SubjectKeyId) > 0, got: c.SubjectKeyId},
		{name: "CertPEM", ok: string(ca.CertPEM()) == string(certPEM), got: string(ca.CertPEM())},
		{name: "Fingerprint", ok: regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(ca.Fingerprint()), got: ca.Fingerprint()},
	}
	for _, ck := range checks {
		if !ck.ok {
			t.Errorf("%s: got %v", ck.name, ck.got)
		}
	}
	// Self-signed: it verifies against itself.
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool(ca)}); err != nil {
		t.Errorf("CA does not verify against itself: %v", err)
	}
	// Two CAs never share a serial or a key.
	cert2, _, err := NewCA("ferry interception CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := ParseCertPEM(cert2)
	if c2.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Errorf("two CAs share serial %v", c.SerialNumber)
	}
}

func TestNewCAErrors(t *testing.T) {
	tests := []struct {
		name     string
		cn       string
		validity time.Duration
	}{
		{name: "empty name", cn: " ", validity: time.Hour},
		{name: "zero validity", cn: "x", validity: 0},
		{name: "negative validity", cn: "x", validity: -time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := NewCA(tt.cn, tt.validity); err == nil {
				t.Errorf("NewCA(%q, %v): got no error", tt.cn, tt.validity)
			}
		})
	}
}

func TestLeafVerifies(t *testing.T) {
	ca := newTestCA(t, 0)
	tests := []struct {
		name    string
		host    string // passed to Leaf
		verify  string // the name the client checks
		wantDNS []string
		wantIP  string
		wantCN  string
	}{
		{name: "dns", host: "example.test", verify: "example.test", wantDNS: []string{"example.test"}, wantCN: "example.test"},
		{name: "mixed case", host: "WWW.Example.TEST", verify: "www.example.test", wantDNS: []string{"www.example.test"}, wantCN: "www.example.test"},
		{name: "trailing dot", host: "fqdn.example.test.", verify: "fqdn.example.test", wantDNS: []string{"fqdn.example.test"}, wantCN: "fqdn.example.test"},
		{name: "ipv4", host: "192.0.2.10", verify: "192.0.2.10", wantIP: "192.0.2.10", wantCN: "192.0.2.10"},
		{name: "ipv6", host: "2001:DB8::1", verify: "2001:db8::1", wantIP: "2001:db8::1", wantCN: "2001:db8::1"},
		{name: "ipv6 brackets", host: "[::1]", verify: "::1", wantIP: "::1", wantCN: "::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := ca.Leaf(tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if err := verify(ca, leaf, tt.verify); err != nil {
				t.Errorf("leaf for %q does not verify for %q: %v", tt.host, tt.verify, err)
			}
			c := leaf.Leaf
			if c.Subject.CommonName != tt.wantCN {
				t.Errorf("CN: got %q, want %q", c.Subject.CommonName, tt.wantCN)
			}
			if fmt.Sprint(c.DNSNames) != fmt.Sprint(tt.wantDNS) && !(len(c.DNSNames) == 0 && tt.wantDNS == nil) {
				t.Errorf("DNS SANs: got %q, want %q", c.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if want := tt.wantIP; (want == "" && len(ips) != 0) || (want != "" && (len(ips) != 1 || ips[0] != want)) {
				t.Errorf("IP SANs: got %q, want %q", ips, want)
			}
			if len(leaf.Certificate) != 2 || string(leaf.Certificate[1]) != string(ca.Certificate().Raw) {
				t.Errorf("chain: got %d certificates, want leaf and CA", len(leaf.Certificate))
			}
			if c.IsCA {
				t.Error("leaf is a CA")
			}
			if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
				t.Errorf("ExtKeyUsage: got %v, want [ServerAuth]", c.ExtKeyUsage)
			}
			now := time.Now()
			if d := now.Sub(c.NotBefore); d < 59*time.Minute || d > 61*time.Minute {
				t.Errorf("NotBefore %v back, want an hour", d)
			}
			if d := c.NotAfter.Sub(now); d > 397*24*time.Hour || d < 364*24*time.Hour {
				t.Errorf("NotAfter %v ahead, want the CA's (a year)", d)
			}
			if !c.NotAfter.Equal(ca.Certificate().NotAfter) {
				t.Errorf("NotAfter: got %v, want the CA's %v", c.NotAfter, ca.Certificate().NotAfter)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v: want positive, 128 bits", c.SerialNumber)
			}
		})
	}
}

func TestLeafValidityCappedAt397Days(t *testing.T) {
	certPEM, keyPEM, err := NewCA("long", 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("example.test")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(leaf.Leaf.NotAfter); d > 397*24*time.Hour || d < 397*24*time.Hour-time.Minute {
		t.Errorf("leaf valid for %v, want 397 days", d)
	}
}

func TestLeafWrongHost(t *testing.T) {
	ca := newTestCA(t, 0)
	tests := []struct {
		name        string
		host, other string
	}{
		{name: "other name", host: "a.example.test", other: "b.example.test"},
		{name: "subdomain", host: "example.test", other: "www.example.test"},
		{name: "parent", host: "www.example.test", other: "example.test"},
		{name: "ip for name", host: "192.0.2.1", other: "example.test"},
		{name: "other ip", host: "192.0.2.1", other: "192.0.2.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := ca.Leaf(tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if err := verify(ca, leaf, tt.other); err == nil {
				t.Errorf("leaf for %q verifies for %q, want an error", tt.host, tt.other)
			}
		})
	}
	// Nor does a leaf verify against another CA.
	leaf, err := ca.Leaf("example.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(newTestCA(t, 0), leaf, "example.test"); err == nil {
		t.Error("leaf verifies against another CA")
	}
}

func TestLeafEmptyHost(t *testing.T) {
	ca := newTestCA(t, 0)
	for _, h := range []string{"", " ", "[]", "."} {
		if _, err := ca.Leaf(h); err == nil {
			t.Errorf("Leaf(%q): got no error", h)
		}
	}
}

// TestLeafRefusesNonHostNames: a leaf is made for a DNS host name or an
// IP address, never a wildcard or junk a client sent.
func TestLeafRefusesNonHostNames(t *testing.T) {
	ca := newTestCA(t, 0)
	for _, h := range []string{"*.wild.test", "*", "a..b", "-a.test", "a b.test", "a.test/x", "127.1", "1.2.3.4.5", strings.Repeat("a", 64) + ".test"} {
		if leaf, err := ca.Leaf(h); err == nil {
			t.Errorf("Leaf(%q): got a leaf for %q, want an error", h, leaf.Leaf.DNSNames)
		}
	}
	if _, misses := ca.Stats(); misses != 0 {
		t.Errorf("%d leaves signed, want none", misses)
	}
}

func TestValidHostName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"simple", "example.com", true},
		{"single label", "localhost", true},
		{"trailing dot", "example.com.", true},
		{"digits and hyphens", "a-1.b2.test", true},
		{"underscore", "my_host.example.com", true},
		{"punycode", "xn--bcher-kva.example", true},
		{"numeric first label", "1password.com", true},
		{"63-byte label", strings.Repeat("a", 63) + ".test", true},
		{"253 bytes", strings.Repeat("a.", 126) + "b", true},
		{"empty", "", false},
		{"dot", ".", false},
		{"wildcard", "*.wild.test", false},
		{"star inside", "a*.test", false},
		{"empty label", "a..test", false},
		{"leading dot", ".test", false},
		{"leading hyphen", "-a.test", false},
		{"trailing hyphen", "a-.test", false},
		{"64-byte label", strings.Repeat("a", 64) + ".test", false},
		{"254 bytes", strings.Repeat("a.", 126) + "bc", false},
		{"IPv4", "192.0.2.1", false},
		{"short IPv4", "127.1", false},
		{"IPv6", "2001:db8::1", false},
		{"bracketed IPv6", "[::1]", false},
		{"space", "a b.test", false},
		{"non-ASCII", "bücher.example", false},
		{"NUL", "a\x00.test", false},
		{"port", "example.com:443", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidHostName(tt.in); got != tt.want {
				t.Fatalf("ValidHostName(%q): got %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseCAKeyFormats(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := func() *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "other CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour * 24),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
	}
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	ecCert, _ := signedBy(t, caTmpl(), caTmpl(), ecKey, ecKey)
	rsaCert, _ := signedBy(t, caTmpl(), caTmpl(), rsaKey, rsaKey)
	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		wantErr string
	}{
		{name: "EC PRIVATE KEY after EC PARAMETERS", cert: ecCert, key: append(
			pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)},
		{name: "RSA PRIVATE KEY", cert: rsaCert, key: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})},
		{name: "encrypted", cert: ecCert, key: pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), wantErr: "encrypted"},
		{name: "no key", cert: ecCert, key: ecCert, wantErr: "no PEM PRIVATE KEY"},
		{name: "no certificate", cert: []byte("hello"), key: ecCert, wantErr: "no PEM CERTIFICATE"},
		{name: "bad certificate", cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}}), key: ecCert, wantErr: "parse certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := ParseCA(tt.cert, tt.key, 0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := ca.Leaf("example.test")
			if err != nil {
				t.Fatal(err)
			}
			if err := verify(ca, leaf, "example.test"); err != nil {
				t.Errorf("leaf does not verify: %v", err)
			}
		})
	}
}

func TestLoadCAErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certPEM, keyPEM, err := NewCA("good CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKeyPEM, err := NewCA("other CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	goodCert, goodKey := write("ca.pem", certPEM), write("ca-key.pem", keyPEM)
	otherKey := write("other-key.pem", otherKeyPEM)

	now := time.Now()
	notCACert, notCAKey := selfSigned(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "leaf"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		BasicConstraintsValid: true, IsCA: false,
	})
	noCertSignCert, noCertSignKey := selfSigned(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "no certsign"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageDigitalSignature,
	})
	expiredCert, expiredKey := selfSigned(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "expired"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
	})
	futureCert, futureKey := selfSigned(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "future"}, NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour),
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
	})

	tests := []struct {
		name      string
		cert, key string
		wantFile  string // the error must name it
		wantText  string
	}{
		{name: "missing cert", cert: filepath.Join(dir, "nope.pem"), key: goodKey, wantFile: filepath.Join(dir, "nope.pem"), wantText: "no such file"},
		{name: "missing key", cert: goodCert, key: filepath.Join(dir, "nope-key.pem"), wantFile: filepath.Join(dir, "nope-key.pem"), wantText: "no such file"},
		{name: "key of another CA", cert: goodCert, key: otherKey, wantFile: otherKey, wantText: "not the key of"},
		{name: "not a CA", cert: write("leaf.pem", notCACert), key: write("leaf-key.pem", notCAKey), wantFile: filepath.Join(dir, "leaf.pem"), wantText: "not a CA"},
		{name: "no keyCertSign", cert: write("nosign.pem", noCertSignCert), key: write("nosign-key.pem", noCertSignKey), wantFile: filepath.Join(dir, "nosign.pem"), wantText: "keyCertSign"},
		{name: "expired", cert: write("expired.pem", expiredCert), key: write("expired-key.pem", expiredKey), wantFile: filepath.Join(dir, "expired.pem"), wantText: "expired"},
		{name: "not yet valid", cert: write("future.pem", futureCert), key: write("future-key.pem", futureKey), wantFile: filepath.Join(dir, "future.pem"), wantText: "not valid before"},
		{name: "key file is a certificate", cert: goodCert, key: goodCert, wantFile: goodCert, wantText: "no PEM PRIVATE KEY"},
		{name: "cert file is a key", cert: goodKey, key: goodKey, wantFile: goodKey, wantText: "no PEM CERTIFICATE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCA(tt.cert, tt.key, 0)
			if err == nil {
				t.Fatal("got no error")
			}
			if !strings.Contains(err.Error(), tt.wantFile) || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("got error %q, want one naming %s and saying %q", err, tt.wantFile, tt.wantText)
			}
		})
	}
	if _, err := LoadCA(goodCert, goodKey, 0); err != nil {
		t.Errorf("good CA: %v", err)
	}
}

func TestLeafCache(t *testing.T) {
	ca := newTestCA(t, 3)
	get := func(host string) *tls.Certificate {
		t.Helper()
		c, err := ca.Leaf(host)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := get("a.test")
	if got := get("a.test"); got != a {
		t.Error("second Leaf(a.test) made a new leaf, want the cached one")
	}
	if got := get("A.Test"); got != a {
		t.Error("Leaf(A.Test) made a new leaf, want the one of a.test")
	}
	b, c := get("b.test"), get("c.test")
	get("a.test") // a is now the most recent: b is the least recently used
	get("d.test") // evicts b
	steps := []struct {
		host string
		old  *tls.Certificate
		same bool
	}{
		{host: "a.test", old: a, same: true},
		{host: "c.test", old: c, same: true},
		{host: "b.test", old: b, same: false}, // evicted, made again (evicts d)
	}
	for _, s := range steps {
		if got := get(s.host); (got == s.old) != s.same {
			t.Errorf("Leaf(%s) returned the earlier leaf: %v, want %v", s.host, got == s.old, s.same)
		}
	}
	hits, misses := ca.Stats()
	if hits != 5 || misses != 5 {
		t.Errorf("Stats: got %d hits, %d misses, want 5, 5", hits, misses)
	}
	ca.mu.Lock()
	n, m := ca.lru.Len(), len(ca.entries)
	ca.mu.Unlock()
	if n != 3 || m != 3 {
		t.Errorf("cache holds %d (map %d) leaves, want 3", n, m)
	}
}

func TestLeafConcurrentGeneratesOnce(t *testing.T) {
	ca := newTestCA(t, 0)
	const callers = 64
	var wg sync.WaitGroup
	start := make(chan struct{})
	got := make([]*tls.Certificate, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			<-start
			got[i], errs[i] = ca.Leaf("once.example.test")
		})
	}
	close(start)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("caller %d got a different leaf", i)
		}
	}
	hits, misses := ca.Stats()
	if misses != 1 || hits != callers-1 {
		t.Errorf("Stats: got %d hits, %d misses, want %d, 1", hits, misses, callers-1)
	}
}

func TestLeafConcurrentManyHosts(t *testing.T) {
	ca := newTestCA(t, 8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				host := fmt.Sprintf("h%d.test", (g+i)%16)
				leaf, err := ca.Leaf(host)
				if err != nil {
					t.Error(err)
					return
				}
				if leaf.Leaf.Subject.CommonName != host {
					t.Errorf("Leaf(%s): got CN %q", host, leaf.Leaf.Subject.CommonName)
				}
			}
		})
	}
	wg.Wait()
	if hits, misses := ca.Stats(); hits+misses != 400 {
		t.Errorf("Stats: %d hits + %d misses, want 400 calls", hits, misses)
	}
}

// A CA that expires within the hour makes leaves that do too: they are
// never served from the cache.
func TestLeafExpiringSoonIsRenewed(t *testing.T) {
	certPEM, keyPEM, err := NewCA("short", 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM, 0)
	if err != nil {
		t.Fatal(err)
	}
	first, err := ca.Leaf("example.test")
	if err != nil {
		t.Fatal(err)
	}
	second, err := ca.Leaf("example.test")
	if err != nil {
		t.Fatal(err)
	}
	if first == second {
		t.Error("a leaf expiring within the hour was served from the cache")
	}
	if hits, misses := ca.Stats(); hits != 0 || misses != 2 {
		t.Errorf("Stats: got %d hits, %d misses, want 0, 2", hits, misses)
	}
}

func TestHandshake(t *testing.T) {
	ca := newTestCA(t, 0)
	tests := []struct {
		name       string
		serverName string
		version    uint16
	}{
		{name: "tls1.3", serverName: "www.example.test", version: tls.VersionTLS13},
		{name: "tls1.2", serverName: "www.example.test", version: tls.VersionTLS12},
		{name: "mixed case SNI", serverName: "WWW.Example.Test", version: tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := handshake(ca, tt.serverName, tt.version, func(c *tls.Conn) error {
				if _, err := c.Write([]byte("ping")); err != nil {
					return err
				}
				buf := make([]byte, 4)
				if _, err := io.ReadFull(c, buf); err != nil {
					return err
				}
				if string(buf) != "pong" {
					return fmt.Errorf("got %q, want pong", buf)
				}
				st := c.ConnectionState()
				if st.Version != tt.version {
					return fmt.Errorf("version %x, want %x", st.Version, tt.version)
				}
				if cn := st.PeerCertificates[0].Subject.CommonName; cn != strings.ToLower(tt.serverName) {
					return fmt.Errorf("server certificate CN %q, want %q", cn, strings.ToLower(tt.serverName))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	// A client that trusts another CA refuses the leaf.
	other := newTestCA(t, 0)
	err := handshakeWith(ca, pool(other), "www.example.test", tls.VersionTLS13, nil)
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("client trusting another CA: got %v, want an unknown authority error", err)
	}
}

// handshake runs a TLS server that takes its certificate from
// ca.Leaf(SNI) and a client trusting only ca over net.Pipe; after the
// handshake, the client runs talk while the server answers "pong" to
// four bytes. It returns the client's error, else the server's.
func handshake(ca *CA, serverName string, version uint16, talk func(*tls.Conn) error) error {
	return handshakeWith(ca, pool(ca), serverName, version, talk)
}

func handshakeWith(ca *CA, roots *x509.CertPool, serverName string, version uint16, talk func(*tls.Conn) error) error {
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	deadline := time.Now().Add(10 * time.Second)
	cc.SetDeadline(deadline)
	sc.SetDeadline(deadline)
	server := tls.Server(sc, &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return ca.Leaf(hello.ServerName)
		},
		MinVersion: version, MaxVersion: version,
	})
	client := tls.Client(cc, &tls.Config{
		RootCAs: roots, ServerName: serverName,
		MinVersion: version, MaxVersion: version,
	})
	serverErr := make(chan error, 1)
	go func() {
		err := server.Handshake()
		if err == nil && talk != nil {
			buf := make([]byte, 4)
			if _, err = io.ReadFull(server, buf); err == nil {
				_, err = server.Write([]byte("pong"))
			}
		}
		if err != nil {
			sc.Close() // unblock the client
		}
		serverErr <- err
	}()
	err := client.Handshake()
	if err == nil && talk != nil {
		err = talk(client)
	}
	cc.Close()
	if sErr := <-serverErr; err == nil && sErr != nil {
		err = fmt.Errorf("server: %w", sErr)
	}
	return err
}
