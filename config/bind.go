package config

import (
	"slices"
	"time"
)

// DefaultSocks5BindTimeout is how long a BIND waits for its incoming
// connection when the listener does not say: an FTP server connects back
// within seconds of its PORT command, and two minutes leave room for a
// slow control exchange without holding ports for long.
const DefaultSocks5BindTimeout = 2 * time.Minute

// BindTimeout returns the listener's socks5_bind_timeout or its default.
func (l *Listener) BindTimeout() time.Duration {
	if l.Socks5BindTimeout != nil {
		return l.Socks5BindTimeout.D()
	}
	return DefaultSocks5BindTimeout
}

// socks5Bind checks a listener's BIND settings.
func (l *loader) socks5Bind(p string, ln Listener) {
	if ln.Socks5Bind && !slices.Contains(ln.Protocols, "socks5") {
		l.errorf(p+".socks5_bind", `BIND is a SOCKS5 command: add "socks5" to protocols`)
	}
	if ln.Socks5BindPorts != nil && !ln.Socks5Bind {
		l.errorf(p+".socks5_bind_ports", "set socks5_bind = true, or leave this out")
	}
	if ln.Socks5BindTimeout != nil {
		if !ln.Socks5Bind {
			l.errorf(p+".socks5_bind_timeout", "set socks5_bind = true, or leave this out")
		}
		l.positive(p+".socks5_bind_timeout", *ln.Socks5BindTimeout)
	}
}
