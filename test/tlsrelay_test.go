//go:build linux

package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"ferry/test/testkit"
)

// tlsTunnel is a tunnel through a TLS listener: the client's TLS
// connection, read through the reader that took the handshake's answer.
type tlsTunnel struct {
	*tls.Conn
	r *bufio.Reader
}

func (c *tlsTunnel) Read(p []byte) (int, error) { return c.r.Read(p) }

// tlsTunnelDialers open tunnels through a TLS listener with CONNECT and
// with SOCKS5.
var tlsTunnelDialers = []struct {
	name string
	dial func(c *tls.Conn, target string) (*tlsTunnel, error)
}{
	{"connect", func(c *tls.Conn, target string) (*tlsTunnel, error) {
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("CONNECT: %s", resp.Status)
		}
		return &tlsTunnel{c, br}, nil
	}},
	{"socks5", func(c *tls.Conn, target string) (*tlsTunnel, error) {
		d, _ := proxy.SOCKS5("tcp", c.RemoteAddr().String(), nil, proxy.Direct)
		wc := d.(interface {
			DialWithConn(ctx context.Context, c net.Conn, network, address string) (net.Addr, error)
		})
		if _, err := wc.DialWithConn(context.Background(), c, "tcp", target); err != nil {
			return nil, err
		}
		return &tlsTunnel{c, bufio.NewReader(c)}, nil
	}},
}

// forEachTLSPath runs fn as a parallel subtest for each copy path and
// tunnel protocol, with a watched ferry whose listener speaks TLS.
func forEachTLSPath(t *testing.T, fn func(t *testing.T, w *watched, pki tlsListener, dial func(*tls.Conn, string) (*tlsTunnel, error))) {
	for _, cp := range copyPaths {
		for _, d := range tlsTunnelDialers {
			t.Run(cp.name+"/"+d.name, func(t *testing.T) {
				t.Parallel()
				pki := newTLSListener(t)
				w := startWatched(t, faultSetup{hooked: cp.hooked,
					listener: fmt.Sprintf("tls = { cert = %q, key = %q }", pki.cert, pki.key)})
				fn(t, w, pki, d.dial)
			})
		}
	}
}

// openTLSTunnel opens a tunnel to target through w's TLS listener.
func openTLSTunnel(t *testing.T, w *watched, pki tlsListener, dial func(*tls.Conn, string) (*tlsTunnel, error), target string) *tlsTunnel {
	t.Helper()
	c := dialTLSListener(t, w.addr, pki)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	tun, err := dial(c, target)
	if err != nil {
		t.Fatalf("open tunnel: %v", err)
	}
	return tun
}

// TestTLSTunnelHalfClose: a client ends its side with close_notify; the
// target sees the end of the stream and still answers, and the answer
// and then the end (close_notify and FIN) reach the client, whose TLS
// connection stays whole.
func TestTLSTunnelHalfClose(t *testing.T) {
	t.Parallel()
	const n = 1 << 20
	forEachTLSPath(t, func(t *testing.T, w *watched, pki tlsListener, dial func(*tls.Conn, string) (*tlsTunnel, error)) {
		target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
			deadlineAfter(c, 30*time.Second)
			got, _ := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "got %d\n", got)
		})
		tun := openTLSTunnel(t, w, pki, dial, target.Addr)
		if _, err := tun.Write(bytesOf('x', n)); err != nil {
			t.Fatalf("write: %v", err)
		}
		if err := tun.CloseWrite(); err != nil {
			t.Fatalf("close_notify: %v", err)
		}
		got, err := io.ReadAll(tun)
		if want := "got " + strconv.Itoa(n) + "\n"; err != nil || string(got) != want {
			t.Fatalf("after the half-close read %q, %v; want %q and a clean end", got, err, want)
		}
		tun.Close()
		w.waitAccess(t, target.Addr, "client closed")
		w.checkSettled(t)
	})
}

// TestTLSTunnelResets: a reset on one side of a TLS tunnel is passed on
// as a reset to the other, through the TLS layer: the TCP connection
// under the client's TLS is reset, not closed with close_notify.
func TestTLSTunnelResets(t *testing.T) {
	t.Parallel()
	forEachTLSPath(t, func(t *testing.T, w *watched, pki tlsListener, dial func(*tls.Conn, string) (*tlsTunnel, error)) {
		target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
			deadlineAfter(c, 30*time.Second)
			c.Write(bytesOf('a', 64<<10))
			io.ReadFull(c, make([]byte, 1)) // the client has the bytes
			resetClose(c)
		})
		tun := openTLSTunnel(t, w, pki, dial, target.Addr)
		if _, err := io.ReadFull(tun, make([]byte, 64<<10)); err != nil {
			t.Fatalf("read: %v", err)
		}
		tun.Write([]byte{1})
		_, err := io.ReadAll(tun)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client read after the upstream reset: %v, want ECONNRESET", errOrEOF(err))
		}
		tun.Close()
		w.waitAccess(t, target.Addr, "upstream reset")

		ended := make(chan error, 1)
		target2 := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
			deadlineAfter(c, 30*time.Second)
			_, err := io.Copy(io.Discard, c)
			ended <- err
		})
		tun = openTLSTunnel(t, w, pki, dial, target2.Addr)
		tun.Write(bytes.Repeat([]byte("y"), 1000))
		time.Sleep(50 * time.Millisecond)
		resetClose(tun.NetConn().(*net.TCPConn))
		select {
		case err := <-ended:
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("target read after the client's reset: %v, want ECONNRESET", errOrEOF(err))
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the target's read did not end after the client's reset")
		}
		w.waitAccess(t, target2.Addr, "client reset")
		w.checkSettled(t)
	})
}
