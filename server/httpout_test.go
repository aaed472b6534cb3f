package server

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"ferry/server/httphead"
)

func TestOriginForm(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://h/a|b?q={1}", "/a|b?q={1}"},
		{"http://h", "/"},
		{"http://h:8080?x=1", "/?x=1"},
		{"http://u:p@h:1/p/%7C/é", "/p/%7C/é"},
		{"/already", "/already"},
	}
	for _, tt := range tests {
		if got := originForm(tt.in); got != tt.want {
			t.Errorf("originForm(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// The head forwarded upstream is the client's, minus hop-by-hop fields,
// plus what a plugin changed on the view.
func TestRequestOut(t *testing.T) {
	const in = "GET http://o.test/a|b HTTP/1.1\r\nHost: o.test\r\nx-lower:  1 \r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nProxy-Authorization: Basic eA==\r\nX-Dup: a\r\nx-dup: b\r\nKeep-Alive: 5\r\n\r\n"
	tests := []struct {
		name string
		edit func(*http.Request)
		want string
	}{
		{name: "untouched", edit: func(*http.Request) {},
			want: "GET /a|b HTTP/1.1\r\nHost: o.test\r\nx-lower:  1 \r\nX-Dup: a\r\nx-dup: b\r\n\r\n"},
		{name: "one changed, one added", edit: func(r *http.Request) {
			r.Header.Set("X-Dup", "c")
			r.Header.Add("Via", "1.1 ferry")
		}, want: "GET /a|b HTTP/1.1\r\nHost: o.test\r\nx-lower:  1 \r\nX-Dup: c\r\nVia: 1.1 ferry\r\n\r\n"},
		{name: "removed", edit: func(r *http.Request) { r.Header.Del("X-Lower") },
			want: "GET /a|b HTTP/1.1\r\nHost: o.test\r\nX-Dup: a\r\nx-dup: b\r\n\r\n"},
		{name: "path and host changed", edit: func(r *http.Request) {
			r.URL.Path = "/new"
			r.Host = "n.test"
		}, want: "GET /new HTTP/1.1\r\nHost: n.test\r\nx-lower:  1 \r\nX-Dup: a\r\nx-dup: b\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hd, err := httphead.ReadRequest(bufio.NewReader(strings.NewReader(in)), httphead.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			fr, _ := httphead.RequestFraming(hd)
			req, err := requestView(hd, fr)
			if err != nil {
				t.Fatal(err)
			}
			stripHopByHop(hd, req.Header, false)
			o := requestOut{hd: hd, req: req, fr: fr, origURL: *req.URL}
			tt.edit(req)
			if got := string(o.append(nil)); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestResponseOut(t *testing.T) {
	tests := []struct {
		name, in string
		o        responseOut
		want     string
	}{
		{name: "1.0 origin, fields kept", in: "HTTP/1.0 200 OK\r\nx-b: 1\r\nA:2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nx-b: 1\r\nA:2\r\nContent-Length: 0\r\n\r\n"},
		{name: "close added", in: "HTTP/1.1 404 Nope\r\n\r\n", o: responseOut{conn: "close"},
			want: "HTTP/1.1 404 Nope\r\nConnection: close\r\n\r\n"},
		{name: "dechunked for 1.0", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", o: responseOut{dechunk: true, client10: true, conn: "close"},
			want: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"},
		{name: "upgrade", in: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", o: responseOut{upgrade: true},
			want: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		{name: "codings rewritten only when untidy", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nX: 1\r\ntransfer-encoding: Chunked,\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\nX: 1\r\n\r\n"},
		{name: "codings as they came", in: "HTTP/1.1 200 OK\r\ntransfer-encoding:  chunked\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\ntransfer-encoding:  chunked\r\n\r\n"},
		{name: "proxy fields", in: "HTTP/1.1 200 OK\r\nProxy-Authenticate: Basic\r\nProxy-Status: ferry\r\n\r\n",
			want: "HTTP/1.1 200 OK\r\nProxy-Status: ferry\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hd, err := httphead.ReadResponse(bufio.NewReader(strings.NewReader(tt.in)), httphead.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			o := tt.o
			o.hd = hd
			o.fr, _ = httphead.ResponseFraming(hd, "GET")
			if got := string(o.append(nil)); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
