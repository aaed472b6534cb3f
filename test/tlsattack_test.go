//go:build linux

package test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// withListenerKeys adds keys to the e2e listener of a config maker (before
// its plugins line) and tables after the whole file.
func withListenerKeys(config func(string) string, keys, tables string) func(string) string {
	return func(addr string) string {
		return strings.Replace(config(addr), "plugins = [", keys+"\nplugins = [", 1) + "\n" + tables + "\n"
	}
}

// readAllWithin reads c until EOF or an error, failing the test if that
// takes over limit: a hostile client must be answered or closed, never
// left hanging. It returns what was read.
func readAllWithin(t *testing.T, c net.Conn, limit time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(limit))
	got, err := io.ReadAll(io.LimitReader(c, 1<<20))
	if errors.Is(err, net.ErrClosed) || err != nil && strings.Contains(err.Error(), "deadline") {
		t.Fatalf("connection still open after %v (read %q): %v", limit, got, err)
	}
	return got
}

// TestTLSListenerHostileClients: what is not a TLS client gets a prompt
// close (plain HTTP, the 400 hint a TLS server gives), one that stalls is
// closed at handshake_timeout, and none costs a descriptor afterwards.
func TestTLSListenerHostileClients(t *testing.T) {
	t.Parallel()
	pki := newTLSListener(t)
	f := startFerry(t, withListenerKeys(pki.config("", []string{"log"}, "[[plugin]]\nname = \"log\"\n"),
		`handshake_timeout = "500ms"`, ""), nil)
	garbage := make([]byte, 1<<20)
	rand.Read(garbage)
	tests := []struct {
		name string
		send func(c net.Conn)
		want string // prefix of what the client reads before the close
	}{
		{"silent", func(net.Conn) {}, ""},
		{"half a record header", func(c net.Conn) { c.Write([]byte{0x16, 0x03}) }, ""},
		{"slow ClientHello", func(c net.Conn) {
			// A record that promises 16 KiB and trickles it.
			c.Write([]byte{0x16, 0x03, 0x01, 0x40, 0x00, 0x01})
			for range 20 {
				if _, err := c.Write([]byte{0}); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}, ""},
		{"plain HTTP proxy request", func(c net.Conn) {
			io.WriteString(c, "GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n")
		}, "HTTP/1.0 400 Bad Request"},
		{"plain CONNECT", func(c net.Conn) {
			io.WriteString(c, "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
		}, "HTTP/1.0 400 Bad Request"},
		{"SOCKS5 greeting", func(c net.Conn) { c.Write([]byte{5, 1, 0}) }, ""},
		{"1 MiB of garbage", func(c net.Conn) { c.Write(garbage) }, ""},
		{"oversized handshake message", func(c net.Conn) {
			// A ClientHello that claims 16 MiB: crypto/tls refuses
			// handshake messages over 64 KiB without buffering them.
			c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff})
		}, ""},
	}
	fds0 := procFDs(t, f.cmd.Process.Pid)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go tt.send(c)
			got := readAllWithin(t, c, 10*time.Second)
			if tt.want == "" && bytes.HasPrefix(got, []byte("HTTP/")) || !bytes.HasPrefix(got, []byte(tt.want)) {
				t.Errorf("read %q before the close, want %q first", got, tt.want)
			}
		})
	}
	t.Run("TLS 1.1", func(t *testing.T) {
		cfg := pki.clientTLS(nil)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if c, err := dialTLS(f.addr, cfg); err == nil {
			c.Close()
			t.Fatal("TLS 1.1 handshake succeeded, want it refused (TLS 1.2 is the oldest)")
		}
	})
	// Many at once: each is closed, and the descriptors come back.
	var cs []net.Conn
	for range 100 {
		c, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{0x16, 0x03, 0x01})
		cs = append(cs, c)
	}
	for _, c := range cs {
		readAllWithin(t, c, 10*time.Second)
		c.Close()
	}
	waitFor(t, func() bool { return procFDs(t, f.cmd.Process.Pid) <= fds0 })
}

// TestTLSListenerHandshakeLimit: TLS handshakes count against [limits]
// max_client_handshakes: with the budget held by clients that never send
// their ClientHello, a new connection is refused at once; when they go,
// TLS clients get through.
func TestTLSListenerHandshakeLimit(t *testing.T) {
	t.Parallel()
	pki := newTLSListener(t)
	f := startFerry(t, withListenerKeys(pki.config("", nil, ""), "", "[limits]\nmax_client_handshakes = 3"), nil)
	held := holdConns(t, f.addr, 3)
	time.Sleep(100 * time.Millisecond) // accepted, each holding a handshake
	if c, err := dialTLS(f.addr, pki.clientTLS(nil)); err == nil {
		c.Close()
		t.Fatal("a fourth handshake was served, want it refused")
	}
	f.waitLine(t, "connection refused: client at [limits] max_client_handshakes", nil)
	for _, c := range held {
		c.Close()
	}
	waitFor(t, func() bool {
		c, err := dialTLS(f.addr, pki.clientTLS(nil))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}
