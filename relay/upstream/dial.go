package upstream

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"

	"golang.org/x/net/proxy"

	"ferry/plugins"
)

// Dialer reaches a target address. It is golang.org/x/net/proxy's
// ContextDialer, so direct dialing, SOCKS5 and HTTP CONNECT upstreams, and
// chains of them, compose as one shape.
type Dialer = proxy.ContextDialer

// DialCode maps a dial error to what the client is told: timeout, refused,
// unreachable, or a general failure.
func DialCode(err error) plugins.Code {
	var re *plugins.RejectError
	if errors.As(err, &re) {
		return re.Code
	}
	var ue *Error
	if errors.As(err, &ue) {
		return ue.Code
	}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return plugins.CodeTimeout
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return plugins.CodeTimeout
		}
		return plugins.CodeHostUnreachable
	case errors.Is(err, syscall.ECONNREFUSED):
		return plugins.CodeConnRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
		return plugins.CodeHostUnreachable
	case errors.Is(err, syscall.ENETUNREACH):
		return plugins.CodeNetUnreachable
	case errors.Is(err, syscall.ETIMEDOUT):
		return plugins.CodeTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return plugins.CodeTimeout
	}
	return plugins.CodeGeneral
}
