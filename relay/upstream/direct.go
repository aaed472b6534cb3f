package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Direct returns the dialer ferry itself connects with: the first hop to
// an upstream proxy. It leaves from the context's DialInfo.Source when
// one is set. The dial deadline comes from the caller's context.
func Direct() Dialer {
	return sourceDialer{&net.Dialer{KeepAlive: 30 * time.Second}}
}

// sourceDialer is a net.Dialer that binds the context's DialInfo.Source.
type sourceDialer struct{ d *net.Dialer }

func (s sourceDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return dialFrom(ctx, s.d, dialInfoFrom(ctx), network, address)
}

// ErrSourceFamily is a dial to an address of the other family than its
// source address's: an IPv4 source cannot reach an IPv6 target.
var ErrSourceFamily = errors.New("target is of the other address family than the source address")

// SourceError is a dial that could not leave from its source address:
// the address is not (or no longer) on this host, or the target is of
// the other family. The client is told of a general failure (HTTP 502,
// SOCKS5 0x01): the proxy, not the target, is at fault.
type SourceError struct {
	Source netip.Addr
	Err    error
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("bind source address %s: %v", e.Source, e.Err)
}

func (e *SourceError) Unwrap() error { return e.Err }

// dialFrom dials with d, bound to info's source address when it has one.
// A name's addresses of the other family are skipped by net.Dialer
// itself; an address literal of the other family fails with
// ErrSourceFamily, before any socket is made.
func dialFrom(ctx context.Context, d *net.Dialer, info *DialInfo, network, address string) (net.Conn, error) {
	if info == nil || !info.Source.IsValid() {
		return d.DialContext(ctx, network, address)
	}
	src := info.Source
	if ap, err := netip.ParseAddrPort(address); err == nil && ap.Addr().Unmap().Is4() != src.Is4() {
		return nil, &SourceError{Source: src, Err: fmt.Errorf("%w: %s", ErrSourceFamily, address)}
	}
	bound := *d
	bound.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	c, err := bound.DialContext(ctx, network, address)
	if err != nil {
		var se *os.SyscallError
		var ae *net.AddrError
		switch {
		case errors.As(err, &se) && se.Syscall == "bind":
			return nil, &SourceError{Source: src, Err: err}
		case errors.As(err, &ae) && ae.Err == "no suitable address found":
			return nil, &SourceError{Source: src, Err: fmt.Errorf("%w: %s has no address of its family", ErrSourceFamily, address)}
		}
	}
	return c, err
}

// DirectTarget returns the dialer of a direct dial to the target: like
// Direct, but it runs the context's DialInfo.Refuse and CheckDial on each address
// and dials DialInfo.Pinned addresses instead of resolving again.
func DirectTarget() Dialer {
	d := &net.Dialer{KeepAliveConfig: TargetKeepAlive}
	d.ControlContext = func(ctx context.Context, network, address string, _ syscall.RawConn) error {
		info := dialInfoFrom(ctx)
		if info == nil || info.CheckDial == nil && info.Refuse == nil {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("check dial address %q: %w", address, err)
		}
		if info.Refuse != nil {
			if err := info.Refuse(ap); err != nil {
				return err
			}
		}
		if info.CheckDial == nil {
			return nil
		}
		return info.CheckDial(ap)
	}
	lazy := *d
	lazy.KeepAlive, lazy.KeepAliveConfig = -1, net.KeepAliveConfig{}
	return directTarget{d, &lazy}
}

// TargetKeepAlive is the TCP keep-alive of connections to targets: a
// probe after 30 s of silence, Go's defaults for the rest.
var TargetKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second}

// directTarget dials with d, or with lazy (no keep-alive) when the
// DialInfo asks for LazyKeepAlive.
type directTarget struct{ d, lazy *net.Dialer }

func (t directTarget) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	info := dialInfoFrom(ctx)
	d := t.d
	if info != nil && info.LazyKeepAlive {
		d = t.lazy
		info.deferred.Store(true)
	}
	if info == nil || len(info.Pinned) == 0 {
		return dialFrom(ctx, d, info, network, address)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil || host != info.PinnedHost {
		return dialFrom(ctx, d, info, network, address)
	}
	pinned := sameFamily(info.Pinned, info.Source)
	if len(pinned) == 0 {
		return nil, &SourceError{Source: info.Source, Err: fmt.Errorf("%w: %s has no address of its family", ErrSourceFamily, host)}
	}
	var first error
	for i, ip := range pinned {
		// Each address gets a fair share of what is left, as net.Dialer
		// does for the addresses it resolves.
		actx := ctx
		if dl, ok := ctx.Deadline(); ok && i < len(pinned)-1 {
			var cancel context.CancelFunc
			actx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/time.Duration(len(pinned)-i)))
			defer cancel()
		}
		c, err := dialFrom(actx, d, info, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// sameFamily returns the addresses of src's family, all of them when src
// is unset.
func sameFamily(addrs []netip.Addr, src netip.Addr) []netip.Addr {
	if !src.IsValid() {
		return addrs
	}
	var out []netip.Addr
	for _, a := range addrs {
		if a.Unmap().Is4() == src.Is4() {
			out = append(out, a)
		}
	}
	return out
}
