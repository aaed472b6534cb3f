package mitm

// The certificate authority: it loads (or makes) a CA certificate and key
// and signs a leaf certificate per intercepted host, on demand, keeping
// the most recently used leaves in memory.
//
//	ca, err := mitm.LoadCA("ca.pem", "ca-key.pem", 0)
//	cfg := &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
//		return ca.Leaf(h.ServerName)
//	}}

import (
	"bytes"
	"container/list"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ferry/plugins/pkg/safefile"
)

const (
	// DefaultCacheSize is the number of leaves a CA keeps when
	// LoadCA or ParseCA is given a cache size of zero or less.
	DefaultCacheSize = 1024

	// maxLeafValidity is the longest validity browsers accept for a
	// leaf certificate (CA/Browser Forum baseline, Apple and Chrome).
	maxLeafValidity = 397 * 24 * time.Hour

	// backdate is how far NotBefore lies in the past, so that clients
	// whose clock is a little behind accept a certificate made just now.
	backdate = time.Hour

	// renewBefore: a cached leaf that expires sooner than this is made
	// again rather than served.
	renewBefore = time.Hour
)

// CA signs leaf certificates for intercepted hosts. It is safe for
// concurrent use.
type CA struct {
	cert        *x509.Certificate
	certPEM     []byte
	key         crypto.Signer
	fingerprint string

	// leafKey is the key of every leaf, made once when the CA is
	// loaded: a new leaf then costs one signature, not a key
	// generation. Sharing it is safe because a leaf's key never leaves
	// the process, and each leaf is only valid for its own host.
	leafKey *ecdsa.PrivateKey

	mu       sync.Mutex
	size     int
	lru      *list.List               // of *cacheEntry, most recently used first
	entries  map[string]*list.Element // by lower-cased host
	inflight map[string]*leafCall     // hosts whose leaf is being made

	hits, misses atomic.Uint64
}

// cacheEntry is one cached leaf.
type cacheEntry struct {
	host     string
	cert     *tls.Certificate
	notAfter time.Time
}

// leafCall is a leaf being made; callers asking for the same host wait
// on done and share the result.
type leafCall struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// NewCA makes a CA certificate named commonName (organization "ferry"),
// valid from an hour ago until validity from now, with a new ECDSA P-256
// key. It returns both PEM encoded: the certificate as CERTIFICATE, the
// key as PKCS#8 PRIVATE KEY.
func NewCA(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, nil, errors.New("make ca: empty common name")
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("make ca: validity %v: want a positive duration", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("make ca: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("make ca: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"ferry"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // it signs leaves, not other CAs
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		// SubjectKeyId is derived from the key by CreateCertificate.
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("make ca: sign certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("make ca: encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return certPEM, keyPEM, nil
}

// LoadCA reads a CA certificate and its key from PEM files, as ParseCA
// does; its errors name the file at fault. cacheSize bounds the leaves
// kept in memory (DefaultCacheSize when zero or less).
func LoadCA(certFile, keyFile string, cacheSize int) (*CA, error) {
	certPEM, err := safefile.ReadFile(certFile, safefile.MaxCert)
	if err != nil {
		return nil, fmt.Errorf("read ca certificate: %w", err)
	}
	keyPEM, err := safefile.ReadFile(keyFile, safefile.MaxCert)
	if err != nil {
		return nil, fmt.Errorf("read ca key: %w", err)
	}
	return parseCA(certPEM, keyPEM, certFile, keyFile, cacheSize)
}

// ParseCA loads a CA from a PEM certificate (the first CERTIFICATE
// block) and a PEM private key (PKCS#8 "PRIVATE KEY", SEC 1 "EC PRIVATE
// KEY" or PKCS#1 "RSA PRIVATE KEY"). The certificate must be a CA
// allowed to sign certificates, valid now, and the key must be its key.
// cacheSize bounds the leaves kept in memory (DefaultCacheSize when zero
// or less).
func ParseCA(certPEM, keyPEM []byte, cacheSize int) (*CA, error) {
	return parseCA(certPEM, keyPEM, "", "", cacheSize)
}

// parseCA is ParseCA with the names of the files the PEM came from, for
// the errors; empty names are left out.
func parseCA(certPEM, keyPEM []byte, certName, keyName string, cacheSize int) (*CA, error) {
	certLabel, keyLabel := label("ca certificate", certName), label("ca key", keyName)
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certLabel, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("%s: %q is not a CA certificate (basic constraints lack CA:TRUE)", certLabel, cert.Subject.CommonName)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: %q may not sign certificates (key usage lacks keyCertSign)", certLabel, cert.Subject.CommonName)
	}
	now := time.Now()
	if now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("%s: %q is not valid before %s", certLabel, cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("%s: %q expired at %s", certLabel, cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyLabel, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s: not the key of %s %q", keyLabel, certLabel, cert.Subject.CommonName)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate leaf key: %w", err)
	}
	if cacheSize <= 0 {
		cacheSize = DefaultCacheSize
	}
	return &CA{
		cert:        cert,
		certPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		key:         key,
		fingerprint: CertFingerprint(cert),
		leafKey:     leafKey,
		size:        cacheSize,
		lru:         list.New(),
		entries:     make(map[string]*list.Element),
		inflight:    make(map[string]*leafCall),
	}, nil
}

func label(what, name string) string {
	if name == "" {
		return what
	}
	return what + " " + name
}

// ParseCertPEM parses the first CERTIFICATE block of data; blocks of
// other types before it are skipped.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		return cert, nil
	}
}

// parseKey parses the first private key block of data; other blocks,
// such as the EC PARAMETERS openssl writes before a key, are skipped.
func parseKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block")
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted: decrypt it first (openssl pkey -in KEY -out KEY.plain)")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", strings.ToLower(b.Type), err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key type %T cannot sign", key)
		}
		return signer, nil
	}
}

// Leaf returns a certificate for host, a DNS name or an IP address
// (IPv6 with or without brackets), signed by the CA: the chain is the
// leaf and the CA, and Leaf is set. Leaves are cached by lower-cased
// host; concurrent calls for a host not in the cache make one leaf and
// share it. A cached leaf that expires within the hour is made again.
//
// The returned certificate is shared: callers must not modify it.
func (ca *CA) Leaf(host string) (*tls.Certificate, error) {
	host = normalizeHost(host)
	if host == "" {
		return nil, errors.New("make leaf: empty host")
	}
	if _, err := netip.ParseAddr(host); err != nil && !ValidHostName(host) {
		return nil, fmt.Errorf("make leaf: %q is neither a DNS host name nor an IP address", clip(host))
	}
	ca.mu.Lock()
	if el, ok := ca.entries[host]; ok {
		e := el.Value.(*cacheEntry)
		if time.Until(e.notAfter) > renewBefore {
			ca.lru.MoveToFront(el)
			ca.mu.Unlock()
			ca.hits.Add(1)
			return e.cert, nil
		}
	}
	if c, ok := ca.inflight[host]; ok {
		ca.mu.Unlock()
		<-c.done
		ca.hits.Add(1)
		return c.cert, c.err
	}
	c := &leafCall{done: make(chan struct{})}
	ca.inflight[host] = c
	ca.mu.Unlock()
	ca.misses.Add(1)

	c.cert, c.err = ca.newLeaf(host)

	ca.mu.Lock()
	delete(ca.inflight, host)
	if c.err == nil {
		ca.storeLocked(host, c.cert)
	}
	ca.mu.Unlock()
	close(c.done)
	return c.cert, c.err
}

// storeLocked caches cert as the most recently used leaf for host,
// dropping the least recently used beyond the cache size.
func (ca *CA) storeLocked(host string, cert *tls.Certificate) {
	e := &cacheEntry{host: host, cert: cert, notAfter: cert.Leaf.NotAfter}
	if el, ok := ca.entries[host]; ok {
		el.Value = e
		ca.lru.MoveToFront(el)
		return
	}
	ca.entries[host] = ca.lru.PushFront(e)
	for ca.lru.Len() > ca.size {
		oldest := ca.lru.Back()
		ca.lru.Remove(oldest)
		delete(ca.entries, oldest.Value.(*cacheEntry).host)
	}
}

// normalizeHost lower-cases host and strips the brackets of an IPv6
// literal and the trailing dot of a fully qualified name.
func normalizeHost(host string) string {
	host = strings.ToLower(strings.TrimSpace(host))
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return strings.TrimSuffix(host, ".")
}

// ValidHostName reports whether s is a DNS host name a leaf may be made
// for and a ClientHello may carry as its server name (RFC 6066 section 3,
// RFC 1123 section 2.1): dot-separated labels of 1 to 63 letters, digits,
// hyphens and underscores (which real names have, and browsers accept),
// no label starting or ending with a hyphen, 253 bytes at most, with an
// optional trailing dot. Wildcards ("*.example.com") are not names,
// nor are IP literals, nor anything whose last label is all digits
// ("127.1", "1.2.3.4"). IDNs must be in their A-label form (xn--).
func ValidHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	last := ""
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		last = label
	}
	return strings.ContainsFunc(last, func(r rune) bool { return r < '0' || r > '9' })
}

// clip shortens a client-chosen name for errors and logs.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// newLeaf signs a certificate for host with the shared leaf key. It
// costs one signature (and a check of it by CreateCertificate), no key
// generation.
func (ca *CA) newLeaf(host string) (*tls.Certificate, error) {
	now := time.Now()
	notBefore := now.Add(-backdate)
	if notBefore.Before(ca.cert.NotBefore) {
		notBefore = ca.cert.NotBefore
	}
	notAfter := now.Add(maxLeafValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !now.Before(notAfter) {
		return nil, fmt.Errorf("make leaf for %s: ca %q expired at %s", host, ca.cert.Subject.CommonName, notAfter.UTC().Format(time.RFC3339))
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("make leaf for %s: %w", host, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, // CA:FALSE
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.WithZone("").AsSlice())
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &ca.leafKey.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("make leaf for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("make leaf for %s: parse: %w", host, err)
	}
	return &tls.Certificate{
		Certificate: [][]byte{der, ca.cert.Raw},
		PrivateKey:  ca.leafKey,
		Leaf:        leaf,
	}, nil
}

// randomSerial is a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	limit.Sub(limit, big.NewInt(1))
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("draw serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // 1 to 2^128-1: never zero
}

// Fingerprint is the SHA-256 of the CA certificate's DER, as uppercase
// hex pairs separated by colons, the way openssl and browsers show it.
func (ca *CA) Fingerprint() string { return ca.fingerprint }

// CertFingerprint is the SHA-256 of cert's DER, as uppercase hex pairs
// separated by colons, the way openssl and browsers show it.
func CertFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return colonHex(sum[:])
}

// Certificate is the CA certificate. Callers must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM is the CA certificate, PEM encoded, for clients to install.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// Stats counts Leaf calls: misses made a new leaf, hits did not (they
// were served from the cache, or waited for a call making the same
// leaf).
func (ca *CA) Stats() (hits, misses uint64) {
	return ca.hits.Load(), ca.misses.Load()
}

// colonHex is b as uppercase hex pairs separated by colons.
func colonHex(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var s strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			s.WriteByte(':')
		}
		s.WriteString(h[i : i+2])
	}
	return s.String()
}
