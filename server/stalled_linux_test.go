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
		io.CopyN(c, testkit.Zeros{}, hugeAnswer)
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
				testkit.WaitReset(t, raw, 10*time.Second)
				// The answer's line says what the plugin refused; the response's
				// that the client stalled.
				want := map[string]string{"answer": `"reason":"rejected"`, "response": `"reason":"idle timeout"`}[what]
				waitFor(t, func() bool { return strings.Contains(f.logs.String(), want) })
			})
		}
	}
}
