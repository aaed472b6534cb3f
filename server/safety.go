package server

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"ferry/plugins"
)

// What a direct dial must not reach, checked on every address it is about
// to connect to (after resolution, so a name cannot escape the check):
//
//   - ferry's own listening sockets: a tunnel there loops back into
//     ferry, each turn holding two more descriptors and hiding the real
//     client behind 127.0.0.1;
//   - the admin service: any proxy client could list, close and reload;
//   - for a listener bound beyond loopback without
//     allow_local_destinations, any address of the proxy host itself.
//
// Addresses are compared normalised: IPv4-mapped IPv6 unmapped, zone
// dropped, an unspecified address (or anything in 0.0.0.0/8) taken as
// "this host", which is where connect(2) sends it. A socket bound to an
// unspecified address is reachable at every local address on its port.
// Dials through an upstream proxy are not checked: the proxy resolves and
// connects, and the address it reaches is its own business (see README,
// "Safe by default").

// selfKind says which of ferry's own services an address reaches.
type selfKind uint8

const (
	notSelf selfKind = iota
	selfListener
	selfAdmin // above selfListener: when both match, the admin is named
)

// selfAddrs are the addresses ferry's listeners and admin service accept
// on.
type selfAddrs struct {
	exact map[netip.AddrPort]selfKind
	// anyPort holds ports bound at an unspecified address (":8080",
	// "0.0.0.0:8080"), reachable at every local address.
	anyPort map[uint16]selfKind
	// port holds every port above, whatever the address: an unspecified
	// destination reaches this host on it.
	port map[uint16]selfKind
}

// newSelfAddrs collects the bound addresses of socks and of the admin
// service (invalid when there is none).
func newSelfAddrs(socks []*socket, admin netip.AddrPort) *selfAddrs {
	m := &selfAddrs{exact: map[netip.AddrPort]selfKind{}, anyPort: map[uint16]selfKind{}, port: map[uint16]selfKind{}}
	for _, k := range socks {
		if ta, ok := k.ln.Addr().(*net.TCPAddr); ok {
			m.add(ta.AddrPort(), selfListener)
		}
	}
	if admin.IsValid() {
		m.add(admin, selfAdmin)
	}
	return m
}

func (m *selfAddrs) add(ap netip.AddrPort, k selfKind) {
	ip, p := normAddr(ap.Addr()), ap.Port()
	if ip.IsUnspecified() {
		m.anyPort[p] = max(m.anyPort[p], k)
	} else {
		key := netip.AddrPortFrom(ip, p)
		m.exact[key] = max(m.exact[key], k)
	}
	m.port[p] = max(m.port[p], k)
}

// lookup returns which service a connection to ip (normalised) and port
// reaches; local reports whether an address is this host's.
func (m *selfAddrs) lookup(ip netip.Addr, port uint16, local func(netip.Addr) bool) selfKind {
	if ip.IsUnspecified() {
		return m.port[port]
	}
	k := m.exact[netip.AddrPortFrom(ip, port)]
	if a := m.anyPort[port]; a > k && local(ip) {
		k = a
	}
	return k
}

// normAddr returns ip as the kernel will connect to it: IPv4-mapped IPv6
// unmapped, without zone, and 0.0.0.0/8 ("this host on this network")
// as the unspecified address.
func normAddr(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() && ip.As4()[0] == 0 {
		return netip.IPv4Unspecified()
	}
	if ip.Is6() && ip.IsUnspecified() {
		return netip.IPv4Unspecified() // one spelling of "this host"
	}
	return ip
}

// hostAddrsTTL is how long the host's interface addresses are trusted
// before the next dial that needs them lists them again.
const hostAddrsTTL = 5 * time.Second

// hostAddrs caches this host's interface addresses. They change (DHCP,
// VPNs, containers), so a set older than hostAddrsTTL is listed again by
// the first dial that finds it stale, while concurrent dials use the
// previous set; Start and each reload list them too.
type hostAddrs struct {
	mu  sync.Mutex // held while listing
	cur atomic.Pointer[addrSet]
	// list returns the addresses; nil means net.InterfaceAddrs.
	list func() ([]net.Addr, error)
}

type addrSet struct {
	at    time.Time
	addrs map[netip.Addr]bool
}

// has reports whether ip (normalised) is an address of this host's
// interfaces.
func (h *hostAddrs) has(ip netip.Addr) bool {
	set := h.cur.Load()
	switch {
	case set == nil:
		set = h.refresh()
	case time.Since(set.at) > hostAddrsTTL && h.mu.TryLock():
		set = h.refreshLocked()
		h.mu.Unlock()
	}
	return set.addrs[ip]
}

// refresh lists the addresses now.
func (h *hostAddrs) refresh() *addrSet {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refreshLocked()
}

func (h *hostAddrs) refreshLocked() *addrSet {
	list := h.list
	if list == nil {
		list = net.InterfaceAddrs
	}
	set := &addrSet{at: time.Now(), addrs: map[netip.Addr]bool{}}
	addrs, err := list()
	if err != nil {
		// Keep what was known; try again after the TTL.
		if old := h.cur.Load(); old != nil {
			set.addrs = old.addrs
		}
	}
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		if nip, ok := netip.AddrFromSlice(ip); ok {
			set.addrs[normAddr(nip)] = true
		}
	}
	h.cur.Store(set)
	return set
}

// isLocal reports whether a connection to ip (normalised) stays on this
// host: loopback, unspecified, or one of its interface addresses.
func (s *Server) isLocal(ip netip.Addr) bool {
	return ip.IsLoopback() || ip.IsUnspecified() || s.host.has(ip)
}

// SetAdminAddr tells the server where the admin service listens, so that
// no client reaches it through the proxy. Call it before Start (or at
// any time after).
func (s *Server) SetAdminAddr(a net.Addr) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.adminAddr = ta.AddrPort()
	if s.sockets != nil {
		s.self.Store(newSelfAddrs(s.sockets, s.adminAddr))
	}
}

// refuseSelf refuses addresses of ferry's own listeners (a loop) and of
// its admin service, and logs the refusal at most once per selfLogPeriod.
func (s *Server) refuseSelf(l *frontend, ap netip.AddrPort, ip netip.Addr) error {
	m := s.self.Load()
	if m == nil {
		return nil
	}
	var msg, what string
	kind := m.lookup(ip, ap.Port(), s.isLocal)
	switch kind {
	case notSelf:
		return nil
	case selfAdmin:
		what, msg = "admin", fmt.Sprintf("%s is ferry's admin service, which is never reachable through the proxy", ap)
	default:
		what, msg = "loop", fmt.Sprintf("%s is ferry's own listener: a tunnel there would loop", ap)
	}
	if ok, suppressed := s.selfLog[kind].Pass(time.Now()); ok {
		l.log.Warn().Str("addr", ap.String()).Str("refused", what).Int("suppressed", suppressed).
			Msg("refused a dial back into ferry (" + what + ")")
	}
	return plugins.Reject(plugins.CodeForbidden, msg)
}

// selfLogPeriod throttles the warning about dials back into ferry.
const selfLogPeriod = 10 * time.Second

// refuseDial is DialInfo.Refuse for the listener's direct dials: no dial
// to ferry itself, and none to the proxy host from a listener bound
// beyond loopback unless it allows local destinations.
func (l *frontend) refuseDial(ap netip.AddrPort) error {
	ip := normAddr(ap.Addr())
	if err := l.srv.refuseSelf(l, ap, ip); err != nil {
		return err
	}
	if l.guardLocal && l.srv.isLocal(ip) {
		return plugins.Reject(plugins.CodeForbidden, fmt.Sprintf("%s is on the proxy host itself: listener %s "+
			"binds beyond loopback and does not set allow_local_destinations", ap, l.cfg.Name))
	}
	return nil
}

// openProxyWarnings names the listeners of g that anyone who can reach
// them may use: bound beyond loopback, with neither authentication nor a
// plugin that limits clients (an acl with client or user rules and
// default deny).
func openProxyWarnings(g *generation) []string {
	var out []string
	for _, l := range g.listeners {
		if l.tcpTarget != "" || loopbackListen(l.cfg.Listen) || l.chain.RestrictsClients() {
			continue
		}
		out = append(out, fmt.Sprintf("listener %s on %s is an OPEN PROXY: it binds beyond loopback and neither "+
			"authenticates clients nor limits them with an acl; anyone who can reach it can relay through it "+
			"(add an auth plugin, or an acl with client rules and default = \"deny\")", l.cfg.Name, l.cfg.Listen))
	}
	return out
}

// loopbackListen reports whether a listen address accepts from this host
// only.
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Warnings returns what is risky about the current configuration, such
// as open proxies; `ferry check` prints them and Start logs them.
func (s *Server) Warnings() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return openProxyWarnings(s.gen)
}
