// Package load is what scripts/bench and scripts/soak share on the
// client side of a proxy under test: the SOCKS5 and HTTP CONNECT
// handshakes they speak to it, a TCP server that tracks its connections
// for the targets at the far end, and the size flags' parser. The /proc
// readers they share with ferry's tests are in ferry/test/testkit.
//
//	c, _ := net.Dial("tcp", proxy)
//	c.SetDeadline(deadline)
//	tun, err := load.Connect(c, target) // or load.SOCKS5(c, target)
//	var r *load.Refusal
//	if errors.As(err, &r) { ... } // the proxy answered, and said no
//
// The handshakes are hand-written, not golang.org/x/net/proxy, on
// purpose: the tools measure the proxy's CPU per tunnel, and they need
// the raw reply codes and malformed requests that a general client hides.
// The package does not dial (each tool has its own deadlines and retries),
// resolve names (targets are IP addresses) or authenticate.
package load
