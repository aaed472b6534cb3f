//go:build linux

package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"ferry/test/testkit"
)

// Hostile SOCKS5 UDP clients: floods of garbage, sprays of destinations,
// associations left idle, opened by the hundred, or over connlimit. Each
// must cost ferry bounded work and leave nothing behind.

// TestSOCKS5UDPFlood floods an association with garbage from the client
// and from a stranger (20,000 datagrams of random bytes up to 1,400),
// then checks that it still relays and that every garbage datagram was
// dropped and counted, none relayed.
func TestSOCKS5UDPFlood(t *testing.T) {
	echo := udpEcho(t, "127.0.0.1")
	f := startFerry(t, withJSON(""), nil)
	_, c := udpAssociate(t, f.addr, "127.0.0.1")
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 10000
	buf := make([]byte, 1400)
	sent := 0
	for i := 0; i < n; i++ {
		b := buf[:1+rng.IntN(len(buf)-1)]
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		b[0] = 1 // RSV not zero: garbage however the rest reads
		if _, err := c.conn.WriteToUDPAddrPort(b, c.relay); err == nil {
			sent++
		}
		stranger.WriteToUDPAddrPort(datagram(0, echo, "", b), c.relay)
		if i%64 == 0 {
			time.Sleep(time.Millisecond) // let the relay keep up: what it drops unread is not counted
		}
	}
	// Whatever the flood left queued is read before this answer.
	c.send(t, echo, []byte("after the flood"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, b, err := c.recv(time.Until(deadline))
		if err != nil {
			t.Fatalf("no echo after the flood: %v", err)
		}
		if string(b) == "after the flood" {
			break
		}
		t.Fatalf("the client got %q, not its echo: garbage was relayed", b)
	}
	c.ctl.Close()
	l := accessUDP(t, f)
	checkDatagrams(t, l, 1, 1, true)
	if d, _ := l.num("datagrams_dropped"); d > int64(2*n) || d < int64(sent) {
		t.Errorf("datagrams_dropped %d, want between the client's %d and all %d", d, sent, 2*n)
	}
}

// TestSOCKS5UDPDestinationBound sprays 300 destinations: the first 256
// are decided and remembered, the rest dropped without a decision.
func TestSOCKS5UDPDestinationBound(t *testing.T) {
	echo := udpEcho(t, "127.0.0.1")
	f := startFerry(t, withJSON(""), nil)
	_, c := udpAssociate(t, f.addr, "127.0.0.1")
	for i := 0; i < 300; i++ {
		// 127.0.1.x:9 (discard): nothing answers, each a new destination.
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1 + byte(i/250), byte(1 + i%250)}), 9)
		c.send(t, dst, []byte("x"))
	}
	c.send(t, echo, []byte("past the bound"))
	if _, b, err := c.recv(quiet); err == nil {
		t.Fatalf("a 301st destination answered %q, want it dropped", b)
	}
	c.ctl.Close()
	l := accessUDP(t, f)
	up, _ := l.num("datagrams_up")
	dropped, _ := l.num("datagrams_dropped")
	if up != 256 || dropped != 45 {
		t.Errorf("datagrams up %d dropped %d, want 256 and 45", up, dropped)
	}
	f.waitLine(t, "socks5 udp: association reached its destination bound; datagrams to new destinations are dropped", nil)
}

// TestSOCKS5UDPIdle leaves an association idle: ferry ends it after
// idle_timeout and closes the control connection.
func TestSOCKS5UDPIdle(t *testing.T) {
	echo := udpEcho(t, "127.0.0.1")
	f := startFerry(t, withJSON(`idle_timeout = "500ms"`), nil)
	_, c := udpAssociate(t, f.addr, "127.0.0.1")
	c.send(t, echo, []byte("once"))
	if _, _, err := c.recv(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.ctl.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.ctl.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("control connection read %d bytes, %v; want EOF when the association idles out", n, err)
	}
	l := accessUDP(t, f)
	if l.str("reason") != "idle timeout" {
		t.Errorf("reason %q, want idle timeout", l.str("reason"))
	}
}

// TestSOCKS5UDPChurn opens and closes 200 associations, 20 at a time,
// each relaying one datagram. While 20 are open, ferry runs at most two
// goroutines for each (the control connection's and the relay socket
// reader); once all ended, its goroutines and descriptors are back to
// where they were: every relay socket is closed.
func TestSOCKS5UDPChurn(t *testing.T) {
	echo := udpEcho(t, "127.0.0.1")
	adminAddr := freeAddr(t)
	f := startFerry(t, func(addr string) string {
		return jsonConfig(addr, "") + fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = \"t\"\n", adminAddr)
	}, nil)
	pid := f.cmd.Process.Pid
	fdsBefore, err := testkit.CountFDs(pid)
	if err != nil {
		t.Skipf("count descriptors: %v", err)
	}
	gBefore := goroutines(t, adminAddr)
	const perRound = 20
	for round := 0; round < 10; round++ {
		var cs []*udpClient
		for i := 0; i < perRound; i++ {
			_, c := udpAssociate(t, f.addr, "127.0.0.1")
			c.send(t, echo, []byte(fmt.Sprint(round, i)))
			if _, _, err := c.recv(5 * time.Second); err != nil {
				t.Fatalf("association %d/%d: %v", round, i, err)
			}
			cs = append(cs, c)
		}
		if round == 0 {
			// A few more for the admin request and the runtime's own.
			if g := goroutines(t, adminAddr); g > gBefore+2*perRound+8 {
				t.Errorf("%d goroutines with %d associations open, %d before: more than 2 each", g, perRound, gBefore)
			}
		}
		for _, c := range cs {
			c.ctl.Close()
			c.conn.Close()
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds, _ := testkit.CountFDs(pid)
		g := goroutines(t, adminAddr)
		if fds <= fdsBefore && g <= gBefore+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 200 associations ended ferry holds %d descriptors (%d before) and runs %d goroutines (%d before)",
				fds, fdsBefore, g, gBefore)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := len(f.lines("access", func(l logLine) bool { return l.str("proto") == "socks5-udp" })); got != 200 {
		t.Errorf("%d access lines, want one per association (200)", got)
	}
}

// goroutines reads go_goroutines from the admin service's /metrics.
func goroutines(t *testing.T, admin string) int {
	t.Helper()
	_, body := adminRequest(t, admin, "GET", "/metrics")
	m := regexp.MustCompile(`(?m)^go_goroutines (\d+)`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no go_goroutines in /metrics:\n%s", body)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// adminRequest sends method path to the admin service at admin (token
// "t") and returns the status and body. It leaves no keep-alive
// connection behind, to count among ferry's descriptors.
func adminRequest(t *testing.T, admin, method, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+admin+path, nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	return resp.StatusCode, body
}

// TestSOCKS5UDPConnlimit: an association counts as a channel of its
// client for connlimit while its control connection is open.
func TestSOCKS5UDPConnlimit(t *testing.T) {
	f := startFerry(t, chainConfig([]string{"connlimit", "log"},
		"[[plugin]]\nname = \"connlimit\"\nper_client = 1\n\n[[plugin]]\nname = \"log\"\n"), nil)
	code, c := udpAssociate(t, f.addr, "127.0.0.1")
	if code != 0 {
		t.Fatalf("first association: reply %#x, want 0", code)
	}
	if code, _ := udpAssociate(t, f.addr, "127.0.0.1"); code != 0x02 {
		t.Fatalf("second association over per_client = 1: reply %#x, want 0x02 (not allowed)", code)
	}
	c.ctl.Close()
	f.waitLine(t, "access", func(l logLine) bool { return l.str("proto") == "socks5-udp" && l.str("reason") == "client closed" })
	if code, _ := udpAssociate(t, f.addr, "127.0.0.1"); code != 0 {
		t.Fatalf("association after the first ended: reply %#x, want 0", code)
	}
}

// TestSOCKS5UDPAdmin: an association is listed on the admin API's
// /channels with its bytes, and DELETE ends it as a tunnel: the control
// connection closes, the access line says "closed by admin".
func TestSOCKS5UDPAdmin(t *testing.T) {
	echo := udpEcho(t, "127.0.0.1")
	adminAddr := freeAddr(t)
	f := startFerry(t, func(addr string) string {
		return jsonConfig(addr, "") + fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = \"t\"\n", adminAddr)
	}, nil)
	_, c := udpAssociate(t, f.addr, "127.0.0.1")
	c.send(t, echo, []byte("listed"))
	if _, _, err := c.recv(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	var chans []struct {
		ID, Protocol string
		Up, Down     int64
	}
	// The relay counts a datagram after sending it: the client may read
	// the echo before the count, so the listing is polled (bounded).
	var body []byte
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, body = adminRequest(t, adminAddr, "GET", "/channels")
		err := json.Unmarshal(body, &chans)
		ok := err == nil && len(chans) == 1 && chans[0].Protocol == "socks5-udp" && chans[0].Up == 6 && chans[0].Down == 6
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/channels: got %s (%v), want one socks5-udp channel with 6 bytes each way", body, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := adminRequest(t, adminAddr, "DELETE", "/channels/"+chans[0].ID); code != 200 {
		t.Fatalf("DELETE: got %d, want 200", code)
	}
	c.ctl.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.ctl.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("control connection after DELETE: %v, want EOF", err)
	}
	if l := accessUDP(t, f); l.str("reason") != "closed by admin" {
		t.Errorf("reason %q, want closed by admin", l.str("reason"))
	}
}

// TestSOCKS5UDPSizes relays datagrams from empty to the largest an IPv4
// datagram carries with its SOCKS5 header (65,507 - 10 bytes), intact.
func TestSOCKS5UDPSizes(t *testing.T) {
	echo := udpEcho(t, "127.0.0.1")
	f := startFerry(t, withJSON(""), nil)
	_, c := udpAssociate(t, f.addr, "127.0.0.1")
	c.conn.SetReadBuffer(1 << 20)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 1400, 9000, 32768, 65507 - 10} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		c.send(t, echo, p)
		_, got, err := c.recv(5 * time.Second)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("%d-byte datagram: got %d bytes (%v), want it intact", n, len(got), err)
		}
	}
	c.ctl.Close()
	checkDatagrams(t, accessUDP(t, f), 6, 6, false)
}
