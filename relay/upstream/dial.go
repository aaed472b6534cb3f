package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/net/proxy"

	"ferry/plugins"
	"ferry/plugins/pkg/netx"
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
	var se *SourceError
	if errors.As(err, &se) {
		return plugins.CodeGeneral // ferry's fault, not the target's
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
	case netx.IsRefused(err):
		return plugins.CodeConnRefused
	case netx.IsHostUnreachable(err):
		return plugins.CodeHostUnreachable
	case netx.IsNetUnreachable(err):
		return plugins.CodeNetUnreachable
	case netx.IsTimedOut(err):
		return plugins.CodeTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return plugins.CodeTimeout
	}
	return plugins.CodeGeneral
}

// Stage says where a dial through an upstream failed.
type Stage string

// Stages of an upstream dial.
const (
	// StageConnect: the upstream itself could not be reached.
	StageConnect Stage = "connect"
	// StageHandshake: it was reached but the proxy handshake (or TLS)
	// failed or timed out.
	StageHandshake Stage = "handshake"
	// StageAuth: it refused ferry's credentials.
	StageAuth Stage = "auth"
	// StageTarget: it answered that it could not reach the target (or
	// would not): the upstream works, the destination failed.
	StageTarget Stage = "target"
	// StageDown: a group had no member up to try.
	StageDown Stage = "down"
)

// Error is a dial through an upstream proxy that failed, with the
// upstream it failed at and what the client is told.
type Error struct {
	Upstream string
	Stage    Stage
	Code     plugins.Code
	Err      error
}

func (e *Error) Error() string {
	switch e.Stage {
	case StageAuth:
		return fmt.Sprintf("upstream %s: auth failed: %v", e.Upstream, e.Err)
	case StageTarget:
		return fmt.Sprintf("upstream %s: %v", e.Upstream, e.Err)
	}
	return fmt.Sprintf("upstream %s: %s: %v", e.Upstream, e.Stage, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// memberFailed reports whether err blames an upstream on the way (so a
// group should skip the member and try the next) rather than the target.
func memberFailed(err error) bool {
	var ue *Error
	return errors.As(err, &ue) && ue.Stage != StageTarget
}

// forwardError wraps an error from dialing upstream name through its
// forward dialer. An upstream further along that failed stays to blame;
// a hop before that reported the target (this upstream) unreachable makes
// this upstream unreachable.
func forwardError(name string, err error) error {
	var ue *Error
	if errors.As(err, &ue) {
		if ue.Stage != StageTarget {
			return err
		}
		return &Error{Upstream: name, Stage: StageConnect, Code: ue.Code, Err: err}
	}
	return &Error{Upstream: name, Stage: StageConnect, Code: DialCode(err), Err: err}
}

// handshakeError wraps a failed or timed-out proxy handshake.
func handshakeError(name string, ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	code := plugins.CodeGeneral
	if DialCode(err) == plugins.CodeTimeout {
		code = plugins.CodeTimeout
	}
	return &Error{Upstream: name, Stage: StageHandshake, Code: code, Err: err}
}
