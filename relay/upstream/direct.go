package upstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// first hop to an upstream proxy. The dial deadline comes from the
// caller's context.
func Direct() Dialer {
	return &net.Dialer{KeepAlive: 30 * time.Second}
}

// DirectTarget returns the dialer of a direct dial to the target: like
// Direct, but it runs the context's DialInfo.Refuse and CheckDial on each address
// and dials DialInfo.Pinned addresses instead of resolving again.
func DirectTarget() Dialer {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
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
	return directTarget{d}
}

type directTarget struct{ d *net.Dialer }

func (t directTarget) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	info := dialInfoFrom(ctx)
	if info == nil || len(info.Pinned) == 0 {
		return t.d.DialContext(ctx, network, address)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil || host != info.PinnedHost {
		return t.d.DialContext(ctx, network, address)
	}
	var first error
	for i, ip := range info.Pinned {
		// Each address gets a fair share of what is left, as net.Dialer
		// does for the addresses it resolves.
		actx := ctx
		if dl, ok := ctx.Deadline(); ok && i < len(info.Pinned)-1 {
			var cancel context.CancelFunc
			actx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/time.Duration(len(info.Pinned)-i)))
			defer cancel()
		}
		c, err := t.d.DialContext(actx, network, net.JoinHostPort(ip.String(), port))
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
