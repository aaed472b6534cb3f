package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"time"

	"ferry/scripts/internal/load"
)

// dialer opens tunnels to target through a proxy speaking proto:
// "connect" (HTTP CONNECT), "socks5" (no authentication, target as an
// IPv4/IPv6 address), "tcp" (the proxy forwards every connection to a
// fixed target: nothing to say) or "h2" (CONNECT streams of shared
// HTTP/2 connections, h2.go: h2c, or ALPN h2 with TLS).
type dialer struct {
	proxy   string
	proto   string
	tls     *tls.Config // TLS to the proxy first (tlsdial.go); nil: none
	target  netip.AddrPort
	timeout time.Duration // for connect + handshake
	h2      h2Pool        // the connections of proto h2 (h2.go)
}

func (d *dialer) dial() (net.Conn, error) {
	if d.proto == "h2" {
		return d.h2Stream()
	}
	c, err := net.DialTimeout("tcp", d.proxy, d.timeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(d.timeout))
	if c, err = d.startTLS(c); err != nil {
		return nil, err
	}
	if d.proto == "tcp" {
		c.SetDeadline(time.Time{})
		return c, nil
	}
	var rc net.Conn
	switch d.proto {
	case "connect":
		rc, err = load.Connect(c, d.target)
	case "socks5":
		err = load.SOCKS5(c, d.target)
		rc = c
	default:
		err = fmt.Errorf("unknown proto %q", d.proto)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return rc, nil
}
