package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"ferry/plugins/pkg/safefile"
)

// TLS to the proxy: with -tls-ca the tool speaks TLS to the proxy (a
// ferry TLS listener) before its CONNECT or SOCKS5 handshake, trusting
// the CA file given; the proxy's leg to the target stays plain. Clients
// resume TLS sessions as browsers and curl do, so a connection-rate run
// measures mostly resumed handshakes after the first few.
//
//	bench tls-cert DIR      writes DIR/proxy.pem and DIR/proxy-key.pem
//	bench -tls-ca DIR/proxy.pem -proxy 127.0.0.1:8443 -proto connect ...

// clientTLS is the configuration of the tool's TLS to the proxy at addr,
// trusting the PEM certificates in caFile.
func clientTLS(caFile, addr string) (*tls.Config, error) {
	roots, err := loadRoots("-tls-ca", caFile)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-proxy: %w", err)
	}
	return &tls.Config{
		RootCAs:            roots,
		ServerName:         host,
		NextProtos:         []string{"http/1.1"},
		ClientSessionCache: tls.NewLRUClientSessionCache(256),
	}, nil
}

// loadRoots reads the PEM certificates of caFile (the value of flag) into
// a pool.
func loadRoots(flag, caFile string) (*x509.CertPool, error) {
	pemData, err := safefile.ReadFile(caFile, safefile.MaxCert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("%s: %s: no PEM certificate found", flag, caFile)
	}
	return roots, nil
}

// startTLS runs the client handshake on c when the dialer speaks TLS,
// within the deadline already set on c; it closes c when it fails.
func (d *dialer) startTLS(c net.Conn) (net.Conn, error) {
	if d.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, d.tls)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS handshake with the proxy: %w", err)
	}
	return tc, nil
}

// runTLSCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1,
// ::1 and localhost, and its key, into the directory args[0]: what a
// ferry TLS listener under benchmark serves, and what -tls-ca trusts.
func runTLSCert(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: bench tls-cert DIR")
		return 2
	}
	if err := writeTLSCert(args[0]); err != nil {
		fmt.Fprintf(os.Stderr, "bench tls-cert: %v\n", err)
		return 1
	}
	return 0
}

func writeTLSCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ferry bench proxy"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("make certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "proxy.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "proxy-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}
