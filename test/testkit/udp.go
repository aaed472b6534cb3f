package testkit

import (
	"fmt"
	"net"
	"net/netip"
)

// UDPEcho listens for datagrams on addr (port 0 for a free one) and sends
// each back to its sender, until the returned socket is closed. Its
// receive buffer is 4 MiB (as far as the kernel allows), so that a burst
// of a few hundred datagrams waits there instead of being dropped.
func UDPEcho(addr netip.AddrPort) (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("udp echo server: %w", err)
	}
	c.SetReadBuffer(4 << 20)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return c, nil
}
