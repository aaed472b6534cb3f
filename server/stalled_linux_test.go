package server

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"

	"golang.org/x/sys/unix"
)

// TestStalledClientReset: a client that stops reading what ferry writes
// it (ferry's own answer, or an origin's response) is reset once the
// write times out, on a plain and on a TLS listener. An orderly close
// would leave the unsent bytes in the kernel, which probes the client's
// zero window for minutes, and on TLS would first wait 5 s to send
// close_notify. The client's socket shows the reset: its state is
// TCP_CLOSE, which a FIN queued behind the unsent bytes never brings.
func TestStalledClientReset(t *testing.T) {
	const idle = 300 * time.Millisecond
	pki := testkit.NewPKI(t, "proxy.test")
	_, certFile, keyFile := pki.Write(t, t.TempDir())
	big := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.ReadFull(c, make([]byte, 1)) // the request has come
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", hugeAnswer)
		io.CopyN(c, zeros{}, hugeAnswer)
	}).Addr
	for _, tlsOn := range []bool{false, true} {
		listener := ""
		if tlsOn {
			listener = fmt.Sprintf("tls = { cert = %q, key = %q }", certFile, keyFile)
		}
		for _, what := range []string{"answer", "response"} {
			t.Run(fmt.Sprintf("tls=%v/%s", tlsOn, what), func(t *testing.T) {
				f, _ := startBodyHook(t, fmt.Sprintf("[defaults]\nidle_timeout = %q\n", idle), listener)
				raw := dial(t, f.addr).(*net.TCPConn)
				var c net.Conn = raw
				if tlsOn {
					tc := tls.Client(raw, &tls.Config{RootCAs: pki.Roots(), ServerName: "proxy.test"})
					if err := tc.Handshake(); err != nil {
						t.Fatal(err)
					}
					c = tc
				}
				req := fmt.Sprintf("GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", big, big)
				if what == "answer" {
					const body = "huge answer" // the body hook answers 32 MiB
					req = fmt.Sprintf("POST http://%s/up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", big, big, len(body), body)
				}
				io.WriteString(c, req)
				start := time.Now()
				for tcpState(t, raw) != unix.BPF_TCP_CLOSE {
					if time.Since(start) > 10*time.Second {
						t.Fatalf("not reset %v after the request, under idle_timeout %v\n%s", time.Since(start), idle, f.logs.String())
					}
					time.Sleep(20 * time.Millisecond)
				}
				// The answer's line says what the plugin refused; the response's
				// that the client stalled.
				want := map[string]string{"answer": `"reason":"rejected"`, "response": `"reason":"idle timeout"`}[what]
				waitFor(t, func() bool { return strings.Contains(f.logs.String(), want) })
			})
		}
	}
}

// tcpState is c's TCP state (unix.BPF_TCP_*), from TCP_INFO.
func tcpState(t *testing.T, c *net.TCPConn) uint8 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if ierr != nil {
		t.Fatal(ierr)
	}
	return info.State
}
