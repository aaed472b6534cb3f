package testkit

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// TestPKIHandshake checks that a client trusting Roots accepts the server
// certificate for every name it was made for.
func TestPKIHandshake(t *testing.T) {
	p := NewPKI(t, "proxy.test")
	srv := NewTCPTarget(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, p.ServerTLS())
		if tc.Handshake() == nil {
			io.Copy(io.Discard, tc)
		}
	})
	for _, name := range []string{"127.0.0.1", "localhost", "proxy.test"} {
		t.Run(name, func(t *testing.T) {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: p.Roots(), ServerName: name}}
			c, err := d.Dial("tcp", srv.Addr)
			if err != nil {
				t.Fatalf("handshake for %s: %v", name, err)
			}
			c.Close()
		})
	}
}
