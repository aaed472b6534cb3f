package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// PAC is a listener's proxy auto-config: what its GET /proxy.pac answers
// (and the admin service's). Every string here reaches JavaScript, so
// each is checked against a narrow grammar here, and escaped again where
// the file is written.
type PAC struct {
	// Direct lists host names that go DIRECT: a name ("intranet",
	// "localhost"), a shell pattern ("*.internal", "db?.lan"), or
	// ".example.com" for the name and every name under it, as in a
	// route's match. Compared without regard to case.
	Direct []string `toml:"direct"`
	// DirectNetworks lists CIDRs whose addresses go DIRECT. An IP-literal
	// host is compared as it is; a name is resolved by the browser
	// (dnsResolve; dnsResolveEx where the browser has it, for IPv6) only
	// when no Direct entry matched.
	DirectNetworks []CIDR `toml:"direct_networks"`
	// Proxies lists what the browser tries, in order: "PROXY host:port",
	// "HTTPS host:port", "SOCKS5 host:port" or "SOCKS host:port". Default:
	// this listener, "PROXY host:port" with its listen address (with the
	// name the browser fetched the file by when it listens on all
	// interfaces).
	Proxies []string `toml:"proxies"`
	// FallbackDirect ends the list with DIRECT, so a browser goes direct
	// when no proxy answers. Default false: without a proxy, no
	// connection, so nothing leaves by a path the proxy does not see.
	FallbackDirect bool `toml:"fallback_direct"`
}

// PACKinds are the proxy kinds a PAC proxies entry may name (the PAC
// format's keywords, which browsers read in upper case).
var PACKinds = []string{"PROXY", "HTTPS", "SOCKS5", "SOCKS"}

// clone returns a deep copy of p.
func (p *PAC) clone() *PAC {
	if p == nil {
		return nil
	}
	c := *p
	c.Direct = append([]string(nil), p.Direct...)
	c.DirectNetworks = append([]CIDR(nil), p.DirectNetworks...)
	c.Proxies = append([]string(nil), p.Proxies...)
	return &c
}

// pac checks a listener's pac table.
func (l *loader) pac(p string, ln Listener) {
	if ln.PAC == nil {
		return
	}
	p += ".pac"
	if !slices.Contains(ln.Protocols, "http") {
		l.errorf(p, `a PAC file is served over HTTP: add "http" to protocols`)
	}
	for j, d := range ln.PAC.Direct {
		if err := CheckPACHost(d); err != nil {
			l.errorf(indexKey(p+".direct", j), "%v", err)
		}
	}
	for j, c := range ln.PAC.DirectNetworks {
		if c.Prefix().Addr().Zone() != "" {
			l.errorf(indexKey(p+".direct_networks", j), "zones are not allowed")
		}
	}
	for j, e := range ln.PAC.Proxies {
		if _, _, err := ParsePACProxy(e); err != nil {
			l.errorf(indexKey(p+".proxies", j), "%v", err)
		}
	}
}

// CheckPACHost checks a direct entry: a host name or shell pattern of
// letters, digits, '-', '_', '.', '*' and '?', at most 253 bytes. The
// PAC format's shExpMatch also knows [...] classes; they are refused to
// keep the grammar small.
func CheckPACHost(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("invalid host pattern %q: want a name like \"intranet\", \"*.internal\" or \".example.com\"", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '*' || c == '?') {
			return fmt.Errorf("invalid host pattern %q: only letters, digits, '-', '_', '.', '*' and '?' are allowed", s)
		}
	}
	return nil
}

// ParsePACProxy splits a proxies entry, "KIND host:port", into its kind
// (upper case) and address, refusing anything else: the entry is written
// into the PAC file's answer.
func ParsePACProxy(s string) (kind, addr string, err error) {
	kind, addr, ok := strings.Cut(strings.TrimSpace(s), " ")
	kind, addr = strings.ToUpper(kind), strings.TrimSpace(addr)
	if !ok || !slices.Contains(PACKinds, kind) {
		if strings.EqualFold(strings.TrimSpace(s), "DIRECT") {
			return "", "", fmt.Errorf(`DIRECT is not a proxy: set fallback_direct = true to end the list with it`)
		}
		return "", "", fmt.Errorf("invalid proxy %q: want KIND host:port with KIND %s", s, orList(PACKinds))
	}
	if err := checkHostPort(addr, false, 1); err != nil {
		return "", "", fmt.Errorf("invalid proxy %q: %w", s, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	if a, err := netip.ParseAddr(host); err == nil && a.Zone() != "" {
		return "", "", fmt.Errorf("invalid proxy %q: zones are not allowed", s)
	}
	return kind, addr, nil
}
