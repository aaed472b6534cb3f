// Package testkit holds the helpers that ferry's tests share: target
// servers at the far end of a tunnel, clients that open tunnels through
// ferry, a throwaway PKI, readers of a process's /proc entries, and
// services ferry talks to, started on loopback (slapd, redis-server and
// Redis Sentinel: StartRedis, StartSentinel).
//
//	echo := testkit.EchoServer(t)                  // 127.0.0.1:PORT
//	c, err := testkit.DialSOCKS5(ctx, proxy, echo) // or DialCONNECT
//	...
//	fds, err := testkit.CountFDs(pid)
//
// The SOCKS5 client is golang.org/x/net/proxy's; CONNECT is the few
// lines x/net/proxy does not have. SOCKS5Request and SOCKS4Request are
// raw, for tests that want the reply code rather than an error.
//
// What it does not do: start ferry (test/ and each package do that their
// own way), assert (helpers return errors or call t.Fatal for setup
// failures only), or run anywhere but on loopback. The /proc readers are
// Linux-only. scripts/ uses the /proc readers too, through a replace
// directive in scripts/go.mod.
package testkit
