package testkit

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestEchoServer(t *testing.T) {
	tests := []struct {
		name string
		addr func(t *testing.T) string
	}{
		{name: "EchoServer", addr: func(t *testing.T) string { return EchoServer(t) }},
		{name: "EchoTarget", addr: func(t *testing.T) string { return EchoTarget(t).Addr }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", tt.addr(t), DialTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			EchoCheck(t, c)
		})
	}
}

func TestClosedAddr(t *testing.T) {
	c, err := net.DialTimeout("tcp", ClosedAddr(t), DialTimeout)
	if err == nil {
		c.Close()
		t.Fatal("dial: got a connection, want it refused")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: got %v, want connection refused", err)
	}
}
