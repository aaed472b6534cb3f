//go:build linux

package test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// Helpers of the SOCKS5 UDP ASSOCIATE tests: a DNS server (dnsmasq), a
// UDP echo server, the PySocks client script and a hand-written client
// (written from RFC 1928 §7 independently of ferry's codec) for what
// PySocks cannot do: IPv6 control connections, strangers, fragments.

// dnsName is the name the test DNS server answers, with dnsAnswer.
const (
	dnsName   = "www.example.test"
	dnsAnswer = "10.1.2.3"
)

// startDNS runs dnsmasq on a free port of ip (loopback), answering
// *.example.test with dnsAnswer and nothing else, and returns its address.
func startDNS(t *testing.T, ip string) string {
	t.Helper()
	dnsmasq := testkit.NeedBin(t, "dnsmasq")
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("no loopback on %s: %v", ip, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	startPeer(t, addr, dnsmasq, "-k", "-C", "/dev/null", "--port="+strconv.Itoa(port),
		"--listen-address="+ip, "--bind-interfaces", "--no-resolv", "--no-hosts",
		"--address=/example.test/"+dnsAnswer, "-u", "root", "--pid-file=")
	return addr
}

// udpEcho runs a UDP echo server on ip until the test ends.
func udpEcho(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	c, err := testkit.UDPEcho(netip.AddrPortFrom(netip.MustParseAddr(ip), 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// pySocksUDP runs the PySocks client script with args within timeout and
// returns its output.
func pySocksUDP(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	py := testkit.NeedBin(t, "/usr/bin/python3")
	if out, err := exec.Command(py, "-c", "import socks").CombinedOutput(); err != nil {
		testkit.Unmet(t, "PySocks missing from /usr/bin/python3 (scripts/test.sh installs python3-socks): %s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{filepath.Join("testdata", "socks5udp_client.py")}, args...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// udpClient is a hand-written SOCKS5 UDP client: the control connection,
// the relay's address and the client's own socket.
type udpClient struct {
	ctl   net.Conn
	relay netip.AddrPort
	conn  *net.UDPConn
}

// udpAssociate asks proxy for an association from a socket on localIP,
// declaring that socket's port. It returns the REP code and, for 0x00,
// the client.
func udpAssociate(t *testing.T, proxy, localIP string) (byte, *udpClient) {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(localIP), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctl, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	ctl.SetDeadline(time.Now().Add(5 * time.Second))
	port := conn.LocalAddr().(*net.UDPAddr).Port
	req := []byte{5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, byte(port >> 8), byte(port)}
	if _, err := ctl.Write(req); err != nil {
		t.Fatal(err)
	}
	rep := make([]byte, 2+4+16+2)
	if _, err := io.ReadFull(ctl, rep[:2+4]); err != nil {
		t.Fatalf("read method and reply: %v", err)
	}
	if rep[1] != 0 {
		t.Fatalf("method answer %#x, want 0", rep[1])
	}
	code, atyp := rep[3], rep[5]
	alen := 4
	if atyp == 4 {
		alen = 16
	}
	if _, err := io.ReadFull(ctl, rep[6:6+alen+2]); err != nil {
		t.Fatalf("read reply address: %v", err)
	}
	if code != 0 {
		return code, nil
	}
	a, _ := netip.AddrFromSlice(rep[6 : 6+alen])
	ctl.SetDeadline(time.Time{})
	relay := netip.AddrPortFrom(a, binary.BigEndian.Uint16(rep[6+alen:]))
	return 0, &udpClient{ctl: ctl, relay: relay, conn: conn}
}

// datagram builds a client datagram: header for dst (an address, or a
// name when host is set) with frag, then payload.
func datagram(frag byte, dst netip.AddrPort, host string, payload []byte) []byte {
	b := []byte{0, 0, frag}
	switch {
	case host != "":
		b = append(append(b, 3, byte(len(host))), host...)
	case dst.Addr().Is4():
		a := dst.Addr().As4()
		b = append(append(b, 1), a[:]...)
	default:
		a := dst.Addr().As16()
		b = append(append(b, 4), a[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	return append(b, payload...)
}

// send writes a datagram to dst through the relay.
func (c *udpClient) send(t *testing.T, dst netip.AddrPort, payload []byte) {
	t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort(datagram(0, dst, "", payload), c.relay); err != nil {
		t.Fatal(err)
	}
}

// recv reads one datagram from the relay within wait and returns the
// source its header names and the payload.
func (c *udpClient) recv(wait time.Duration) (netip.AddrPort, []byte, error) {
	buf := make([]byte, 65535)
	c.conn.SetReadDeadline(time.Now().Add(wait))
	n, from, err := c.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	if from.Addr().Unmap() != c.relay.Addr().Unmap() || from.Port() != c.relay.Port() {
		return netip.AddrPort{}, nil, fmt.Errorf("datagram from %s, not the relay %s", from, c.relay)
	}
	b := buf[:n]
	if len(b) < 10 || b[2] != 0 {
		return netip.AddrPort{}, nil, fmt.Errorf("bad header % x", b[:min(len(b), 10)])
	}
	alen := 4
	if b[3] == 4 {
		alen = 16
	}
	if len(b) < 4+alen+2 {
		return netip.AddrPort{}, nil, errors.New("short header")
	}
	a, _ := netip.AddrFromSlice(b[4 : 4+alen])
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[4+alen:])), b[4+alen+2:], nil
}

// dnsQuery is an A query for name.
func dnsQuery(name string) []byte {
	q := []byte{0x2a, 0x2a, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(name, ".") {
		q = append(append(q, byte(len(l))), l...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

// dnsA is the address of an answer with one A record (its last 4 bytes).
func dnsA(b []byte) string {
	if len(b) < 16 || binary.BigEndian.Uint16(b[6:8]) < 1 {
		return ""
	}
	a, _ := netip.AddrFromSlice(b[len(b)-4:])
	return a.String()
}

// accessUDP waits for the access line of the association with this
// proto and returns it.
func accessUDP(t *testing.T, f *proc) logLine {
	t.Helper()
	return f.waitLine(t, "access", func(l logLine) bool { return l.str("proto") == "socks5-udp" })
}
