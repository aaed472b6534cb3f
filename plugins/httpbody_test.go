package plugins

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

type bodyPlugin struct {
	name  string
	want  bool
	edit  func([]byte) ([]byte, error)
	wrap  func(io.Reader) io.Reader
	panic bool
}

func (p *bodyPlugin) Name() string { return p.name }
func (p *bodyPlugin) WantsHTTPBody(*Session, *HTTPMessage) bool {
	if p.panic {
		panic("wants")
	}
	return p.want
}
func (p *bodyPlugin) OnHTTPBody(_ *Session, _ *HTTPMessage, b []byte) ([]byte, error) {
	if p.panic {
		panic("body")
	}
	return p.edit(b)
}
func (p *bodyPlugin) StreamHTTPBody(_ *Session, _ *HTTPMessage, r io.Reader) io.Reader {
	if p.wrap == nil {
		return r
	}
	return p.wrap(r)
}

func TestHTTPBodyChain(t *testing.T) {
	upper := func(b []byte) ([]byte, error) { return []byte(strings.ToUpper(string(b))), nil }
	suffix := func(b []byte) ([]byte, error) { return append(b, '!'), nil }
	refuse := func([]byte) ([]byte, error) { return nil, Block(403, "no\n", "refused") }
	tests := []struct {
		name    string
		ps      []*bodyPlugin
		want    string
		wantErr bool
		status  int
	}{
		{"none wants", []*bodyPlugin{{name: "a", want: false, edit: upper}}, "", false, 0},
		{"in order", []*bodyPlugin{{name: "a", want: true, edit: upper}, {name: "b", want: true, edit: suffix}}, "HELLO!", false, 0},
		{"only those that want", []*bodyPlugin{{name: "a", want: false, edit: upper}, {name: "b", want: true, edit: suffix}}, "hello!", false, 0},
		{"block answer", []*bodyPlugin{{name: "a", want: true, edit: refuse}}, "", true, 403},
		{"panic in wants is no", []*bodyPlugin{{name: "a", panic: true}}, "", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps []Plugin
			for _, p := range tt.ps {
				ps = append(ps, p)
			}
			c := NewChain(ps)
			m := &HTTPMessage{Dir: Down, Response: &http.Response{Header: http.Header{"Content-Type": {"Text/HTML; charset=utf-8"}}}}
			if got := m.ContentType(); got != "text/html" {
				t.Errorf("ContentType %q", got)
			}
			which := c.WantsHTTPBody(&Session{}, m)
			if len(which) == 0 {
				if tt.want != "" || tt.wantErr {
					t.Fatal("no hook wants the body")
				}
				return
			}
			out, err := c.HTTPBody(&Session{}, m, which, []byte("hello"))
			if (err != nil) != tt.wantErr || string(out) != tt.want {
				t.Fatalf("got %q, %v", out, err)
			}
			if tt.status != 0 {
				if a := AnswerOf(err); a == nil || a.Status != tt.status || CodeOf(err) != CodeForbidden {
					t.Fatalf("answer %+v", a)
				}
			}
		})
	}
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("reader") }

func TestStreamHTTPBody(t *testing.T) {
	watch := &bodyPlugin{name: "watch"}
	c := NewChain([]Plugin{watch})
	body := strings.NewReader("x")
	if r, changed := c.StreamHTTPBody(&Session{}, &HTTPMessage{}, body); changed || r != body {
		t.Fatal("a hook that returns the body changed it")
	}
	bad := &bodyPlugin{name: "bad", wrap: func(io.Reader) io.Reader { return panicReader{} }}
	r, changed := NewChain([]Plugin{watch, bad}).StreamHTTPBody(&Session{}, &HTTPMessage{}, body)
	if !changed {
		t.Fatal("a wrapping hook did not change the reader")
	}
	var he *HookError
	if _, err := r.Read(make([]byte, 4)); !errors.As(err, &he) || he.Plugin != "bad" {
		t.Fatalf("a panicking reader: %v, want a HookError naming the plugin", err)
	}
}
