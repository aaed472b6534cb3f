package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// checkListen checks a listen address: host:port where host is an IP, a
// host name or empty (all interfaces), and port is 0 to 65535.
func checkListen(addr string) error {
	return checkHostPort(addr, true, 0)
}

// checkHostPort checks "host:port"; IPv6 hosts are bracketed.
func checkHostPort(addr string, emptyHost bool, minPort int) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf(`invalid address %q: want host:port, like "127.0.0.1:8080" or "[::1]:8080"`, addr)
	}
	if err := checkPort(port, minPort); err != nil {
		return fmt.Errorf("invalid address %q: %w", addr, err)
	}
	if host == "" && !emptyHost {
		return fmt.Errorf("invalid address %q: missing host", addr)
	}
	if host != "" && !validHost(host) {
		return fmt.Errorf("invalid address %q: %q is neither an IP address nor a host name", addr, host)
	}
	return nil
}

func checkPort(port string, min int) error {
	n, err := strconv.Atoi(port)
	if err != nil || port[0] == '+' || port[0] == '-' {
		return fmt.Errorf("port %q is not a number", port)
	}
	if n < min || n > 65535 {
		return fmt.Errorf("port %d is out of range %d-65535", n, min)
	}
	return nil
}

// validHost accepts an IP address (IPv6 possibly with a zone) or a DNS
// host name (letters, digits, '-' and '_' in dot-separated labels).
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// checkUpstreamURL checks an upstream's url: "direct", or
// socks5|socks5h|http|https://[user:pass@]host:port. Messages leave out
// the URL, which may hold a password.
func checkUpstreamURL(s string) error {
	if s == "direct" || s == "direct://" {
		return nil
	}
	if !strings.Contains(s, "://") {
		return fmt.Errorf(`missing scheme: want "direct" or scheme://host:port with scheme socks5, socks5h, http or https`)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf(`invalid URL: want "direct" or scheme://host:port with scheme socks5, socks5h, http or https`)
	}
	switch u.Scheme {
	case "socks5", "socks5h", "http", "https":
	case "direct":
		return fmt.Errorf(`"direct" takes no address`)
	default:
		return fmt.Errorf("unknown scheme %q: want direct, socks5, socks5h, http or https", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return fmt.Errorf("missing host:port after %s://", u.Scheme)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("a proxy URL has no path, query or fragment")
	}
	if err := checkHostPort(u.Host, false, 1); err != nil {
		return fmt.Errorf("%s URL: %w", u.Scheme, err)
	}
	return nil
}
