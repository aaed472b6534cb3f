//go:build linux

package test

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// SOCKS5 UDP ASSOCIATE (RFC 1928 §7) end to end: PySocks and a
// hand-written client send through ferry's relay to dnsmasq and to a UDP
// echo server on loopback.

// quiet is how long a test waits for a datagram that must not come.
// Loopback delivers within microseconds; this only bounds the wait.
const quiet = 300 * time.Millisecond

// splitHP splits host:port for the PySocks script's arguments.
func splitHP(t *testing.T, hp string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// checkDatagrams checks an association's access line counts.
func checkDatagrams(t *testing.T, l logLine, up, down int64, dropped bool) {
	t.Helper()
	gu, _ := l.num("datagrams_up")
	gd, _ := l.num("datagrams_down")
	gx, _ := l.num("datagrams_dropped")
	if gu != up || gd != down || (gx > 0) != dropped {
		t.Errorf("access line datagrams up %d down %d dropped %d, want %d, %d, dropped %v (line %v)",
			gu, gd, gx, up, down, dropped, l)
	}
}

func TestSOCKS5UDPDNS(t *testing.T) {
	dns := startDNS(t, "127.0.0.1")
	f := startFerry(t, withJSON(""), nil)
	ph, pp := splitHP(t, f.addr)
	dh, dp := splitHP(t, dns)
	out, err := pySocksUDP(t, 30*time.Second, "dns", ph, pp, dh, dp, dnsName)
	if err != nil || out != dnsAnswer {
		t.Fatalf("PySocks DNS query through ferry: got %q (%v), want %s", out, err, dnsAnswer)
	}
	l := accessUDP(t, f)
	checkDatagrams(t, l, 1, 1, false)
	if l.str("upstream") != "direct" || l.str("reason") != "client closed" {
		t.Errorf("access line upstream %q reason %q, want direct, client closed", l.str("upstream"), l.str("reason"))
	}
}

// TestSOCKS5UDPBulk sends 10,000 datagrams of random sizes up to 1,400
// bytes through one association to an echo server. PySocks keeps at most
// 32 unanswered (32 x 1.4 KB, far below the 208 KiB socket buffers of
// every hop), so loopback loses none: each must come back intact.
func TestSOCKS5UDPBulk(t *testing.T) {
	echo := udpEcho(t, "127.0.0.1")
	f := startFerry(t, withJSON(""), nil)
	ph, pp := splitHP(t, f.addr)
	const n = 10000
	out, err := pySocksUDP(t, 120*time.Second, "echo", ph, pp, echo.Addr().String(),
		strconv.Itoa(int(echo.Port())), strconv.Itoa(n), "32", "1")
	if want := fmt.Sprintf("sent %d received %d", n, n); err != nil || out != want {
		t.Fatalf("PySocks echo through ferry: got %q (%v), want %q", out, err, want)
	}
	checkDatagrams(t, accessUDP(t, f), n, n, false)
}

// TestSOCKS5UDPIPv6 resolves through a DNS server on ::1: from a client
// whose control connection and datagrams are IPv6 (the hand-written
// client: PySocks opens its control connection over IPv4 only), and from
// PySocks over IPv4 to the IPv6 destination.
func TestSOCKS5UDPIPv6(t *testing.T) {
	dns := netip.MustParseAddrPort(startDNS(t, "::1"))
	v6 := net.JoinHostPort("::1", strconv.Itoa(freePort6(t)))
	f := startFerry(t, func(addr string) string {
		return jsonConfig(addr, "") + fmt.Sprintf("\n[[listener]]\nname = \"v6\"\nlisten = %q\nprotocols = [\"socks5\"]\nplugins = [\"log\"]\n", v6)
	}, nil)

	code, c := udpAssociate(t, v6, "::1")
	if code != 0 {
		t.Fatalf("UDP ASSOCIATE over IPv6: reply %#x, want 0", code)
	}
	if c.relay.Addr() != netip.MustParseAddr("::1") {
		t.Errorf("relay address %s, want ::1 (the address the client reached)", c.relay)
	}
	c.send(t, dns, dnsQuery(dnsName))
	src, b, err := c.recv(5 * time.Second)
	if err != nil || dnsA(b) != dnsAnswer || src != dns {
		t.Fatalf("answer over IPv6: from %s, %q (%v), want %s from %s", src, dnsA(b), err, dnsAnswer, dns)
	}

	ph, pp := splitHP(t, f.addr)
	out, err := pySocksUDP(t, 30*time.Second, "dns", ph, pp, "::1", strconv.Itoa(int(dns.Port())), dnsName)
	if err != nil || out != dnsAnswer {
		t.Fatalf("PySocks to the IPv6 DNS server: got %q (%v), want %s", out, err, dnsAnswer)
	}
}

// TestSOCKS5UDPStrangers checks what the relay drops: datagrams from any
// address but the client's (another loopback address, another port),
// fragments, malformed headers, and anything from an address the client
// did not send to. The association stays up for the client throughout.
func TestSOCKS5UDPStrangers(t *testing.T) {
	echo := udpEcho(t, "127.0.0.1")
	f := startFerry(t, withJSON(""), nil)
	_, c := udpAssociate(t, f.addr, "127.0.0.1")
	roundTrip := func(what string) {
		t.Helper()
		c.send(t, echo, []byte(what))
		if src, b, err := c.recv(5 * time.Second); err != nil || string(b) != what || src != echo {
			t.Fatalf("%s: got %q from %s (%v), want %q from %s", what, b, src, err, what, echo)
		}
	}
	roundTrip("first")

	other := func(ip string) *net.UDPConn {
		o, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		return o
	}
	stranger, samehost := other("127.0.0.2"), other("127.0.0.1")
	for _, o := range []*net.UDPConn{stranger, samehost} {
		o.WriteToUDPAddrPort(datagram(0, echo, "", []byte("stranger")), c.relay)
	}
	// From the client: a fragment, bad reserved bytes, an unknown address
	// type, a truncated header, an empty name.
	bad := [][]byte{
		datagram(1, echo, "", []byte("fragment")),
		append([]byte{0, 1}, datagram(0, echo, "", []byte("rsv"))[2:]...),
		{0, 0, 0, 9, 1, 2, 3, 4, 0, 80, 'x'},
		{0, 0, 0, 1, 127},
		{0, 0, 0, 3, 0, 0, 80},
	}
	for _, b := range bad {
		c.conn.WriteToUDPAddrPort(b, c.relay)
	}
	// An address the client never sent to writes to the relay directly.
	samehost.WriteToUDPAddrPort([]byte("unsolicited"), c.relay)
	if _, b, err := c.recv(quiet); err == nil {
		t.Fatalf("the client got %q, want nothing of what strangers or broken datagrams carried", b)
	}
	for _, o := range []*net.UDPConn{stranger, samehost} {
		o.SetReadDeadline(time.Now().Add(quiet))
		if n, _, err := o.ReadFromUDPAddrPort(make([]byte, 100)); err == nil {
			t.Fatalf("a stranger got %d bytes back, want nothing", n)
		}
	}
	roundTrip("still up")
	c.ctl.Close()
	l := accessUDP(t, f)
	checkDatagrams(t, l, 2, 2, true)
	if n, _ := l.num("datagrams_dropped"); n != 8 {
		t.Errorf("datagrams_dropped %d, want 8 (2 strangers, 5 broken, 1 unsolicited)", n)
	}
}

// TestSOCKS5UDPACL checks each datagram's destination against the acl:
// its rules, on a name's resolved address too, and
// deny_private_destinations. Refused destinations get nothing through and
// are counted; allowed ones in the same association work.
func TestSOCKS5UDPACL(t *testing.T) {
	allowed, denied := udpEcho(t, "127.0.0.1"), udpEcho(t, "127.0.0.1")
	tests := []struct {
		name  string
		acl   string
		host  string // a name destination (resolved by ferry from /etc/hosts)
		allow bool   // whether the allowed echo server answers
	}{
		{name: "port rule", acl: fmt.Sprintf("[[plugin.rule]]\naction = \"deny\"\nport = [%d]\n", denied.Port()), allow: true},
		{name: "name resolved to a denied address", acl: "[[plugin.rule]]\naction = \"deny\"\ndest = [\"127.0.0.0/8\"]\n", host: "localhost"},
		{name: "deny_private_destinations", acl: "deny_private_destinations = true\n", host: "localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFerry(t, chainConfig([]string{"acl", "log"}, fmt.Sprintf(
				"[[plugin]]\nname = \"acl\"\ndefault = \"allow\"\n%s\n[[plugin]]\nname = \"log\"\n", tt.acl)), nil)
			_, c := udpAssociate(t, f.addr, "127.0.0.1")
			dst := denied
			if tt.host != "" {
				c.conn.WriteToUDPAddrPort(datagram(0, dst, tt.host, []byte("by name")), c.relay)
			} else {
				c.send(t, dst, []byte("denied"))
			}
			if _, b, err := c.recv(quiet); err == nil {
				t.Fatalf("the denied destination answered %q", b)
			}
			c.send(t, allowed, []byte("allowed"))
			_, b, err := c.recv(quiet)
			if got := err == nil && string(b) == "allowed"; got != tt.allow {
				t.Fatalf("allowed destination answered: %v (%q, %v), want %v", got, b, err, tt.allow)
			}
			c.ctl.Close()
			l := accessUDP(t, f)
			if n, _ := l.num("datagrams_dropped"); n < 1 {
				t.Errorf("datagrams_dropped %d, want the denied datagram counted", n)
			}
			f.waitLine(t, "acl denied", nil)
		})
	}
}

// TestSOCKS5UDPParentDante resolves through ferry -> dante (danted with
// udpassociate allowed) -> dnsmasq: ferry opens its own association at
// dante, with dante's login when it wants one, and relays to dante's
// relay.
func TestSOCKS5UDPParentDante(t *testing.T) {
	for _, auth := range []bool{false, true} {
		t.Run(fmt.Sprintf("auth=%v", auth), func(t *testing.T) {
			dns := startDNS(t, "127.0.0.1")
			dante, danteLog := startDante(t, auth)
			url := "socks5://" + dante
			if auth {
				url = "socks5://" + danteUser + ":" + dantePass + "@" + dante
			}
			f := startFerry(t, upstreamConfig("5s", upstreamTable("dante", url)+routeAll("dante")), nil)
			ph, pp := splitHP(t, f.addr)
			dh, dp := splitHP(t, dns)
			out, err := pySocksUDP(t, 30*time.Second, "dns", ph, pp, dh, dp, dnsName)
			if err != nil || out != dnsAnswer {
				t.Fatalf("PySocks DNS query through ferry and dante: got %q (%v), want %s\ndante log:\n%s", out, err, dnsAnswer, readLog(danteLog))
			}
			l := accessUDP(t, f)
			checkDatagrams(t, l, 1, 1, false)
			if l.str("upstream") != "dante" || l.str("chain") != "dante" {
				t.Errorf("access line upstream %q chain %q, want dante, dante", l.str("upstream"), l.str("chain"))
			}
			if !strings.Contains(readLog(danteLog), "udpassociate") {
				t.Errorf("dante's log shows no udpassociate:\n%s", readLog(danteLog))
			}
		})
	}
}

// TestSOCKS5UDPRefused checks the associations ferry refuses at once:
// with reply 0x07 (command not supported) a listener with socks5_udp =
// false and routes to upstreams that cannot carry datagrams (an HTTP
// parent, a chain of two hops); with 0x02 (not allowed) a client the acl
// denies every destination.
func TestSOCKS5UDPRefused(t *testing.T) {
	closed := testkit.ClosedAddr(t)
	tests := []struct {
		name   string
		config func(addr string) string
		want   byte
	}{
		{name: "acl denies the client everything", want: 0x02, config: chainConfig([]string{"acl", "log"},
			"[[plugin]]\nname = \"acl\"\ndefault = \"deny\"\n\n[[plugin.rule]]\naction = \"allow\"\nclient = [\"192.0.2.0/24\"]\n\n[[plugin]]\nname = \"log\"\n")},
		{name: "socks5_udp = false", config: func(addr string) string {
			return fmt.Sprintf("[[listener]]\nlisten = %q\nprotocols = [\"socks5\"]\nsocks5_udp = false\n", addr)
		}},
		{name: "http parent", config: upstreamConfig("2s", upstreamTable("http", "http://"+closed)+routeAll("http"))},
		{name: "socks5 chain", config: upstreamConfig("2s", upstreamTable("a", "socks5://"+closed)+
			upstreamTable("b", "socks5://"+closed, `via = "a"`)+routeAll("b"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFerry(t, tt.config, nil)
			want := tt.want
			if want == 0 {
				want = 0x07
			}
			if code, _ := udpAssociate(t, f.addr, "127.0.0.1"); code != want {
				t.Fatalf("reply %#x, want %#x", code, want)
			}
		})
	}
}
