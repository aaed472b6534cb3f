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
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

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
