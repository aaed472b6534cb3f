package server

import (
	"net/netip"
	"strings"
	"testing"
)

func TestSelfAddrs(t *testing.T) {
	f := start(t, `
[[listener]]
name = "wide"
listen = "0.0.0.0:0"
[[listener]]
name = "local"
listen = "127.0.0.2:0"
`)
	addrs := f.srv.Addrs()
	wide := netip.MustParseAddrPort(addrs[0].String()).Port()
	local := netip.MustParseAddrPort(addrs[1].String())
	for _, tt := range []struct {
		ap   string
		self bool
	}{
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), wide).String(), true},
		{netip.AddrPortFrom(netip.MustParseAddr("127.9.9.9"), wide).String(), true},
		{netip.AddrPortFrom(netip.MustParseAddr("::1"), wide).String(), true},
		{netip.AddrPortFrom(netip.MustParseAddr("0.0.0.0"), wide).String(), true},
		{netip.AddrPortFrom(netip.MustParseAddr("::ffff:127.0.0.1"), wide).String(), true},
		{netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), wide).String(), false}, // not this host
		{local.String(), true},
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), local.Port()).String(), false}, // bound to .2 only
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), wide+1).String(), local.Port() == wide+1},
	} {
		err := f.srv.refuseSelf(netip.MustParseAddrPort(tt.ap))
		if (err != nil) != tt.self {
			t.Errorf("%s: refused %v, want %v", tt.ap, err, tt.self)
		}
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
