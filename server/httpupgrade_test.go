package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"ferry/test/testkit"
)

// upgradeOrigin answers any request with 101 and then echoes what it
// gets, as a WebSocket server would its frames.
func upgradeOrigin(t *testing.T) string {
	t.Helper()
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(c, br)
	}).Addr
}

// TestHTTPUpgradeOutlivesIdle: a connection upgraded by a 101 carries
// traffic for as long as it moves, not idle_timeout from the exchange
// that opened it, and ends once it is silent for idle_timeout. The
// exchange's rolling deadlines (a write deadline set for the 101, the
// request's) were once left on both connections, so a busy tunnel was
// cut idle_timeout after it began.
func TestHTTPUpgradeOutlivesIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	origin := upgradeOrigin(t)
	f := start(t, idleConfig(idle))
	p := newProxyClient(t, f.addr)
	fmt.Fprintf(p.c, "GET http://%s/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n", origin, origin)
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: got %v, %v; want 101", resp, err)
	}
	start := time.Now()
	// last is when the last message went: the tunnel's idle timer is
	// renewed after that, when the echo passes, so a silence measured
	// from the echo's arrival could look shorter than idle_timeout.
	var last time.Time
	for i := 0; time.Since(start) < 4*idle; i++ {
		msg := fmt.Sprintf("message %d\n", i)
		last = time.Now()
		io.WriteString(p.c, msg)
		p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := p.br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("%v into the tunnel (idle_timeout %v): echo %q, %v; want %q\n%s",
				time.Since(start).Round(time.Millisecond), idle, got, err, msg, f.logs.String())
		}
		time.Sleep(idle / 3)
	}
	// Silent now: the tunnel's own idle timer ends it.
	p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := p.br.ReadByte(); err != io.EOF {
		t.Fatalf("silent tunnel: read %q, %v; want EOF", n, err)
	}
	if took := time.Since(last); took < idle {
		t.Errorf("silent tunnel ended %v after its last message went, before idle_timeout %v", took, idle)
	}
}
