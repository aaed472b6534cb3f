package server

import (
	"bufio"
	"strings"
	"testing"
	"testing/iotest"
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
