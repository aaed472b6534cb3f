package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"ferry/plugins"
	"ferry/proxyproto"
)

// DialInfo travels in a dial's context (WithDialInfo): the caller puts in
// what the dialers need to know about the session, and the upstream
// dialers report the hops they went through and what must be released
// when the connection ends. Every dialer keeps the ContextDialer shape, so
// kinds nest freely (a group of chains of groups) and still report.
type DialInfo struct {
	// ProxyHeader is the PROXY header an upstream with send_proxy_protocol
	// sends: the client as source, the address it reached as destination,
	// and the TLVs a load balancer sent ferry. nil when not needed.
	ProxyHeader *proxyproto.Header
	// CheckDial, if set, vets every address a direct dial to the target is
	// about to connect to (the plugins' DialCheckers). Dials to upstream
	// proxies are not checked: the proxy is not the destination.
	CheckDial func(netip.AddrPort) error
	// Refuse, if set, vets the same addresses before CheckDial: the
	// server's own rules (no dials to ferry's own listeners or admin
	// service, none to the proxy host from a listener bound beyond
	// loopback).
	Refuse func(netip.AddrPort) error
	// Pinned are addresses the target's name was already resolved to (by
	// a route that needed them): a direct dial to Host uses them instead of
	// resolving again, so what was matched is what is dialed.
	Pinned     []netip.Addr
	PinnedHost string

	mu       sync.Mutex
	hops     []string
	releases []func()
}

type dialInfoKey struct{}

// WithDialInfo returns ctx carrying info.
func WithDialInfo(ctx context.Context, info *DialInfo) context.Context {
	return context.WithValue(ctx, dialInfoKey{}, info)
}

func dialInfoFrom(ctx context.Context) *DialInfo {
	info, _ := ctx.Value(dialInfoKey{}).(*DialInfo)
	return info
}

// Path is the upstream proxies the dial went through, first hop first,
// joined by ">"; empty for a direct dial. Sessions log it as "chain"
// (Session.UpstreamChain).
func (d *DialInfo) Path() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.hops, ">")
}

// Release undoes what the dial holds (least-connections counts). Call it
// once, when the connection is closed.
func (d *DialInfo) Release() {
	d.mu.Lock()
	rs := d.releases
	d.releases = nil
	d.mu.Unlock()
	for _, r := range rs {
		r()
	}
}

func (d *DialInfo) addHop(name string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.hops = append(d.hops, name)
	d.mu.Unlock()
}

func (d *DialInfo) onRelease(f func()) bool {
	if d == nil {
		return false
	}
	d.mu.Lock()
	d.releases = append(d.releases, f)
	d.mu.Unlock()
	return true
}

// mark and rewind let a group undo the hops of a member that failed.
func (d *DialInfo) mark() int {
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.hops)
}

func (d *DialInfo) rewind(n int) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.hops = d.hops[:n]
	d.mu.Unlock()
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

// Direct returns a dialer that connects straight to its address, for the
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
