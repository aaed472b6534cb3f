package server

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNormAddr(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"ipv4", "127.0.0.1", "127.0.0.1"},
		{"ipv4-mapped", "::ffff:127.0.0.1", "127.0.0.1"},
		{"ipv4-mapped public", "::ffff:192.0.2.1", "192.0.2.1"},
		{"zone", "::1%lo", "::1"},
		{"link-local zone", "fe80::1%eth0", "fe80::1"},
		{"ipv4 unspecified", "0.0.0.0", "0.0.0.0"},
		{"ipv6 unspecified", "::", "0.0.0.0"},
		{"mapped unspecified", "::ffff:0.0.0.0", "0.0.0.0"},
		{"this network", "0.1.2.3", "0.0.0.0"},
		{"ipv6", "2001:db8::1", "2001:db8::1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := normAddr(netip.MustParseAddr(tt.in)).String(); got != tt.want {
				t.Fatalf("normAddr(%s) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestSelfAddrsLookup(t *testing.T) {
	m := &selfAddrs{exact: map[netip.AddrPort]selfKind{}, anyPort: map[uint16]selfKind{}, port: map[uint16]selfKind{}}
	m.add(netip.MustParseAddrPort("127.0.0.1:8080"), selfListener)
	m.add(netip.MustParseAddrPort("[::1%lo]:8081"), selfListener)
	m.add(netip.MustParseAddrPort("[::]:3128"), selfListener)
	m.add(netip.MustParseAddrPort("0.0.0.0:9090"), selfAdmin)
	m.add(netip.MustParseAddrPort("127.0.0.2:9091"), selfAdmin)
	// This host: loopback plus one interface address.
	local := func(ip netip.Addr) bool { return ip.IsLoopback() || ip == netip.MustParseAddr("192.0.2.7") }
	for _, tt := range []struct {
		name, ap string
		want     selfKind
	}{
		{"exact", "127.0.0.1:8080", selfListener},
		{"other port", "127.0.0.1:8082", notSelf},
		{"other loopback address", "127.0.0.2:8080", notSelf},
		{"unspecified", "0.0.0.0:8080", selfListener},
		{"ipv6 unspecified", "[::]:8080", selfListener},
		{"this network", "0.9.9.9:8080", selfListener},
		{"mapped", "[::ffff:127.0.0.1]:8080", selfListener},
		{"mapped unspecified", "[::ffff:0.0.0.0]:8080", selfListener},
		{"zone on destination", "[::1%lo]:8081", selfListener},
		{"zone on neither", "[::1]:8081", selfListener},
		{"other zone", "[::1%eth0]:8081", selfListener},
		{"any address: loopback", "127.9.9.9:3128", selfListener},
		{"any address: ipv6 loopback", "[::1]:3128", selfListener},
		{"any address: interface", "192.0.2.7:3128", selfListener},
		{"any address: mapped interface", "[::ffff:192.0.2.7]:3128", selfListener},
		{"any address: not this host", "192.0.2.8:3128", notSelf},
		{"admin on any address", "127.0.0.1:9090", selfAdmin},
		{"admin unspecified", "[::]:9090", selfAdmin},
		{"admin exact", "127.0.0.2:9091", selfAdmin},
		{"admin exact, other address", "127.0.0.1:9091", notSelf},
		{"admin port, unspecified", "0.0.0.0:9091", selfAdmin},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tt.ap)
			if got := m.lookup(normAddr(ap.Addr()), ap.Port(), local); got != tt.want {
				t.Fatalf("lookup(%s) = %d, want %d", tt.ap, got, tt.want)
			}
		})
	}
}

func TestHostAddrs(t *testing.T) {
	var addrs []net.Addr
	var err error
	calls := 0
	h := &hostAddrs{list: func() ([]net.Addr, error) { calls++; return addrs, err }}
	ip := netip.MustParseAddr("192.0.2.7")
	addrs = []net.Addr{&net.IPNet{IP: net.ParseIP("192.0.2.7"), Mask: net.CIDRMask(24, 32)},
		&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)}}
	if !h.has(ip) || !h.has(netip.MustParseAddr("fe80::1")) || h.has(netip.MustParseAddr("192.0.2.8")) {
		t.Fatal("the listed addresses are not the host's")
	}
	if calls != 1 {
		t.Fatalf("listed %d times, want 1 (cached)", calls)
	}
	// A stale set is listed again; a failed listing keeps the old one.
	addrs, err = nil, errors.New("netlink: boom")
	h.cur.Load().at = time.Now().Add(-2 * hostAddrsTTL)
	if !h.has(ip) || calls != 2 {
		t.Fatalf("after a failed listing: has %v, calls %d; want the old set, 2 calls", h.has(ip), calls)
	}
	addrs, err = []net.Addr{&net.IPAddr{IP: net.ParseIP("192.0.2.9")}}, nil
	h.cur.Load().at = time.Now().Add(-2 * hostAddrsTTL)
	if h.has(ip) || !h.has(netip.MustParseAddr("192.0.2.9")) {
		t.Fatal("a fresh listing did not replace the old set")
	}
}

func TestRefuseDial(t *testing.T) {
	f := start(t, `
[[listener]]
name = "wide"
listen = "0.0.0.0:0"
[[listener]]
name = "wide-ok"
listen = "0.0.0.0:0"
allow_local_destinations = true
[[listener]]
name = "local"
listen = "127.0.0.2:0"
`)
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer adminLn.Close()
	f.srv.SetAdminAddr(adminLn.Addr())
	admin := netip.MustParseAddrPort(adminLn.Addr().String()).Port()
	addrs := f.srv.Addrs()
	wide := netip.MustParseAddrPort(addrs[0].String()).Port()
	local := netip.MustParseAddrPort(addrs[2].String())
	free := uint16(1) // nothing of ferry's there (tcpmux)
	at := func(ip string, port uint16) string {
		return netip.AddrPortFrom(netip.MustParseAddr(ip), port).String()
	}
	// ifaddr is an address of this host that is not loopback, if any.
	var ifaddr string
	if as, err := net.InterfaceAddrs(); err == nil {
		for _, a := range as {
			if pn, ok := a.(*net.IPNet); ok && !pn.IP.IsLoopback() {
				ifaddr = pn.IP.String()
				break
			}
		}
	}
	g := f.srv.gen
	for _, tt := range []struct {
		name, listener, ap string
		want               string // what the refusal says; "" for none
	}{
		{"loop to any address", "wide-ok", at("127.0.0.1", wide), "loop"},
		{"loop to other loopback", "wide-ok", at("127.9.9.9", wide), "loop"},
		{"loop to ipv6 loopback", "wide-ok", at("::1", wide), "loop"},
		{"loop to unspecified", "wide-ok", at("0.0.0.0", wide), "loop"},
		{"loop to ipv6 unspecified", "local", at("::", wide), "loop"},
		{"loop mapped", "local", at("::ffff:127.0.0.1", wide), "loop"},
		{"loop zone", "local", "[::1%lo]:" + strconv.Itoa(int(wide)), "loop"},
		{"loop exact", "wide-ok", local.String(), "loop"},
		{"loop exact unspecified", "local", at("0.0.0.0", local.Port()), "loop"},
		{"other loopback address", "local", at("127.0.0.1", local.Port()), ""},
		{"not this host", "wide", at("192.0.2.1", wide), ""},
		{"admin", "local", at("127.0.0.1", admin), "admin"},
		{"admin, allowing listener", "wide-ok", at("0.0.0.0", admin), "admin"},
		{"local from wide", "wide", at("127.0.0.1", free), "allow_local_destinations"},
		{"ipv6 local from wide", "wide", at("::1", free), "allow_local_destinations"},
		{"unspecified from wide", "wide", at("0.0.0.0", free), "allow_local_destinations"},
		{"mapped from wide", "wide", at("::ffff:127.0.0.5", free), "allow_local_destinations"},
		{"local, allowed", "wide-ok", at("127.0.0.1", free), ""},
		{"local from loopback listener", "local", at("127.0.0.1", free), ""},
		{"remote from wide", "wide", at("192.0.2.1", free), ""},
		{"interface address from wide", "wide", ifaddr, "allow_local_destinations"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ap == "" || strings.HasPrefix(tt.ap, ":") {
				t.Skip("no interface address beside loopback")
			}
			if tt.name == "interface address from wide" {
				tt.ap = net.JoinHostPort(tt.ap, "1")
			}
			var l *frontend
			for _, c := range g.listeners {
				if c.cfg.Name == tt.listener {
					l = c
				}
			}
			err := l.refuseDial(netip.MustParseAddrPort(tt.ap))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("%s via %s: refused (%v), want allowed", tt.ap, tt.listener, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("%s via %s: got %v, want a refusal saying %q", tt.ap, tt.listener, err, tt.want)
			}
		})
	}
	if !strings.Contains(f.logs.String(), "refused a dial back into ferry (loop)") {
		t.Errorf("no warning about the loop in the log:\n%s", f.logs.String())
	}
}

func TestOpenProxyWarnings(t *testing.T) {
	for _, tt := range []struct {
		name, toml string
		warn       bool
	}{
		{"loopback", `listen = "127.0.0.1:0"`, false},
		{"localhost", `listen = "localhost:0"`, false},
		{"ipv6 loopback", `listen = "[::1]:0"`, false},
		{"all interfaces", `listen = "0.0.0.0:0"`, true},
		{"empty host", `listen = ":0"`, true},
		{"tcp forward", "listen = \":0\"\nprotocols = [\"tcp\"]\ntarget = \"127.0.0.1:9\"", false},
		{"auth", "listen = \":0\"\nplugins = [\"auth\"]\n[[plugin]]\nname = \"auth\"\n[plugin.users]\na = \"plain:b\"", false},
		{"acl on clients", "listen = \":0\"\nplugins = [\"acl\"]\n[[plugin]]\nname = \"acl\"\ndefault = \"deny\"\n[[plugin.rule]]\naction = \"allow\"\nclient = [\"10.0.0.0/8\"]", false},
		{"acl on destinations only", "listen = \":0\"\nplugins = [\"acl\"]\n[[plugin]]\nname = \"acl\"\ndefault = \"deny\"\n[[plugin.rule]]\naction = \"allow\"\nport = [443]", true},
		{"acl default allow", "listen = \":0\"\nplugins = [\"acl\"]\n[[plugin]]\nname = \"acl\"\ndefault = \"allow\"\n[[plugin.rule]]\naction = \"deny\"\nclient = [\"10.0.0.0/8\"]", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, "[[listener]]\nname = \"l\"\n"+tt.toml+"\n")
			ws := f.srv.Warnings()
			if got := len(ws) > 0; got != tt.warn {
				t.Fatalf("warnings %q, want some: %v", ws, tt.warn)
			}
			if logged := strings.Contains(f.logs.String(), "OPEN PROXY"); logged != tt.warn {
				t.Fatalf("logged at start: %v, want %v", logged, tt.warn)
			}
		})
	}
}
