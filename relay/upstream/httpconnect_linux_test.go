package upstream

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestReadHeadExact(t *testing.T) {
	const head = "HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n"
	const after = "GREETING"
	big := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("b", 90)+"\r\n", 100) + "\r\n"
	tests := []struct {
		name  string
		parts []string
		head  string
		err   string
	}{
		{"one write", []string{head + after}, head, ""},
		{"head alone", []string{head}, head, ""},
		{"split before CRLFCRLF", []string{head[:len(head)-4], head[len(head)-4:] + after}, head, ""},
		{"split after CR", []string{head[:len(head)-3], head[len(head)-3:] + after}, head, ""},
		{"split after CRLF", []string{head[:len(head)-2], head[len(head)-2:] + after}, head, ""},
		{"split after CRLFCR", []string{head[:len(head)-1], head[len(head)-1:] + after}, head, ""},
		{"three pieces", []string{"HTTP/1.1 2", "00 OK\r\n\r", "\n" + after}, "HTTP/1.1 200 OK\r\n\r\n", ""},
		{"tiny first piece", []string{"HT", "TP/1.1 200 OK\r\n\r\n" + after}, "HTTP/1.1 200 OK\r\n\r\n", ""},
		{"head over several peeks", []string{big + after}, big, ""},
		{"head over the limit", []string{strings.Repeat("a", maxResponseHead+1)}, "", "response head over"},
		{"EOF inside the head", []string{"HTTP/1.1 200 OK\r\n", "<close>"}, "", io.ErrUnexpectedEOF.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				for _, p := range tt.parts {
					if p == "<close>" {
						return
					}
					time.Sleep(20 * time.Millisecond) // let the reader peek what came so far
					if _, err := io.WriteString(c, p); err != nil {
						return
					}
				}
				io.Copy(io.Discard, c)
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { c.Close(); <-done }()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			got, err := readHeadExact(c.(*net.TCPConn))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %q, %v; want error %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.head {
				t.Fatalf("head %q, want %q", got, tt.head)
			}
			if strings.HasSuffix(strings.Join(tt.parts, ""), after) {
				if rest := readN(t, c, len(after)); rest != after {
					t.Fatalf("after the head: %q", rest)
				}
			}
		})
	}
}
