package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins/pkg/netx"
)

// listenerALPN is what a TLS listener offers in ALPN (RFC 7301), in order
// of preference; conn.alpn holds what the client picked. h2 comes first
// on a listener that serves HTTP/2 (RFC 9113 section 3.2).
func listenerALPN(h2 bool) []string {
	if h2 {
		return []string{"h2", "http/1.1"}
	}
	return []string{"http/1.1"}
}

// tlsCheckEvery is how often a TLS listener looks at its files for a
// change, from the handshakes that need the certificate.
const tlsCheckEvery = time.Second

// tlsFront is a TLS listener's server side: the tls.Config it hands each
// handshake, rebuilt when the certificate, key or client CA files
// change. A check is a stat of each file, at most once a tlsCheckEvery,
// by the handshake that finds it due: an idle listener costs nothing and
// needs no goroutine to stop. A file that fails to load keeps the
// previous configuration, with one warning per failing state.
type tlsFront struct {
	set      *config.ListenerTLS
	alpn     []string
	identity []string
	log      zerolog.Logger
	cur      atomic.Pointer[tls.Config]
	due      atomic.Int64 // unix nanoseconds of the next check

	mu    sync.Mutex // one check at a time; guards the fields below
	seen  [3]fileSig // the files the current configuration came from
	bad   [3]fileSig // the last state that failed to load, warned of
	first bool       // the check newTLSFront runs: nothing to announce
}

// fileSig tells a file's versions apart: size and modification time as
// os.Stat sees them (through symbolic links, which certbot swaps).
type fileSig struct {
	size, mtime int64
	ok          bool
}

func statSig(path string) fileSig {
	if path == "" {
		return fileSig{ok: true}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{}
	}
	return fileSig{size: fi.Size(), mtime: fi.ModTime().UnixNano(), ok: true}
}

// newTLSFront builds a TLS listener's configuration from what Load read,
// or, when the files changed since, from the files.
func newTLSFront(set *config.ListenerTLS, alpn []string, log zerolog.Logger) *tlsFront {
	t := &tlsFront{set: set, alpn: alpn, identity: set.ClientIdentity, log: log}
	t.cur.Store(t.build(set.Certificate, set.ClientCAs))
	t.first = true
	t.check()
	t.first = false
	t.due.Store(time.Now().Add(tlsCheckEvery).UnixNano())
	return t
}

// config returns the configuration for a handshake starting at now,
// checking the files first when a check is due.
func (t *tlsFront) config(now time.Time) *tls.Config {
	if due := t.due.Load(); now.UnixNano() >= due &&
		t.due.CompareAndSwap(due, now.Add(tlsCheckEvery).UnixNano()) {
		t.check()
	}
	return t.cur.Load()
}

// check reloads the files when they differ from those the configuration
// came from. A check already running elsewhere is not waited for.
func (t *tlsFront) check() {
	if !t.mu.TryLock() {
		return
	}
	defer t.mu.Unlock()
	sigs := [3]fileSig{statSig(t.set.CertPath), statSig(t.set.KeyPath), statSig(t.set.ClientCAPath)}
	if sigs == t.seen || sigs == t.bad {
		return
	}
	cert, pool, err := t.read()
	if err != nil {
		t.bad = sigs
		t.log.Warn().Err(err).Msg("tls: keeping the previous certificate")
		return
	}
	t.cur.Store(t.build(cert, pool))
	if !t.first {
		t.log.Info().Str("cert", t.set.CertPath).Msg("tls: certificate reloaded")
	}
	t.seen, t.bad = sigs, [3]fileSig{}
}

// read loads the files as Load does.
func (t *tlsFront) read() (*tls.Certificate, *x509.CertPool, error) {
	cert, err := config.ReadKeyPair(t.set.CertPath, t.set.KeyPath)
	if err != nil {
		return nil, nil, err
	}
	var pool *x509.CertPool
	if t.set.ClientCAPath != "" {
		if pool, err = config.ReadCertPool(t.set.ClientCAPath); err != nil {
			return nil, nil, err
		}
	}
	return cert, pool, nil
}

// build makes the server configuration: Go's defaults but for TLS 1.2 as
// the oldest version (RFC 8996 retires 1.0 and 1.1).
func (t *tlsFront) build(cert *tls.Certificate, pool *x509.CertPool) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: t.alpn}
	if cert != nil { // nil only for a Config that Load did not fill in
		c.Certificates = []tls.Certificate{*cert}
	}
	if pool == nil {
		return c
	}
	c.ClientCAs = pool
	c.ClientAuth = tls.RequireAndVerifyClientCert
	if t.set.ClientAuth == "optional" {
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	// A verified certificate that names nobody usable cannot stand for a
	// user: refuse it in the handshake rather than let it in anonymous.
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) > 0 && certIdentity(cs.PeerCertificates[0], t.identity) == "" {
			return errNoIdentity
		}
		return nil
	}
	return c
}

var errNoIdentity = errors.New("client certificate names no user (see client_identity)")

// maxIdentity bounds a certificate user name: it goes into logs, acl
// matches and rate limit keys.
const maxIdentity = 256

// certIdentity is the user a client certificate names: the first of the
// sources that the certificate has, or "" when it has none. A name with
// control characters or invalid UTF-8 (log injection) or over
// maxIdentity bytes is no name.
func certIdentity(c *x509.Certificate, sources []string) string {
	for _, src := range sources {
		var id string
		switch src {
		case config.IdentitySANEmail:
			if len(c.EmailAddresses) > 0 {
				id = c.EmailAddresses[0]
			}
		case config.IdentitySANURI:
			if len(c.URIs) > 0 {
				id = c.URIs[0].String()
			}
		case config.IdentityCN:
			id = c.Subject.CommonName
		}
		if id != "" {
			if !printable(id) {
				return ""
			}
			return id
		}
	}
	return ""
}

func printable(s string) bool {
	if len(s) > maxIdentity || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// startTLS runs the server's TLS handshake on the client connection,
// within the handshake deadline already set and counted against the
// client's handshake limit as the rest of the handshake is, and makes the
// TLS connection the one the protocols read. It reports whether the
// connection may go on; when not, it has been answered or is gone.
func (h *conn) startTLS() bool {
	var under net.Conn = h.c
	// Bytes read past a PROXY header are the ClientHello's.
	prefix := &netx.PrefixConn{Conn: h.c, Prefix: h.takeBuffered()}
	if prefix.Prefix != nil {
		under = prefix
	}
	rec := &recordConn{Conn: under}
	tc := tls.Server(rec, h.l.tls.config(time.Now()))
	if err := tc.Handshake(); err != nil {
		h.tlsFailed(err)
		return false
	}
	st := tc.ConnectionState()
	client := &tlsClient{Conn: tc, rec: rec, tcp: h.c}
	// Bytes left of the prefix are not in the socket: then WaitRead
	// cannot wait on it (none are, but for a client that sent records
	// ahead of the handshake's end).
	if sc, ok := h.c.(syscall.Conn); ok && len(prefix.Prefix) == 0 {
		client.raw, _ = sc.SyscallConn()
	}
	h.c, h.alpn = client, st.NegotiatedProtocol
	if len(st.VerifiedChains) > 0 {
		h.user, h.certUser = certIdentity(st.PeerCertificates[0], h.l.tls.identity), true
	}
	h.rcv = rollingConn{Conn: tc}
	h.br.Reset(h.rc)
	return true
}

// tlsFailed ends a failed handshake. Plain HTTP sent to a TLS listener
// (a client configured with http:// for an https:// proxy) is told so
// in plain HTTP, as net/http's server does, rather than just closed.
func (h *conn) tlsFailed(err error) {
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader[:]) {
		io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\nConnection: close\r\n\r\n"+
			"Client sent an HTTP request to a TLS proxy listener.\n")
		h.linger = true // the client may still be sending its request
	}
	h.debugHandshake("tls", err)
}

// looksLikeHTTP reports whether the first bytes of a would-be TLS record
// start an HTTP request line.
func looksLikeHTTP(hdr []byte) bool {
	n := 0
	for n < len(hdr) && hdr[n] >= 'A' && hdr[n] <= 'Z' {
		n++
	}
	return n >= 3 && (n == len(hdr) || hdr[n] == ' ')
}
