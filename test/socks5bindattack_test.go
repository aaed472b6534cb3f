//go:build linux

package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// TestSOCKS5BindOff: a listener that does not enable BIND answers it
// 0x07 (command not supported), as before BIND existed.
func TestSOCKS5BindOff(t *testing.T) {
	f := startFerry(t, withJSON(""), nil)
	_, rep, _ := dialBind(t, f.addr, anyPeer)
	if rep != 0x07 {
		t.Fatalf("BIND on a listener without socks5_bind: reply %#x, want 0x07", rep)
	}
}

// TestSOCKS5BindTimeout: a BIND nobody connects to gets 0x06 (TTL
// expired) after socks5_bind_timeout, and its port is closed.
func TestSOCKS5BindTimeout(t *testing.T) {
	f := startFerry(t, bindConfig(`socks5_bind_timeout = "300ms"`, ""), nil)
	c, rep, bnd := dialBind(t, f.addr, anyPeer)
	if rep != 0 {
		t.Fatalf("first reply %#x, want 0", rep)
	}
	if rep, _ := bindReply(t, c); rep != 0x06 {
		t.Errorf("second reply after the timeout %#x, want 0x06", rep)
	}
	waitClosed(t, bnd.String())
	acc := f.waitLine(t, "access", func(l logLine) bool { return l.str("proto") == "socks5-bind" })
	if !strings.Contains(acc.str("error"), "no connection within") {
		t.Errorf("access line error %q, want the timeout", acc.str("error"))
	}
}

// TestSOCKS5BindClientLeaves: a client that closes its control connection
// while waiting closes the port.
func TestSOCKS5BindClientLeaves(t *testing.T) {
	f := startFerry(t, bindConfig("", ""), nil)
	c, rep, bnd := dialBind(t, f.addr, netip.MustParseAddrPort("127.0.0.9:0"))
	if rep != 0 {
		t.Fatalf("first reply %#x, want 0", rep)
	}
	c.Close()
	f.waitLine(t, "access", func(l logLine) bool { return l.str("proto") == "socks5-bind" })
	waitClosed(t, bnd.String())
}

// TestSOCKS5BindWrongPeer: DST.ADDR names 127.0.0.2; a connection from
// 127.0.0.1 is closed at once and the port stays open for 127.0.0.2,
// whose connection is tunnelled and named in the second reply.
func TestSOCKS5BindWrongPeer(t *testing.T) {
	f := startFerry(t, bindConfig("", ""), nil)
	c, rep, bnd := dialBind(t, f.addr, netip.MustParseAddrPort("127.0.0.2:21"))
	if rep != 0 {
		t.Fatalf("first reply %#x, want 0", rep)
	}
	if bnd.Addr() != netip.MustParseAddr("127.0.0.1") || bnd.Port() == 0 {
		t.Fatalf("BND %v, want the control connection's local address 127.0.0.1 and a port", bnd)
	}
	for range 3 {
		stray := mustDialFrom(t, "127.0.0.1", bnd.String())
		stray.SetReadDeadline(time.Now().Add(logTimeout))
		if n, err := stray.Read(make([]byte, 1)); err == nil {
			t.Fatalf("a connection from the wrong address read %d bytes, want it closed", n)
		}
		stray.Close()
	}
	peer := mustDialFrom(t, "127.0.0.2", bnd.String())
	rep, named := bindReply(t, c)
	if rep != 0 || named != peer.LocalAddr().(*net.TCPAddr).AddrPort() {
		t.Fatalf("second reply %#x naming %v, want 0 naming %v", rep, named, peer.LocalAddr())
	}
	// The tunnel carries both ways.
	for _, dir := range []struct{ from, to net.Conn }{{c, peer}, {peer, c}} {
		if _, err := dir.from.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		dir.to.SetReadDeadline(time.Now().Add(logTimeout))
		if _, err := dir.to.Read(buf); err != nil || string(buf) != "ping" {
			t.Fatalf("relayed %q, %v; want ping", buf, err)
		}
	}
	peer.Close()
	c.Close()
	acc := f.waitLine(t, "access", func(l logLine) bool { return l.str("proto") == "socks5-bind" })
	if acc.str("target") != named.String() {
		t.Errorf("access target %q, want the peer %v", acc.str("target"), named)
	}
}

// mustDialFrom connects to addr from the loopback address src.
func mustDialFrom(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	c, err := dialFrom(context.Background(), src, addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSOCKS5BindFlood: many BINDs at once hold no more ports than
// max_connections allows; the others are refused, and closing the
// clients closes every port.
func TestSOCKS5BindFlood(t *testing.T) {
	const limit, tries = 8, 40
	f := startFerry(t, bindConfig("max_connections = 8", ""), nil)
	pid := f.cmd.Process.Pid
	before := fdCount(t, pid)
	var open []net.Conn
	var ports []string
	for range tries {
		c, err := testkit.DialTCP(context.Background(), f.addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		c.Write([]byte{5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 9, 0, 0})
		c.SetReadDeadline(time.Now().Add(logTimeout))
		buf := make([]byte, 12)
		if n, err := io.ReadFull(c, buf); err == nil && buf[3] == 0 {
			ports = append(ports, netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[6:10])),
				uint16(buf[10])<<8|uint16(buf[11])).String())
		} else if n > 0 && err == nil {
			t.Errorf("a BIND got reply % x", buf[:n])
		}
	}
	t.Logf("%d of %d BINDs got a port; ferry holds %d descriptors, %d before", len(ports), tries, fdCount(t, pid), before)
	if len(ports) != limit {
		t.Errorf("%d of %d BINDs got a port, want max_connections = %d", len(ports), tries, limit)
	}
	// Each open BIND holds its client socket and its listening socket.
	if n := fdCount(t, pid); n > before+2*limit+4 {
		t.Errorf("ferry holds %d descriptors with %d BINDs open, %d before: more than two each", n, limit, before)
	}
	for _, c := range open {
		c.Close()
	}
	for _, p := range ports {
		waitClosed(t, p)
	}
	deadline := time.Now().Add(logTimeout)
	for fdCount(t, pid) > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := fdCount(t, pid); n > before {
		t.Errorf("ferry holds %d descriptors after the BINDs ended, %d before", n, before)
	}
}

func fdCount(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := testkit.CountFDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSOCKS5BindParentRefused: a route through a parent proxy makes BIND
// fail with 0x07 and a warning, instead of opening a port ferry could not
// relay through the parent.
func TestSOCKS5BindParentRefused(t *testing.T) {
	parent := testkit.ClosedAddr(t)
	f := startFerry(t, bindConfig("", `
[[upstream]]
name = "parent"
url = "socks5://`+parent+`"

[[route]]
upstream = "parent"
`), nil)
	_, rep, _ := dialBind(t, f.addr, anyPeer)
	if rep != 0x07 {
		t.Errorf("BIND routed to a parent: reply %#x, want 0x07", rep)
	}
	f.waitLine(t, "socks5 bind refused: the route names a parent proxy, and BIND is served direct only", nil)
}

// TestSOCKS5BindACL: the acl plugin sees a BIND twice: its OnConnect
// refuses a denied DST.ADDR (0x02, no port opened), and its dial check
// refuses a peer from a denied address, which is closed while the port
// waits for an allowed one.
func TestSOCKS5BindACL(t *testing.T) {
	f := startFerry(t, func(addr string) string {
		return strings.Replace(bindConfig("", `
[[plugin]]
name = "acl"
default = "allow"
rule = [ { action = "deny", dest = ["127.0.0.7", "127.0.0.1"] } ]
`)(addr), `plugins = ["log"]`, `plugins = ["acl", "log"]`, 1)
	}, nil)
	if _, rep, _ := dialBind(t, f.addr, netip.MustParseAddrPort("127.0.0.7:20")); rep != 0x02 {
		t.Errorf("BIND for a denied peer: reply %#x, want 0x02", rep)
	}
	c, rep, bnd := dialBind(t, f.addr, anyPeer)
	if rep != 0 {
		t.Fatalf("BIND for any peer: reply %#x, want 0", rep)
	}
	stray := mustDialFrom(t, "127.0.0.1", bnd.String())
	stray.SetReadDeadline(time.Now().Add(logTimeout))
	if _, err := stray.Read(make([]byte, 1)); err == nil {
		t.Fatal("a peer from a denied address was not closed")
	}
	peer := mustDialFrom(t, "127.0.0.3", bnd.String())
	if rep, named := bindReply(t, c); rep != 0 || named.Addr() != netip.MustParseAddr("127.0.0.3") {
		t.Fatalf("second reply %#x naming %v, want 0 naming 127.0.0.3", rep, named)
	}
	peer.Close()
}

// TestSOCKS5BindPortRange: with a range of one port, a second BIND while
// the first holds it fails (0x01) instead of opening another, and the
// port is free again once the first client leaves.
func TestSOCKS5BindPortRange(t *testing.T) {
	port := freePort(t)
	f := startFerry(t, bindConfig(fmt.Sprintf("socks5_bind_ports = \"%d-%d\"", port, port), ""), nil)
	c, rep, bnd := dialBind(t, f.addr, anyPeer)
	if rep != 0 || int(bnd.Port()) != port {
		t.Fatalf("first BIND: reply %#x on %v, want 0 on port %d", rep, bnd, port)
	}
	if _, rep, _ := dialBind(t, f.addr, anyPeer); rep != 0x01 {
		t.Errorf("second BIND with the one port taken: reply %#x, want 0x01", rep)
	}
	c.Close()
	waitClosed(t, bnd.String())
	deadline := time.Now().Add(logTimeout)
	for {
		_, rep, bnd = dialBind(t, f.addr, anyPeer)
		if rep == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rep != 0 || int(bnd.Port()) != port {
		t.Errorf("BIND after the first ended: reply %#x on %v, want 0 on port %d", rep, bnd, port)
	}
}

// TestSOCKS5BindEarlyData: bytes the client sends before the second
// reply are not lost: the peer reads them first.
func TestSOCKS5BindEarlyData(t *testing.T) {
	f := startFerry(t, bindConfig("", ""), nil)
	c, rep, bnd := dialBind(t, f.addr, anyPeer)
	if rep != 0 {
		t.Fatalf("first reply %#x, want 0", rep)
	}
	if _, err := c.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let ferry's watcher buffer them
	peer := mustDialFrom(t, "127.0.0.1", bnd.String())
	if rep, _ := bindReply(t, c); rep != 0 {
		t.Fatalf("second reply %#x, want 0", rep)
	}
	buf := make([]byte, 5)
	peer.SetReadDeadline(time.Now().Add(logTimeout))
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "early" {
		t.Fatalf("peer read %q, %v; want early", buf, err)
	}
}

// TestSOCKS5BindShutdown: a BIND waiting for its peer does not hold up
// shutdown: ferry exits 0 and the port is closed.
func TestSOCKS5BindShutdown(t *testing.T) {
	f := startFerry(t, bindConfig("", ""), nil)
	c, rep, bnd := dialBind(t, f.addr, netip.MustParseAddrPort("127.0.0.9:0"))
	if rep != 0 {
		t.Fatalf("first reply %#x, want 0", rep)
	}
	if code := f.stop(t); code != 0 {
		t.Fatalf("ferry exited %d, want 0", code)
	}
	c.SetReadDeadline(time.Now().Add(logTimeout))
	if _, err := c.Read(make([]byte, 16)); err == nil {
		// a failure reply is fine; then the close must follow
		if _, err := c.Read(make([]byte, 16)); err == nil {
			t.Error("client connection still open after shutdown")
		}
	}
	waitClosed(t, bnd.String())
}

// TestSOCKS5BindConnlimit: connlimit counts waiting BINDs as channels
// of their client: past per_client, a BIND is refused (0x02) before any
// port opens, and a slot frees when a BIND ends.
func TestSOCKS5BindConnlimit(t *testing.T) {
	const perClient = 3
	f := startFerry(t, func(addr string) string {
		return strings.Replace(bindConfig("", fmt.Sprintf(`
[[plugin]]
name = "connlimit"
per_client = %d
`, perClient))(addr), `plugins = ["log"]`, `plugins = ["connlimit", "log"]`, 1)
	}, nil)
	var held []net.Conn
	for i := range perClient {
		c, rep, _ := dialBind(t, f.addr, anyPeer)
		if rep != 0 {
			t.Fatalf("BIND %d within per_client: reply %#x, want 0", i, rep)
		}
		held = append(held, c)
	}
	for range 5 {
		if _, rep, _ := dialBind(t, f.addr, anyPeer); rep != 0x02 {
			t.Errorf("BIND past per_client: reply %#x, want 0x02", rep)
		}
	}
	held[0].Close()
	deadline := time.Now().Add(logTimeout)
	for {
		c, rep, _ := dialBind(t, f.addr, anyPeer)
		if rep == 0 {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no BIND slot freed within %v of a client leaving", logTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
