package server

import (
	"fmt"
	"net"
	"net/netip"

	"ferry/plugins"
)

// selfAddrs are the addresses ferry's listeners accept on. A tunnel to
// one of them would loop back into ferry (each turn holding two more
// descriptors, until they run out), so direct dials there are refused.
type selfAddrs struct {
	exact map[netip.AddrPort]bool
	// anyPort holds ports listened on at an unspecified address (":8080",
	// "0.0.0.0:8080"), reachable at every local address.
	anyPort map[uint16]bool
	local   map[netip.Addr]bool
}

// newSelfAddrs collects the bound addresses of socks and this host's
// interface addresses.
func newSelfAddrs(socks []*socket) *selfAddrs {
	m := &selfAddrs{exact: map[netip.AddrPort]bool{}, anyPort: map[uint16]bool{}, local: map[netip.Addr]bool{}}
	for _, k := range socks {
		ta, ok := k.ln.Addr().(*net.TCPAddr)
		if !ok {
			continue
		}
		ap := ta.AddrPort()
		ip := ap.Addr().Unmap()
		if ip.IsUnspecified() {
			m.anyPort[ap.Port()] = true
		} else {
			m.exact[netip.AddrPortFrom(ip, ap.Port())] = true
		}
	}
	if len(m.anyPort) > 0 {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if pn, ok := a.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(pn.IP); ok {
						m.local[ip.Unmap()] = true
					}
				}
			}
		}
	}
	return m
}

func (m *selfAddrs) has(ap netip.AddrPort) bool {
	ip := ap.Addr().Unmap()
	if m.exact[netip.AddrPortFrom(ip, ap.Port())] {
		return true
	}
	return m.anyPort[ap.Port()] && (ip.IsLoopback() || ip.IsUnspecified() || m.local[ip])
}

// refuseSelf is DialInfo.Refuse for direct dials.
func (s *Server) refuseSelf(ap netip.AddrPort) error {
	if m := s.self.Load(); m != nil && m.has(ap) {
		return plugins.Reject(plugins.CodeForbidden, fmt.Sprintf("%s is ferry's own listener: a tunnel there would loop", ap))
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
