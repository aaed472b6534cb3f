package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestContentLength(t *testing.T) {
	for _, tc := range []struct {
		head string
		n    int
		ok   bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n", 1024, true},
		{"HTTP/1.1 200 OK\r\nServer: x\r\ncontent-length:  7 \r\n\r\n", 7, true},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 0, true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", -1, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n", 2147483648, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 0, false},
	} {
		n, ok := contentLength([]byte(tc.head))
		if ok != tc.ok || ok && n != tc.n {
			t.Errorf("contentLength(%q) = %d, %v; want %d, %v", tc.head, n, ok, tc.n, tc.ok)
		}
	}
}

func TestReadHead(t *testing.T) {
	for _, tc := range []struct {
		in, head string
		err      bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"GET / HTTP/1.1\nHost: a\n\nrest", "GET / HTTP/1.1\nHost: a\n\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\n", "", true},
		{"GET / HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", 20000), "", true},
	} {
		head, err := readHead(bufio.NewReader(strings.NewReader(tc.in)), nil)
		if (err != nil) != tc.err || err == nil && string(head) != tc.head {
			t.Errorf("readHead(%.40q) = %.40q, %v; want %q, error %v", tc.in, head, err, tc.head, tc.err)
		}
	}
}

// TestForwardHTTP sends two keep-alive GETs through forwardHTTP on one
// connection and reads both answers whole.
func TestForwardHTTP(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	}))
	defer origin.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			forwardHTTP(c, origin.Listener.Addr().String())
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for _, path := range []string{"/one", "/two"} {
		fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: origin\r\n\r\n", origin.URL, path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != "GET "+path {
			t.Fatalf("%s: body %q, %v", path, body, err)
		}
	}
}
