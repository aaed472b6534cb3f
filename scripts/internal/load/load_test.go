package load

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
		bad  bool
	}{
		{name: "bytes", in: "4096", want: 4096},
		{name: "binary", in: "64KiB", want: 64 << 10},
		{name: "decimal", in: "100MB", want: 100e6},
		{name: "letter", in: "1.5M", want: 3 << 19},
		{name: "spaces", in: " 2 GiB ", want: 2 << 30},
		{name: "negative", in: "-1", bad: true},
		{name: "word", in: "lots", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.bad {
				if err == nil {
					t.Fatalf("ParseSize(%q): got %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q): got %d, %v, want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestStatusCode(t *testing.T) {
	tests := []struct {
		name string
		head string
		want int
	}{
		{name: "ok", head: "HTTP/1.1 200 Connection established\r\n\r\n", want: 200},
		{name: "refused", head: "HTTP/1.0 403 Forbidden\r\n\r\n", want: 403},
		{name: "not http", head: "SSH-2.0-x\r\n\r\n", want: 0},
		{name: "short code", head: "HTTP/1.1 20 x\r\n\r\n", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StatusCode([]byte(tt.head)); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// step is what a fake proxy reads (a byte count) and then answers.
type step struct {
	n     int
	reply string
}

// fakeProxy is a connection to a proxy that runs steps.
func fakeProxy(t *testing.T, steps ...step) net.Conn {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	go func() {
		for _, st := range steps {
			if _, err := io.ReadFull(server, make([]byte, st.n)); err != nil {
				return
			}
			server.Write([]byte(st.reply))
		}
	}()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	return client
}

func TestConnect(t *testing.T) {
	target := netip.MustParseAddrPort("127.0.0.1:9")
	req := "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n"
	c, err := Connect(fakeProxy(t, step{len(req), "HTTP/1.1 200 OK\r\n\r\nearly"}), target)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := c.Read(got); err != nil || string(got) != "early" {
		t.Fatalf("got %q, %v, want the bytes past the head", got, err)
	}
	_, err = Connect(fakeProxy(t, step{len(req), "HTTP/1.1 403 Forbidden\r\n\r\n"}), target)
	var r *Refusal
	if !errors.As(err, &r) || r.Code != 403 {
		t.Fatalf("got %v, want a refusal with 403", err)
	}
}

func TestSOCKS5(t *testing.T) {
	target := netip.MustParseAddrPort("[::1]:8080")
	req := SOCKS5Request(1, target)
	if want := append([]byte{5, 1, 0, 4}, append(target.Addr().AsSlice(), 0x1f, 0x90)...); !bytes.Equal(req, want) {
		t.Fatalf("request: got % x, want % x", req, want)
	}
	c := fakeProxy(t, step{3, "\x05\x00"}, step{len(req), "\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50"})
	if err := SOCKS5(c, target); err != nil {
		t.Fatal(err)
	}
	err := SOCKS5(fakeProxy(t, step{3, "\x05\x00"}, step{len(req), "\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"}), target)
	var r *Refusal
	if !errors.As(err, &r) || r.Code != 5 {
		t.Fatalf("got %v, want a refusal with code 5", err)
	}
}
