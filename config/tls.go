package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"ferry/plugins/pkg/safefile"
)

// ListenerTLS makes a listener speak TLS: the client's TLS handshake
// comes first (after a PROXY header, when the listener takes one), then
// the listener's protocols as over plain TCP. Paths are relative to the
// configuration file. The server re-reads the files on reload and when
// they change.
type ListenerTLS struct {
	// Cert is a PEM file: the listener's certificate, then any
	// intermediates. Required.
	Cert string `toml:"cert"`
	// Key is the PEM private key of Cert. Required.
	Key string `toml:"key"`
	// ClientCA is a PEM file of the CAs client certificates must chain to.
	// Default empty: no client certificate is asked for.
	ClientCA string `toml:"client_ca"`
	// ClientAuth is "require" (the handshake fails without a valid client
	// certificate) or "optional" (a client may present one; one that does
	// not logs in as over plain TCP). Default "require"; only with
	// ClientCA.
	ClientAuth string `toml:"client_auth"`
	// ClientIdentity lists where a client certificate's user name comes
	// from, first found wins: "san-email" (the first rfc822Name SAN),
	// "san-uri" (the first URI SAN, a SPIFFE ID say) or "cn" (the
	// subject's common name). Default ["san-email", "san-uri", "cn"];
	// only with ClientCA.
	ClientIdentity []string `toml:"client_identity"`

	// Filled in by Load: the paths as resolved against the configuration
	// file, and what they held then.
	CertPath, KeyPath, ClientCAPath string           `toml:"-"`
	Certificate                     *tls.Certificate `toml:"-"`
	ClientCAs                       *x509.CertPool   `toml:"-"`
}

// Client certificate identity sources, for ListenerTLS.ClientIdentity.
const (
	IdentitySANEmail = "san-email"
	IdentitySANURI   = "san-uri"
	IdentityCN       = "cn"
)

// DefaultClientIdentity is ListenerTLS.ClientIdentity when the file sets
// none: a person's certificate names them by e-mail, a workload's by URI
// (SPIFFE), and the common name is the fallback older PKIs use.
func DefaultClientIdentity() []string {
	return []string{IdentitySANEmail, IdentitySANURI, IdentityCN}
}

// KeyPairError is a ReadKeyPair failure; InKey tells whether the key
// file is at fault (a mismatch included) or the certificate file.
type KeyPairError struct {
	InKey bool
	Err   error
}

func (e *KeyPairError) Error() string { return e.Err.Error() }
func (e *KeyPairError) Unwrap() error { return e.Err }

// ReadKeyPair reads a PEM certificate chain and its private key, and
// checks that they belong together.
func ReadKeyPair(certPath, keyPath string) (*tls.Certificate, error) {
	certPEM, err := safefile.ReadFile(certPath, safefile.MaxCert)
	if err != nil {
		return nil, &KeyPairError{Err: err}
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return nil, &KeyPairError{Err: fmt.Errorf("%s: no PEM certificate found", certPath)}
	}
	keyPEM, err := safefile.ReadFile(keyPath, safefile.MaxCert)
	if err != nil {
		return nil, &KeyPairError{InKey: true, Err: err}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &KeyPairError{InKey: true, Err: fmt.Errorf("%s with %s: %w", keyPath, certPath, err)}
	}
	return &cert, nil
}

// ReadCertPool reads a PEM file of CA certificates.
func ReadCertPool(path string) (*x509.CertPool, error) {
	data, err := safefile.ReadFile(path, safefile.MaxCert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}

// filePath resolves a path the file names against the file's directory.
func (l *loader) filePath(path string) string {
	if !filepath.IsAbs(path) && l.file != "" && !strings.HasPrefix(l.file, "<") {
		return filepath.Join(filepath.Dir(l.file), path)
	}
	return path
}

// listenerTLS checks a listener's tls table and loads its files.
func (l *loader) listenerTLS(p string, t *ListenerTLS) {
	p += ".tls"
	switch {
	case t.Cert == "":
		l.errorf(p+".cert", "missing: set the PEM file of the listener's certificate")
	case t.Key == "":
		l.errorf(p+".key", "missing: set the PEM file of the certificate's private key")
	default:
		t.CertPath, t.KeyPath = l.filePath(t.Cert), l.filePath(t.Key)
		cert, err := ReadKeyPair(t.CertPath, t.KeyPath)
		var ke *KeyPairError
		switch {
		case errors.As(err, &ke) && ke.InKey:
			l.errorf(p+".key", "%v", err)
		case err != nil:
			l.errorf(p+".cert", "%v", err)
		}
		t.Certificate = cert
	}
	if t.ClientCA == "" {
		if t.ClientAuth != "" {
			l.errorf(p+".client_auth", "only with client_ca: set the CAs client certificates must chain to")
		}
		if t.ClientIdentity != nil {
			l.errorf(p+".client_identity", "only with client_ca: set the CAs client certificates must chain to")
		}
		return
	}
	t.ClientCAPath = l.filePath(t.ClientCA)
	pool, err := ReadCertPool(t.ClientCAPath)
	if err != nil {
		l.errorf(p+".client_ca", "%v", err)
	}
	t.ClientCAs = pool
	if t.ClientAuth == "" {
		t.ClientAuth = "require"
	}
	l.oneOf(p+".client_auth", t.ClientAuth, "require", "optional")
	if t.ClientIdentity == nil {
		t.ClientIdentity = DefaultClientIdentity()
	}
	if len(t.ClientIdentity) == 0 {
		l.errorf(p+".client_identity", "empty: list at least one of %s", orList(DefaultClientIdentity()))
	}
	for i, id := range t.ClientIdentity {
		l.oneOf(indexKey(p+".client_identity", i), id, DefaultClientIdentity()...)
	}
}
