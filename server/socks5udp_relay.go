package server

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"ferry/plugins"
	"ferry/relay/upstream"
)

// Bounds of an association.
const (
	// udpMaxDatagram is the largest datagram read: the most an IP packet
	// can carry, so nothing is ever truncated.
	udpMaxDatagram = 65535
	// udpHeadroom is room kept before a datagram read from a destination
	// for the header that goes in front of it to the client (IPv6's is
	// the longest), so the payload is not copied.
	udpHeadroom = 4 + 16 + 2
	// udpSocketBuffer is asked of the kernel for each relay socket's
	// receive and send buffers (it caps them at net.core.rmem_max and
	// wmem_max): bursts a client sends faster than one goroutine relays
	// wait there instead of being dropped.
	udpSocketBuffer = 1 << 20
)

// association is one SOCKS5 UDP association: its relay socket, which
// client address it accepts, its destinations and its counts. Its
// fields belong to the goroutine that reads the socket (readLoop) until
// run returns.
type association struct {
	l     *frontend
	s     *plugins.Session
	fixed string // the upstream a plugin chose for every destination; "" routes each
	sock  *net.UDPConn
	// bindIP is the relay socket's address; invalid for every address.
	bindIP netip.Addr
	// bound is what the reply advertises: the relay socket's port at the
	// address the client reached (or socks5_udp_advertise).
	bound netip.AddrPort
	// clientIP and clientPort are the datagrams' accepted source; port 0
	// until the first datagram fixes it.
	clientIP   netip.Addr
	clientPort uint16
	dests      destTable
	parent     *parentLink
	idle       time.Duration
	last       time.Time // of the last datagram relayed, either way

	// ctl is the control connection; adminClosed: Close ended it.
	ctl         net.Conn
	adminClosed atomic.Bool

	// up and down (payload bytes) are read by the admin API meanwhile.
	up, down              atomic.Int64
	dgUp, dgDown, dropped int64
	reason                plugins.CloseReason
	err                   error
}

// Bytes reports the payload bytes relayed so far each way (for
// /channels).
func (a *association) Bytes() (up, down int64) { return a.up.Load(), a.down.Load() }

// Close ends the association with plugins.ReasonAdminClosed: closing the
// control connection ends it as the client would.
func (a *association) Close() {
	a.adminClosed.Store(true)
	a.ctl.Close()
}

// open makes the association's relay socket, one for both sides: the
// client's datagrams and the destinations'. It is bound to the address
// the client reached, so that what goes back to the client leaves from
// the address the client sends to (a client whose socket is connected
// to the relay, as PySocks's is, takes nothing else, and on a host with
// several addresses the kernel might pick another). A client that
// reached a loopback address gets a socket on every address instead: one
// bound to loopback could not reach any other destination, and answers
// to a loopback client leave from loopback anyway. Only the client's
// address is accepted from, and only destinations it sent to are relayed
// back.
func (a *association) open(h *conn) error {
	var local netip.Addr
	if ta, ok := h.c.LocalAddr().(*net.TCPAddr); ok {
		local = ta.AddrPort().Addr().Unmap().WithZone("")
	}
	var bind netip.Addr // every address, IPv4 and IPv6
	if local.IsValid() && !local.IsLoopback() && !local.IsUnspecified() {
		bind = local
	}
	sock, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, 0)))
	if err != nil {
		return &dialError{target: "udp relay socket", code: plugins.CodeGeneral, err: err}
	}
	sock.SetReadBuffer(udpSocketBuffer)
	sock.SetWriteBuffer(udpSocketBuffer)
	a.sock, a.bindIP, a.ctl = sock, bind, h.c
	a.clientIP, a.clientPort = clientFilter(a.s.Target, h.client)
	ip := h.l.cfg.SOCKS5UDPAdvertise.Addr
	if !ip.IsValid() {
		ip = local
	}
	a.bound = netip.AddrPortFrom(ip, uint16(sock.LocalAddr().(*net.UDPAddr).Port))
	a.idle = h.l.set.IdleTimeout
	a.dests.init()
	return nil
}

// advertised is the relay's address for the reply.
func (a *association) advertised() net.Addr { return net.TCPAddrFromAddrPort(a.bound) }

// close releases the socket and any upstream association.
func (a *association) close() {
	a.sock.Close()
	if a.parent != nil {
		a.parent.assoc.Control.Close()
	}
}

// run relays until the control connection ctl closes, the association
// idles out or ctx ends. This goroutine watches ctl (RFC 1928 §7: the
// association ends with it); one more reads the relay socket.
func (a *association) run(ctx context.Context, ctl net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.readLoop(ctx)
		ctl.Close() // wakes the watcher when the reader ended first
	}()
	stop := context.AfterFunc(ctx, func() { ctl.Close() })
	defer stop()
	// The client has nothing to say on the control connection; what it
	// sends anyway is read and dropped so that its close is seen.
	io.Copy(io.Discard, ctl)
	a.sock.Close()
	<-done
	switch {
	case ctx.Err() != nil:
		a.reason, a.err = plugins.ReasonShutdown, nil
	case a.adminClosed.Load():
		a.reason, a.err = plugins.ReasonAdminClosed, nil
	case a.reason == plugins.ReasonUnknown:
		a.reason = plugins.ReasonClientClosed
	}
}

// stats fills st with the association's counts and end.
func (a *association) stats(st *plugins.Stats) {
	st.Up, st.Down = a.up.Load(), a.down.Load()
	st.DatagramsUp, st.DatagramsDown, st.DatagramsDropped = a.dgUp, a.dgDown, a.dropped
	st.Reason, st.Err = a.reason, a.err
}

// handle relays one datagram of n bytes at buf[udpHeadroom:] from from.
func (a *association) handle(ctx context.Context, buf []byte, n int, from netip.AddrPort) {
	p := buf[udpHeadroom : udpHeadroom+n]
	switch {
	case from.Addr() == a.clientIP && (a.clientPort == 0 || from.Port() == a.clientPort):
		a.fromClient(ctx, p, from)
	case a.parent != nil && from == a.parent.assoc.Relay:
		a.fromParent(p)
	default:
		a.fromDestination(buf, n, from)
	}
}

// fromClient sends a client's datagram on to its destination.
func (a *association) fromClient(ctx context.Context, p []byte, from netip.AddrPort) {
	h, err := upstream.ParseUDPHeader(p)
	if err != nil || h.Frag != 0 {
		a.dropped++ // RFC 1928 §7: a relay that does not reassemble drops fragments
		return
	}
	a.clientPort = from.Port()
	d := a.destination(ctx, h)
	if d == nil || d.err != nil {
		a.dropped++
		return
	}
	payload := p[h.Len:]
	if d.viaParent {
		_, err = a.sock.WriteToUDPAddrPort(p, a.parent.assoc.Relay) // the header is the parent's too
	} else {
		_, err = a.sock.WriteToUDPAddrPort(payload, d.addr)
	}
	if err != nil {
		a.dropped++
		return
	}
	a.dgUp++
	a.up.Add(int64(len(payload)))
	a.last = time.Now()
}

// fromDestination sends a destination's answer to the client with a
// header naming its source. Only addresses datagrams were sent to are
// relayed back: anyone else's are dropped.
func (a *association) fromDestination(buf []byte, n int, from netip.AddrPort) {
	if a.clientPort == 0 || a.dests.byFrom[from] == nil {
		a.dropped++
		return
	}
	start := udpHeadroom - upstream.UDPHeaderLen(from)
	upstream.AppendUDPHeader(buf[start:start], from)
	if _, err := a.sock.WriteToUDPAddrPort(buf[start:udpHeadroom+n], a.clientAddr()); err != nil {
		a.dropped++
		return
	}
	a.dgDown++
	a.down.Add(int64(n))
	a.last = time.Now()
}

// fromParent sends the parent relay's datagram to the client as it is:
// its header already names the source.
func (a *association) fromParent(p []byte) {
	h, err := upstream.ParseUDPHeader(p)
	if err != nil || h.Frag != 0 || a.clientPort == 0 {
		a.dropped++
		return
	}
	if _, err := a.sock.WriteToUDPAddrPort(p, a.clientAddr()); err != nil {
		a.dropped++
		return
	}
	a.dgDown++
	a.down.Add(int64(len(p) - h.Len))
	a.last = time.Now()
}

func (a *association) clientAddr() netip.AddrPort {
	return netip.AddrPortFrom(a.clientIP, a.clientPort)
}
