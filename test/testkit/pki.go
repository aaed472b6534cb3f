package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// PKI is a throwaway CA and a server certificate it signed for
// 127.0.0.1, localhost and the names given to NewPKI, valid from an hour
// ago for a day.
type PKI struct {
	CA      *x509.Certificate
	CAPEM   []byte // the CA's certificate
	CertPEM []byte // the server's certificate
	KeyPEM  []byte // the server's key, PKCS #8
	leaf    tls.Certificate
	caKey   *ecdsa.PrivateKey // signs client certificates (ClientCert)
}

// NewPKI makes a PKI.
func NewPKI(t testing.TB, names ...string) *PKI {
	t.Helper()
	check := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatalf("make test certificates: %v", err)
		}
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ferry e2e test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	check(err)
	ca, err = x509.ParseCertificate(caDER)
	check(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     append([]string{"localhost"}, names...),
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	check(err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	check(err)
	return &PKI{
		CA:      ca,
		CAPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		leaf:    tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key},
		caKey:   caKey,
	}
}

// ServerTLS is a server configuration presenting the server certificate.
func (p *PKI) ServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.leaf}}
}

// Roots is a pool holding the CA alone, for clients.
func (p *PKI) Roots() *x509.CertPool {
	roots := x509.NewCertPool()
	roots.AddCert(p.CA)
	return roots
}

// WritePKI writes a NewPKI as PEM files in dir: the CA's certificate,
// the server's certificate and its key.
func WritePKI(t testing.TB, dir string, names ...string) (caFile, certFile, keyFile string) {
	t.Helper()
	return NewPKI(t, names...).Write(t, dir)
}

// Write writes p as PEM files in dir: the CA's certificate, the server's
// certificate and its key.
func (p *PKI) Write(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for file, b := range map[string][]byte{caFile: p.CAPEM, certFile: p.CertPEM, keyFile: p.KeyPEM} {
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// ClientID is what a client certificate names: a subject common name,
// rfc822Name SANs (e-mail) and URI SANs.
type ClientID struct {
	CN     string
	Emails []string
	URIs   []string
}

// clientSerial numbers client certificates after the server's (2).
var clientSerial atomic.Int64

// ClientCert signs a client certificate (extended key usage clientAuth)
// for id with p's CA, valid from an hour ago for a day.
func (p *PKI) ClientCert(t testing.TB, id ClientID) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("make client key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(1000 + clientSerial.Add(1)),
		Subject:        pkix.Name{CommonName: id.CN},
		EmailAddresses: id.Emails,
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(24 * time.Hour),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, u := range id.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatalf("client certificate URI %q: %v", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatalf("sign client certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// WriteClientCert writes a ClientCert in dir as name.pem (certificate)
// and name-key.pem, for clients like curl --proxy-cert.
func (p *PKI) WriteClientCert(t testing.TB, dir, name string, id ClientID) (certFile, keyFile string) {
	t.Helper()
	c := p.ClientCert(t, id)
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	for file, b := range map[string][]byte{
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}
