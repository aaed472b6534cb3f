package testkit

import (
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TCPTarget is a TCP server on 127.0.0.1 that runs a handler for each
// connection. Its cleanup closes the listener and waits for the
// handlers, which must end by themselves (tests bound them with
// deadlines).
type TCPTarget struct {
	Listener net.Listener
	Addr     string // host:port
	wg       sync.WaitGroup
}

// NewTCPTarget starts a TCPTarget whose handler is handle; the
// connection is closed when handle returns.
func NewTCPTarget(t testing.TB, handle func(c *net.TCPConn)) *TCPTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tt := &TCPTarget{Listener: ln, Addr: ln.Addr().String()}
	tt.wg.Add(1)
	go func() {
		defer tt.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tt.wg.Add(1)
			go func() {
				defer tt.wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		tt.wg.Wait()
	})
	return tt
}

// EchoServer accepts connections on IPv4 loopback and echoes them,
// closing its write side after the client's EOF. Its cleanup closes the
// listener only: a connection ends when its client closes.
func EchoServer(t testing.TB) string {
	t.Helper()
	return EchoServerOn(t, "127.0.0.1:0")
}

// EchoServerOn is EchoServer listening on addr.
func EchoServerOn(t testing.TB, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

// EchoTarget is EchoServer as a TCPTarget: its cleanup also waits until
// every connection has ended, for tests and benchmarks that check for
// leaked goroutines.
func EchoTarget(t testing.TB) *TCPTarget {
	t.Helper()
	return NewTCPTarget(t, func(c *net.TCPConn) {
		io.Copy(c, c)
		c.CloseWrite()
	})
}

// TargetBody is what HTTPTarget and TLSTarget answer.
const TargetBody = "hello from the ferry e2e target\n"

// HTTPTarget starts a plain HTTP server on 127.0.0.1 that answers every
// request with TargetBody.
func HTTPTarget(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, TargetBody)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TLSTarget starts an HTTPS server on 127.0.0.1 answering TargetBody and
// writes its certificate (self-signed, valid for 127.0.0.1) as PEM to a
// file for curl --cacert.
func TLSTarget(t testing.TB) (srv *httptest.Server, caFile string) {
	t.Helper()
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, TargetBody)
	}))
	// Handshake errors (none are expected) would go to the test log.
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

// FreeAddr is 127.0.0.1:PORT with a port that was free a moment ago, for
// a server the test starts to listen on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Zeros reads as an endless run of zero bytes: a body of any size
// without holding it, io.CopyN(conn, Zeros{}, n).
type Zeros struct{}

func (Zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
