//go:build linux

package test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/test/testkit"
)

// TestDialFailures asks ferry, in each protocol, for a loopback port on
// which nothing listens: each client gets its protocol's "connection
// refused" answer and ferry logs one access line with reason "dial failed".
func TestDialFailures(t *testing.T) {
	t.Parallel()
	f := startFerry(t, withJSON(`handshake_timeout = "5s"`), nil)

	tests := []struct {
		name  string
		proto string
		// ask sends the request for target over c and returns the answer
		// to compare with want.
		ask        func(c net.Conn, target string) (string, error)
		want       string
		wantStatus int64
	}{
		{
			name:  "socks5 REP 0x05",
			proto: "socks5",
			ask: func(c net.Conn, target string) (string, error) {
				rep, err := testkit.SOCKS5Request(c, target)
				return fmt.Sprintf("REP %#02x", rep), err
			},
			want: "REP 0x05",
		},
		{
			name:  "socks4 CD 0x5b",
			proto: "socks4",
			ask: func(c net.Conn, target string) (string, error) {
				cd, err := testkit.SOCKS4Request(c, target)
				return fmt.Sprintf("CD %#02x", cd), err
			},
			want: "CD 0x5b",
		},
		{
			name:  "http CONNECT 502",
			proto: "connect",
			ask: func(c net.Conn, target string) (string, error) {
				fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
				return readStatus(c, http.MethodConnect)
			},
			want:       "502",
			wantStatus: 502,
		},
		{
			name:  "http GET 502",
			proto: "http",
			ask: func(c net.Conn, target string) (string, error) {
				fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
				return readStatus(c, http.MethodGet)
			},
			want:       "502",
			wantStatus: 502,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			target := testkit.ClosedAddr(t)
			c, err := net.DialTimeout("tcp", f.addr, testkit.DialTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			deadlineAfter(c, 20*time.Second)
			got, err := tt.ask(c, target)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			l := f.waitLine(t, "access", byTarget(target))
			if got, want := l.str("proto"), tt.proto; got != want {
				t.Errorf("access proto = %q, want %q", got, want)
			}
			if got, want := l.str("reason"), "dial failed"; got != want {
				t.Errorf("access reason = %q, want %q: %v", got, want, l)
			}
			if status, _ := l.num("status"); status != tt.wantStatus {
				t.Errorf("access status = %d, want %d", status, tt.wantStatus)
			}
		})
	}
}

// readStatus reads an HTTP response head from c and returns its code.
func readStatus(c net.Conn, method string) (string, error) {
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode), nil
}

// TestBadClients checks that clients that never finish a handshake, or
// send garbage, are closed within handshake_timeout, with an error answer
// where the protocol has one.
func TestBadClients(t *testing.T) {
	t.Parallel()
	const handshake = time.Second
	// slack covers scheduling on a loaded machine; the test checks that the
	// connection is closed at all, not how fast.
	const slack = 9 * time.Second
	f := startFerry(t, withJSON(`handshake_timeout = "1s"`), nil)

	tests := []struct {
		name string
		send string
		// wantPrefix is how the answer must start; "" means no answer.
		wantPrefix string
	}{
		{name: "silent", send: ""},
		{name: "binary garbage", send: "\x00\xff\x13\x37garbage"},
		{name: "text garbage without end", send: "HELLO there, no newline"},
		{name: "text garbage lines", send: "this is not http\r\n\r\n", wantPrefix: "HTTP/1.1 400 "},
		{name: "origin-form request", send: "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", wantPrefix: "HTTP/1.1 400 "},
		{name: "unfinished CONNECT head", send: "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: x\r\n"},
		{name: "socks5 half greeting", send: "\x05\x02\x00"},
		{name: "socks5 unsupported command", send: "\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x09", wantPrefix: "\x05\x00\x05\x07"},
		{name: "socks4 unfinished userid", send: "\x04\x01\x00\x09\x7f\x00\x00\x01abc"},
	}
	// All clients connect and send first, so that the ones waiting for the
	// timeout wait together; then each case reads its answer.
	conns := make([]net.Conn, len(tests))
	for i, tt := range tests {
		c, err := net.DialTimeout("tcp", f.addr, testkit.DialTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if tt.send != "" {
			if _, err := io.WriteString(c, tt.send); err != nil {
				t.Fatal(err)
			}
		}
		c.SetReadDeadline(time.Now().Add(handshake + slack))
		conns[i] = c
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := io.ReadAll(conns[i])
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				t.Fatalf("connection still open %v after connecting (handshake_timeout %v); got %q", handshake+slack, handshake, got)
			case err != nil && !errors.Is(err, syscall.ECONNRESET):
				t.Fatalf("read: %v", err)
			}
			if tt.wantPrefix == "" && len(got) > 0 {
				t.Errorf("got answer %q, want none", got)
			}
			if !strings.HasPrefix(string(got), tt.wantPrefix) {
				t.Errorf("got answer %q, want it to start with %q", got, tt.wantPrefix)
			}
		})
	}
	if code := f.stop(t); code != 0 {
		t.Errorf("ferry exited %d after SIGTERM, want 0", code)
	}
	if ls := f.lines("access", nil); len(ls) > 0 {
		t.Errorf("bad clients produced access lines, want none: %v", ls)
	}
}
