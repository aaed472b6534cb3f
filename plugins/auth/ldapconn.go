package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"

	"ferry/plugins"
)

// maxLDAPRead bounds what one login reads from the directory (TLS
// records included): a user's entry with 256 groups of long DNs fits. A
// hostile or broken server that sends more loses the connection, and the
// login fails with a backend error, instead of ferry's memory growing.
const maxLDAPRead = 1 << 20

// ldapPool keeps up to size connections to the directory, each bound as
// whoever its last login left it. remote's call slots bound the
// connections in use to the same number, so there are never more than
// size open.
type ldapPool struct {
	addr     string      // host:port
	tls      *tls.Config // nil: plain ldap:// (to loopback only)
	ldaps    bool        // TLS from the start; else StartTLS when tls is set
	timeout  time.Duration
	size     int
	mu       sync.Mutex
	idle     []*ldapConn
	closed   bool
	dialHook func() // tests: counts dials
}

// ldapConn is one connection and its bind state.
type ldapConn struct {
	c       *ldap.Conn
	raw     *budgetConn
	service bool // bound as the service account
	dead    bool // its socket was closed: not to be kept
}

// newLDAPPool checks url, start_tls and ca_file.
func newLDAPPool(env plugins.Env, cfg Config) (*ldapPool, error) {
	u, err := checkLDAPURL(cfg.URL, cfg.StartTLS)
	if err != nil {
		return nil, err
	}
	p := &ldapPool{addr: u.Host, ldaps: u.Scheme == "ldaps", timeout: defaultRemoteTimeout, size: 1}
	if !p.ldaps && !cfg.StartTLS {
		if cfg.CAFile != "" {
			return nil, plugins.Errorf("ca_file", "only applies with ldaps:// or start_tls")
		}
		return p, nil
	}
	tc, err := tlsConfig(env.Path(cfg.CAFile))
	if err != nil {
		return nil, plugins.KeyErr("ca_file", err)
	}
	tc.ServerName = u.Hostname()
	p.tls = tc
	return p, nil
}

// checkLDAPURL allows ldaps://HOST[:PORT] and ldap://HOST[:PORT] with
// StartTLS; plain ldap:// only to a loopback IP address, as the
// password crosses it. The port defaults to 636 and 389. It returns
// the URL with the port set.
func checkLDAPURL(s string, startTLS bool) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return nil, plugins.Errorf("url", "required with backend \"ldap\"")
	case err != nil:
		return nil, plugins.KeyErr("url", err)
	case u.Scheme != "ldaps" && u.Scheme != "ldap":
		return nil, plugins.Errorf("url", "want ldaps:// or ldap://, not %s://", u.Scheme)
	case u.User != nil:
		return nil, plugins.Errorf("url", "must not hold credentials: use bind_user and bind_password")
	case u.Hostname() == "":
		return nil, plugins.Errorf("url", "has no host")
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "":
		return nil, plugins.Errorf("url", "must be only scheme, host and port: the DN and filter have keys of their own")
	case u.Scheme == "ldaps" && startTLS:
		return nil, plugins.Errorf("start_tls", "only applies with ldap://: ldaps:// is TLS from the start")
	}
	if u.Scheme == "ldap" && !startTLS {
		if ip, err := netip.ParseAddr(u.Hostname()); err != nil || !ip.IsLoopback() {
			return nil, plugins.Errorf("url", "ldap:// without start_tls only to a loopback IP address (127.0.0.1, [::1]); use ldaps:// or start_tls = true")
		}
	}
	if u.Port() == "" {
		port := "636"
		if u.Scheme == "ldap" {
			port = "389"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u, nil
}

// setSize sets how many connections are kept.
func (p *ldapPool) setSize(n int) {
	p.mu.Lock()
	p.size = n
	p.mu.Unlock()
}

// run runs fn on a connection within ctx. A connection whose fn failed is
// closed, the others kept. A kept connection found dead (the directory
// restarted since) is replaced by a new one, once.
func (p *ldapPool) run(ctx context.Context, fn func(*ldapConn) (result, error)) (result, error) {
	for try := 0; ; try++ {
		c, reused, err := p.get(ctx)
		if err != nil {
			return result{}, err
		}
		res, err := c.do(ctx, fn)
		if err != nil {
			c.close()
		} else {
			p.put(c)
		}
		if err != nil && reused && try == 0 && ctx.Err() == nil && ldap.IsErrorWithCode(err, ldap.ErrorNetwork) {
			continue
		}
		return res, err
	}
}

// get takes a kept connection, or dials one; reused tells which.
func (p *ldapPool) get(ctx context.Context) (*ldapConn, bool, error) {
	var dead []*ldapConn // the directory closed them while they were kept
	defer func() {
		for _, c := range dead {
			c.close()
		}
	}()
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !c.c.IsClosing() {
			p.mu.Unlock()
			return c, true, nil
		}
		dead = append(dead, c)
	}
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, false, errors.New("ldap backend stopped")
	}
	c, err := p.dial(ctx)
	return c, false, err
}

// put keeps c for the next login, unless the pool is full or closed.
func (p *ldapPool) put(c *ldapConn) {
	p.mu.Lock()
	keep := !p.closed && len(p.idle) < p.size && !c.dead && !c.c.IsClosing()
	if keep {
		p.idle = append(p.idle, c)
	}
	p.mu.Unlock()
	if !keep {
		c.close()
	}
}

// close closes the kept connections, and those in use as they come back.
func (p *ldapPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// dial connects within ctx: TCP, then TLS (ldaps:// or StartTLS).
func (p *ldapPool) dial(ctx context.Context) (*ldapConn, error) {
	if p.dialHook != nil {
		p.dialHook()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, ldap.NewError(ldap.ErrorNetwork, fmt.Errorf("dial %s: %w", p.addr, err))
	}
	raw := &budgetConn{Conn: nc}
	raw.left.Store(maxLDAPRead)
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	var conn net.Conn = raw
	if p.ldaps {
		tc := tls.Client(raw, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("tls with %s: %w", p.addr, err)
		}
		conn = tc
	}
	c := &ldapConn{c: ldap.NewConn(conn, p.ldaps), raw: raw}
	c.c.Start()
	c.c.SetTimeout(p.timeout)
	if p.tls != nil && !p.ldaps {
		if err := c.c.StartTLS(p.tls); err != nil {
			c.close()
			return nil, fmt.Errorf("starttls with %s: %w", p.addr, err)
		}
	}
	return c, nil
}

// do runs fn with c's read budget renewed, closing c's socket if ctx
// ends first: every read and write of fn then fails at once.
func (c *ldapConn) do(ctx context.Context, fn func(*ldapConn) (result, error)) (result, error) {
	c.raw.left.Store(maxLDAPRead)
	stop := context.AfterFunc(ctx, func() { c.raw.Conn.Close() })
	res, err := fn(c)
	if !stop() {
		c.dead = true // closed as fn ended: not to be kept
	}
	return res, err
}

// bind binds as req; as the service account (service true) only when c
// is not already bound as it. A failed bind leaves c anonymous
// (RFC 4511 4.2.1), so c is bound as the service account only after a
// success.
func (c *ldapConn) bind(req *ldap.SimpleBindRequest, service bool) error {
	if service && c.service {
		return nil
	}
	c.service = false
	_, err := c.c.SimpleBind(req)
	c.service = service && err == nil
	return err
}

// search runs req, with its size limit enforced on this side too.
func (c *ldapConn) search(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	req.EnforceSizeLimit = true
	return c.c.Search(req)
}

func (c *ldapConn) close() {
	c.raw.Conn.Close() // at once, without the polite unbind
	c.c.Close()
}

// errLDAPTooLarge ends a connection that sent more than maxLDAPRead
// within one login.
var errLDAPTooLarge = fmt.Errorf("ldap: more than %d bytes within one login", maxLDAPRead)

// budgetConn fails reads past its budget.
type budgetConn struct {
	net.Conn
	left atomic.Int64
}

func (b *budgetConn) Read(p []byte) (int, error) {
	if b.left.Load() <= 0 {
		return 0, errLDAPTooLarge
	}
	n, err := b.Conn.Read(p)
	b.left.Add(-int64(n))
	return n, err
}
