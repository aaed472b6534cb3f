package server

import (
	"bufio"
	"strings"
	"testing"

	"ferry/server/httphead"
)

// TestHopByHop: what a proxy drops (RFC 9110 section 7.6.1), in any
// letter case, and what it keeps, names of the same length included.
func TestHopByHop(t *testing.T) {
	const head = "GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\nconnection: keep-alive, X-Named ,x-other\r\nConnection: X-Second\r\n\r\n"
	hd, err := httphead.ReadRequest(bufio.NewReader(strings.NewReader(head)), httphead.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		request, resp bool // dropped from a request, from a response
	}{
		{"Connection", true, true},
		{"CONNECTION", true, true},
		{"keep-alive", true, true},
		{"Te", true, true},
		{"upgrade", true, true},
		{"Proxy-Connection", true, true},
		{"proxy-authenticate", true, true},
		{"Proxy-Authorization", true, false},
		{"Proxy-Status", true, false}, // RFC 9209: for the client
		{"x-named", true, true},       // named by a Connection field
		{"X-OTHER", true, true},
		{"X-Second", true, true}, // by the second Connection field
		{"Connections", false, false},
		{"Connectio", false, false},
		{"X-Upgrade", false, false},
		{"Tee", false, false},
		{"Keep-Alive2", false, false},
		{"Content-Length", false, false},
		{"Host", false, false},
	}
	for _, tt := range tests {
		if got := hopByHop(hd, tt.name, true); got != tt.request {
			t.Errorf("request field %q: hop-by-hop %v, want %v", tt.name, got, tt.request)
		}
		if got := hopByHop(hd, tt.name, false); got != tt.resp {
			t.Errorf("response field %q: hop-by-hop %v, want %v", tt.name, got, tt.resp)
		}
	}
}

// BenchmarkHopByHop asks hopByHop of every field of a browser's request
// and of nginx's response, as a forwarded request and response do.
func BenchmarkHopByHop(b *testing.B) {
	const req = "GET http://o.test/app.js HTTP/1.1\r\nHost: o.test\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nReferer: http://o.test/\r\n" +
		"Connection: keep-alive\r\nCookie: a=1; b=2\r\nSec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n" +
		"If-Modified-Since: Sat, 05 Dec 2026 10:00:00 GMT\r\nIf-None-Match: \"6752f1a0-400\"\r\nPriority: u=2\r\nProxy-Connection: keep-alive\r\n\r\n"
	const resp = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 12:00:00 GMT\r\nContent-Type: application/javascript\r\n" +
		"Content-Length: 1024\r\nLast-Modified: Sat, 05 Dec 2026 10:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"6752f1a0-400\"\r\n" +
		"Accept-Ranges: bytes\r\nCache-Control: max-age=60\r\n\r\n"
	rq, err := httphead.ReadRequest(bufio.NewReader(strings.NewReader(req)), httphead.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	rs, err := httphead.ReadResponse(bufio.NewReader(strings.NewReader(resp)), httphead.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	dropped := 0
	for b.Loop() {
		for i := range rq.Len() {
			if hopByHop(rq, rq.Name(i), true) {
				dropped++
			}
		}
		for i := range rs.Len() {
			if hopByHop(rs, rs.Name(i), false) {
				dropped++
			}
		}
	}
	if dropped != 3*b.N {
		b.Fatalf("dropped %d fields in %d loops, want 3 a loop", dropped, b.N)
	}
}
