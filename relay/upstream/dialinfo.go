package upstream

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

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
	// Source, if valid, is the local address the dial leaves from (a
	// route's source_address): a direct dial to the target, or the first
	// hop to an upstream proxy; the hops beyond are the proxies'. A
	// target of the other address family is skipped: a name's other
	// addresses are tried, and an address literal fails with
	// ErrSourceFamily.
	Source netip.Addr
	// LazyKeepAlive asks a direct dial to the target to leave TCP
	// keep-alive off; when it did, KeepAliveDeferred reports it and the
	// caller turns keep-alive on (TargetKeepAlive) once the connection
	// goes idle: most tunnels end before, and turning it on costs four
	// system calls, 5% of ferry's CPU per new tunnel.
	LazyKeepAlive bool

	deferred atomic.Bool
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
// (Session.UpstreamPath).
func (d *DialInfo) Path() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.hops, ">")
}

// KeepAliveDeferred reports whether the dial left the target
// connection's keep-alive off, as LazyKeepAlive asked.
func (d *DialInfo) KeepAliveDeferred() bool { return d != nil && d.deferred.Load() }

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
