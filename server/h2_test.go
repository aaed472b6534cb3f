package server

import (
	"bufio"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"ferry/server/httphead"
)

func TestSawH2Preface(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "preface", in: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04", want: true},
		{name: "POST", in: "POST http://a/ HTTP/1.1\r\n\r\n"},
		{name: "PUT shorter than the preface", in: "PUT / HTTP/1.0\r\n\r\n"},
		{name: "HTTP/1.1 PRI", in: "PRI * HTTP/1.1\r\n\r\n"},
		{name: "cut short", in: "PRI * HTTP/2.0\r\n"},
		{name: "empty", in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte per read: the check must not wait for bytes a
			// differing request never sends.
			r := iotest.OneByteReader(strings.NewReader(tt.in))
			h := &conn{br: bufio.NewReaderSize(r, handshakeBufSize)}
			if got := h.sawH2Preface(); got != tt.want {
				t.Errorf("sawH2Preface(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestConnectionTokens(t *testing.T) {
	lim := httphead.Limits{MaxBytes: 64 << 10, MaxFields: 100}
	tests := []struct {
		name, head string
		want       []string
	}{
		{name: "none", head: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{name: "close and a field", head: "HTTP/1.1 200 OK\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\n\r\n", want: []string{"X-Hop", "close"}},
		{name: "two lines", head: "HTTP/1.1 200 OK\r\nconnection: a\r\nConnection: ,b ,\r\n\r\n", want: []string{"a", "b"}},
		{name: "interim skipped", head: "HTTP/1.1 100 Continue\r\nConnection: x\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: y\r\n\r\n", want: []string{"y"}},
		{name: "body after the head", head: "HTTP/1.1 200 OK\r\nConnection: z\r\nContent-Length: 5\r\n\r\nhello", want: []string{"z"}},
		{name: "cut short", head: "HTTP/1.1 200 OK\r\nConnection: z\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := connectionTokens([]byte(tt.head), lim); !slices.Equal(got, tt.want) {
				t.Errorf("connectionTokens = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDefaultPort(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com", "example.com:80"},
		{"example.com:8080", "example.com:8080"},
		{"[::1]", "[::1]:80"},
		{"[::1]:81", "[::1]:81"},
		{"example.com:", "example.com:80"},
	}
	for _, tt := range tests {
		if got := defaultPort(tt.in, "80"); got != tt.want {
			t.Errorf("defaultPort(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
