package server

import (
	"net"
	"net/netip"
	"sync"

	"ferry/config"
	"ferry/relay"
)

// autoMaxConnections is [limits] max_connections when the file leaves it
// out: what the open-file limit allows. Refusing a connection is better
// than failing accept with EMFILE, which leaves the client waiting in the
// backlog, or a dial, which answers 502.
func autoMaxConnections() int {
	limit, ok := fileLimit()
	if !ok {
		return 0
	}
	return maxConnectionsFor(limit)
}

// maxConnectionsFor is the connection budget of an open-file limit: each
// connection counted at the most a tunnel holds (relay.TunnelFDs: client
// and upstream sockets, and a splice pipe each way while a chunk is in
// flight, which a client that does not read keeps), after a reserve for
// ferry's own descriptors (listeners, logs, the admin service, health
// checks, name lookups, the descriptor accept takes to refuse one): a
// quarter of the limit, at most 256.
func maxConnectionsFor(limit uint64) int {
	reserve := min(limit/4, 256)
	return max(int((limit-reserve)/relay.TunnelFDs), 1)
}

// maxConnections is the server-wide cap for cfg; 0 means none. Without
// one in the file it follows the open-file limit at start and at each
// reload.
func maxConnections(cfg *config.Config) int64 {
	if p := cfg.Limits.MaxConnections; p != nil {
		return int64(*p)
	}
	return int64(autoMaxConnections())
}

// MaxConnections is the current cap on client connections over all
// listeners; 0 means none.
func (s *Server) MaxConnections() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen.maxConns
}

// handshakes counts, per client address, connections still in their
// handshake (or, for a socket, HTTP/2 streams open).
type handshakes struct {
	mu sync.Mutex
	n  map[netip.Addr]int32
}

// acquire counts a handshake for ip unless ip already has limit of them.
func (h *handshakes) acquire(ip netip.Addr, limit int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = make(map[netip.Addr]int32)
	}
	if int(h.n[ip]) >= limit {
		return false
	}
	h.n[ip]++
	return true
}

func (h *handshakes) release(ip netip.Addr) {
	h.mu.Lock()
	if h.n[ip] <= 1 {
		delete(h.n, ip)
	} else {
		h.n[ip]--
	}
	h.mu.Unlock()
}

// peerIP is the IP of a connection's remote address.
func peerIP(c net.Conn) netip.Addr { return addrIP(c.RemoteAddr()) }

// addrIP is the IP of a TCP address; invalid for other addresses.
func addrIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// admitHandshake counts c's handshake against its address's limit; false
// means refuse it. Peers trusted for the PROXY protocol are load balancers
// that carry many clients, and are not limited.
func (l *frontend) admitHandshake(h *conn) bool {
	limit := *l.gen.cfg.Limits.MaxClientHandshakes
	if limit == 0 {
		return true
	}
	ip := peerIP(h.c)
	if !ip.IsValid() {
		return true
	}
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	if !l.srv.handshakes.acquire(ip, limit) {
		return false
	}
	h.hsIP = ip
	return true
}

// handshakeDone releases the handshake's count, once.
func (h *conn) handshakeDone() {
	if h.hsIP.IsValid() {
		h.l.srv.handshakes.release(h.hsIP)
		h.hsIP = netip.Addr{}
	}
}
