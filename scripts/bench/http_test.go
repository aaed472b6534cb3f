package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		status  int
		body    int64
		close   bool
		wantErr string
		rest    string // what must be left unread
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT", status: 200, body: 5, rest: "NEXT"},
		{name: "no reason phrase", in: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", status: 200},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 2\n\nokX", status: 200, body: 2, rest: "X"},
		{name: "case-insensitive names", in: "HTTP/1.1 200 OK\r\ncontent-LENGTH:3\r\nCONNECTION: Close\r\n\r\nabc", status: 200, body: 3, close: true},
		{name: "connection list", in: "HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 0\r\n\r\n", status: 200, close: true},
		{name: "http/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, body: 1, close: true},
		{name: "http/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", status: 200, body: 1},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\na;ext=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT", status: 200, body: 15, rest: "NEXT"},
		{name: "close-delimited", in: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, body: 9, close: true},
		{name: "204 has no body", in: "HTTP/1.1 204 No Content\r\n\r\nNEXT", status: 204, rest: "NEXT"},
		{name: "404 read whole", in: "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnopNEXT", status: 404, body: 3, rest: "NEXT"},
		{name: "short body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", wantErr: "unexpected EOF"},
		{name: "bad status line", in: "HTTP/2 200 OK\r\n\r\n", wantErr: "bad status line"},
		{name: "bad status code", in: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: "bad status line"},
		{name: "no colon", in: "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", wantErr: "bad header line"},
		{name: "bad length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: "bad Content-Length"},
		{name: "two lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", wantErr: "bad Content-Length"},
		{name: "gzip coding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", wantErr: "unsupported Transfer-Encoding"},
		{name: "body over limit", in: "HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", wantErr: "over 1000"},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", wantErr: "bad chunk size"},
		{name: "no CRLF after chunk", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n", wantErr: "no CRLF"},
		{name: "interim", in: "HTTP/1.1 100 Continue\r\n\r\n", wantErr: "interim"},
		{name: "eof in head", in: "HTTP/1.1 200 OK\r\nContent-", wantErr: "unexpected EOF"},
		{name: "empty", in: "", wantErr: "unexpected EOF"},
		{name: "head too large", in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxHead) + "\r\n\r\n", wantErr: "over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), 128<<10)
			r, err := readResponse(br, 1000)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if r.status != tt.status || r.body != tt.body || r.close != tt.close {
				t.Errorf("got status %d body %d close %v, want %d %d %v", r.status, r.body, r.close, tt.status, tt.body, tt.close)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.rest {
				t.Errorf("got %q left unread, want %q", rest, tt.rest)
			}
		})
	}
}

func TestHTTPRequest(t *testing.T) {
	got := string(httpRequest("http", "127.0.0.1:80", 1024, 0))
	if !strings.HasPrefix(got, "GET http://127.0.0.1:80/1024 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n") || !strings.HasSuffix(got, "\r\n\r\n") {
		t.Errorf("got %q", got)
	}
	got = string(httpRequest("reverse", "127.0.0.1:80", 65536, 0))
	if !strings.HasPrefix(got, "GET /65536 HTTP/1.1\r\n") {
		t.Errorf("got %q", got)
	}
	got = string(httpRequest("http", "127.0.0.1:80", 1024, 5))
	if !strings.HasPrefix(got, "POST http://127.0.0.1:80/1024 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n") ||
		!strings.HasSuffix(got, "\r\nContent-Length: 5\r\n\r\nxxxxx") {
		t.Errorf("got %q", got)
	}
}

// TestHTTPLoad runs the http mode against an origin in this process, as
// a reverse proxy would see it (the origin itself is the "proxy"), with
// one connection closed by the origin now and then.
func TestHTTPLoad(t *testing.T) {
	var served atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		k := served.Add(1)
		if k%50 == 0 {
			w.Header().Set("Connection", "close")
		}
		if k%3 == 0 {
			w.(http.Flusher).Flush() // chunked
		}
		w.Write(make([]byte, n))
	}))
	defer origin.Close()
	addr := origin.Listener.Addr().(*net.TCPAddr).String()
	b := &bench{cfg: config{
		mode: "http", proto: "reverse", proxy: addr, origin: addr,
		conc: 1, warmup: 10, count: 200, duration: 10 * time.Second,
		timeout: 10 * time.Second, dialTO: 5 * time.Second,
	}}
	r := b.httpLoad(1024)
	if r.Errors != 0 || r.Requests != 200 {
		t.Fatalf("got %d requests and %d errors (%s), want 200 and none", r.Requests, r.Errors, r.FirstError)
	}
	if r.Bytes != 200*1024 || r.Reopened != 4 || r.ReqsPerSec <= 0 || r.ReqP50Us <= 0 {
		t.Errorf("got bytes %d, reopened %d, %.0f req/s, p50 %.0f us; want 204800 bytes, 4 reopened", r.Bytes, r.Reopened, r.ReqsPerSec, r.ReqP50Us)
	}

	b.cfg.proto = "http" // an origin answers absolute-form too
	r = b.httpLoad(100)
	if r.Errors != 0 || r.Requests != 200 {
		t.Fatalf("absolute-form: got %d requests and %d errors (%s)", r.Requests, r.Errors, r.FirstError)
	}
}

// TestHTTPLoadSilentClose runs against a server that answers one
// request per connection and closes it without saying so (tinyproxy
// does): the client opens a new connection and sends the request again,
// as curl does, and counts no error.
func TestHTTPLoadSilentClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
			}()
		}
	}()
	addr := ln.Addr().String()
	b := &bench{cfg: config{
		mode: "http", proto: "http", proxy: addr, origin: addr,
		conc: 2, warmup: 4, count: 100, duration: 10 * time.Second,
		timeout: 10 * time.Second, dialTO: 5 * time.Second,
	}}
	r := b.httpLoad(10)
	if r.Errors != 0 || r.Requests != 100 {
		t.Fatalf("got %d requests and %d errors (%s), want 100 and none", r.Requests, r.Errors, r.FirstError)
	}
	if r.Reopened != 100 {
		t.Errorf("got %d connections reopened, want 100", r.Reopened)
	}
}
