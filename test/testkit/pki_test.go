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
	ln, err := tls.Listen("tcp", "127.0.0.1:0", p.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	for _, name := range []string{"127.0.0.1", "localhost", "proxy.test"} {
		t.Run(name, func(t *testing.T) {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: p.Roots(), ServerName: name}}
			c, err := d.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatalf("handshake for %s: %v", name, err)
			}
			c.Close()
		})
	}
}
