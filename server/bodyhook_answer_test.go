package server

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"ferry/plugins"
)

// A plugin's answer is sent with ferry's framing and without the fields
// that would split the head or speak for the connection.
func TestAppendAnswer(t *testing.T) {
	hdr := http.Header{
		"Content-Type":      {"text/plain"},
		"Content-Length":    {"999"},
		"Transfer-Encoding": {"chunked"},
		"Connection":        {"keep-alive"},
		"X-Split":           {"a\r\nInjected: 1"},
		"Bad Name":          {"x"},
	}
	tests := []struct {
		name       string
		err        error
		head, keep bool
		want       string
	}{
		{name: "block", err: plugins.Block(403, "no\n", "m"), keep: true,
			want: "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nno\n"},
		{name: "head, closing", err: plugins.Block(451, "gone\n", "m"), head: true,
			want: "HTTP/1.1 451 Unavailable For Legal Reasons\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"},
		{name: "fields sanitized, status 0 is the code's", keep: true,
			err:  &plugins.RejectError{Code: plugins.CodeAuthRequired, Answer: &plugins.HTTPAnswer{Header: hdr, Body: []byte("x")}},
			want: "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nx"},
		{name: "interim status is the code's", keep: true,
			err:  &plugins.RejectError{Code: plugins.CodeForbidden, Answer: &plugins.HTTPAnswer{Status: 101}},
			want: "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"},
		{name: "204 has no body", keep: true,
			err:  &plugins.RejectError{Answer: &plugins.HTTPAnswer{Status: 204, Body: []byte("dropped")}},
			want: "HTTP/1.1 204 No Content\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := answerOf(&plugins.HookError{Plugin: "p", Hook: "OnHTTPBody", Err: tt.err})
			if a == nil {
				t.Fatal("no answer")
			}
			if got := string(appendAnswer(nil, a, tt.head, tt.keep)); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
			rec := httptest.NewRecorder()
			writeAnswer(rec, a, tt.head)
			if rec.Code != a.Status || rec.Header().Get("X-Split") != "" || rec.Header().Get("Connection") != "" {
				t.Errorf("writeAnswer: %d %v", rec.Code, rec.Header())
			}
		})
	}
	if answerOf(errors.New("plain")) != nil || answerOf(plugins.Reject(plugins.CodeForbidden, "x")) != nil {
		t.Error("an answer out of an error without one")
	}
	if hdr.Get("Content-Length") != "999" {
		t.Error("answerOf changed the plugin's header")
	}
}
